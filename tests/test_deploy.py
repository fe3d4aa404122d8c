"""The shipped samples under ``deploy/``: what can be checked of them without booting systemd,
cron or a cluster.

The service's comment on exit codes must say what ``SuccessExitStatus=`` does (an operator
reads the comment, systemd reads the setting), ``Documentation=`` must hold URIs systemd
accepts, and ``systemd-analyze verify`` must have nothing to say about either unit. Every
sample that starts the program (systemd, cron, Kubernetes) names it by the one absolute path
README.md's "Installing for production" installs it to.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import cli_executable

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
UNITS = DEPLOY / "systemd"
SERVICE = UNITS / "eemt-cleanup.service"
TIMER = UNITS / "eemt-cleanup.timer"
CRON = DEPLOY / "cron" / "eemt-cleanup"
CRONJOB = DEPLOY / "kubernetes" / "cronjob.yaml"
LOGROTATE = DEPLOY / "logrotate" / "eemt-cleanup"
README = REPO / "README.md"
COMPAT_SCRIPT = REPO / "scripts" / "cleanup_jobs.py"
INSTALL_SECTION = "## Installing for production"
# The one documented place of the program: every sample that starts it names it so.
INSTALLED_CLI = "/usr/local/bin/eemt-cleanup"
SYSTEMD_SECTIONS = {"Unit", "Service", "Timer", "Install"}
CRON_ENVIRONMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")
# The exit codes of SPEC §5 (and the README's table) a run can end with under systemd.
DOCUMENTED_CODES = {0, 1, 2, 75, 130, 143}
FAILING_CODES = {1, 2}
URI_SCHEMES = {"http", "https", "file", "info", "man"}
MAN_PAGE = re.compile(r"^[\w.+-]+(\([0-9][\w]*\))?$")


def parse_unit(path: Path) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """A unit file as ``{section: {key: [values]}}`` (a key may repeat), and its comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    comments: list[str] = []
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(("#", ";")):
            comments.append(line.lstrip("#;").strip())
        elif line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        else:
            key, equals, value = line.partition("=")
            assert equals and current is not None, f"{path.name}:{number}: not a setting: {raw}"
            current.setdefault(key.strip(), []).append(value.strip())
    return sections, comments


def codes_in(text: str) -> set[int]:
    return {int(number) for number in re.findall(r"(?<![\w-])(\d+)(?![\w-])", text)}


def exit_code_comment() -> tuple[set[int], set[int]]:
    """The codes the service's comment says do not fail, and do fail, the unit."""
    _, comments = parse_unit(SERVICE)
    text = " ".join(comments)
    ok_marker = "Exit codes that do not fail the unit:"
    fail_marker = "Exit codes that fail the unit:"
    assert ok_marker in text and fail_marker in text, text
    ok_part = text.split(ok_marker, 1)[1].split(fail_marker, 1)[0]
    fail_part = text.split(fail_marker, 1)[1]
    return codes_in(ok_part), codes_in(fail_part)


def test_service_comment_names_exactly_the_codes_success_exit_status_accepts() -> None:
    sections, _ = parse_unit(SERVICE)
    declared = {
        int(code) for value in sections["Service"]["SuccessExitStatus"] for code in value.split()
    }
    ok, failing = exit_code_comment()
    assert ok == {0} | declared  # 0 is always a success
    assert failing == FAILING_CODES
    assert not ok & failing
    assert ok | failing <= DOCUMENTED_CODES


def test_a_stop_by_systemctl_does_not_fail_the_unit() -> None:
    """SIGTERM: the run finishes the jobs in hand, writes its records and exits 143 (it
    catches the signal, so systemd's default success for a SIGTERM death does not apply)."""
    sections, _ = parse_unit(SERVICE)
    declared = " ".join(sections["Service"]["SuccessExitStatus"]).split()
    assert "143" in declared
    assert "75" in declared  # the lock held by another run: this start simply did nothing


def test_documentation_holds_only_uris_systemd_accepts() -> None:
    sections, _ = parse_unit(SERVICE)
    values = " ".join(sections["Unit"]["Documentation"]).split()
    assert values
    for value in values:
        parts = urlsplit(value)
        assert parts.scheme in URI_SCHEMES, value
        if parts.scheme in ("http", "https"):
            assert parts.netloc and "." in parts.netloc, value
        elif parts.scheme == "file":
            assert parts.path.startswith("/"), value
        elif parts.scheme == "man":
            assert MAN_PAGE.match(parts.path), value
        else:
            assert parts.path, value


def test_the_service_runs_the_installed_cli_with_its_trigger() -> None:
    sections, _ = parse_unit(SERVICE)
    (command,) = sections["Service"]["ExecStart"]
    assert command.split()[:2] == [INSTALLED_CLI, "run"]
    assert "--trigger systemd" in command
    timer, _ = parse_unit(TIMER)
    assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == ["timers.target"]


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (package systemd): the units are not verified",
)
def test_systemd_analyze_verify_has_nothing_to_say_about_the_units(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at the CLI installed here.
    for unit in (SERVICE, TIMER):
        text = unit.read_text().replace(INSTALLED_CLI, cli_executable())
        (tmp_path / unit.name).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / SERVICE.name), str(tmp_path / TIMER.name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


# --------------------------------------------------------------------------- the program's path


def install_section() -> str:
    """README.md's "Installing for production", up to the next section."""
    text = README.read_text()
    assert INSTALL_SECTION in text, f"README.md has no {INSTALL_SECTION!r}"
    body = text.split(INSTALL_SECTION, 1)[1]
    return body.split("\n## ", 1)[0]


def cron_jobs() -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """The cron.d file's environment lines, and its jobs as (schedule, user, command)."""
    environment: dict[str, str] = {}
    jobs: list[tuple[str, str, str]] = []
    for raw in CRON.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        setting = CRON_ENVIRONMENT.match(line)
        if setting:
            environment[setting.group(1)] = setting.group(2)
            continue
        fields = line.split(maxsplit=6)
        assert len(fields) == 7, f"not a cron.d job (5 time fields, user, command): {raw}"
        jobs.append((" ".join(fields[:5]), fields[5], fields[6]))
    return environment, jobs


def cronjob_container() -> dict[str, object]:
    manifest = yaml.safe_load(CRONJOB.read_text())
    assert manifest["kind"] == "CronJob"
    (container,) = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return container


def test_the_readme_installs_the_program_where_the_samples_run_it() -> None:
    section = install_section()
    assert INSTALLED_CLI in section
    # Both documented ways end with the program at that path: a venv plus a link to it, and
    # pipx's --global (whose bin directory is /usr/local/bin), with the root-only default
    # (/root/.local/bin) named as what the samples would not find.
    assert f"ln -s /opt/eemt-cleanup/bin/eemt-cleanup {INSTALLED_CLI}" in section
    assert "pipx install --global" in section
    assert "/root/.local/bin" in section


def test_the_service_starts_the_program_by_its_documented_absolute_path() -> None:
    sections, _ = parse_unit(SERVICE)
    (command,) = sections["Service"]["ExecStart"]
    program = command.split()[0].lstrip("@-:+!")
    assert program == INSTALLED_CLI


def test_the_cron_line_runs_the_program_by_its_documented_absolute_path_under_flock() -> None:
    environment, jobs = cron_jobs()
    assert environment["SHELL"] == "/bin/sh"
    # flock is found through PATH; the program does not depend on it.
    assert "/usr/bin" in environment["PATH"].split(":")
    (job,) = jobs
    schedule, user, command = job
    assert (schedule, user) == ("0 2 * * *", "root")
    words = command.split()
    assert words[:3] == ["flock", "-n", "/run/eemt-cleanup.cron.lock"]
    assert words[3:5] == [INSTALLED_CLI, "run"]
    assert "--quiet" in words
    assert words[words.index("--trigger") + 1] == "cron"
    assert "%" not in command  # cron would turn it into a newline


def test_the_kubernetes_cronjob_runs_the_program_by_its_documented_absolute_path() -> None:
    container = cronjob_container()
    command = container["command"]
    assert isinstance(command, list)
    assert command[:2] == [INSTALLED_CLI, "run"]
    assert command[command.index("--trigger") + 1] == "kubernetes"


def test_every_sample_that_names_the_program_names_it_by_the_documented_path() -> None:
    """A new sample, or an edit of one, that calls a bare ``eemt-cleanup`` fails here."""
    bare = re.compile(r"(?<![\w/.-])eemt-cleanup(?= run\b)")
    for sample in sorted(path for path in DEPLOY.rglob("*") if path.is_file()):
        for number, line in enumerate(sample.read_text().splitlines(), start=1):
            if line.lstrip().startswith("#"):
                continue
            assert not bare.search(line), f"{sample.relative_to(REPO)}:{number}: {line}"


def test_the_compatibility_script_points_at_the_documented_path() -> None:
    assert f'INSTALLED_CLI = "{INSTALLED_CLI}"' in COMPAT_SCRIPT.read_text()


def test_logrotate_rotates_the_file_the_log_handler_reopens_without_copytruncate() -> None:
    text = LOGROTATE.read_text()
    settings = [line.strip() for line in text.splitlines() if not line.startswith("#")]
    (opening,) = [line for line in settings if line.endswith("{")]
    path = opening.removesuffix("{").strip()
    assert path.startswith("/") and path.endswith("/logs/cleanup.log"), path
    assert "copytruncate" not in settings
    assert "missingok" in settings


# --------------------------------------------------------------------------- syntax


@pytest.mark.parametrize("unit", [SERVICE, TIMER], ids=lambda path: path.name)
def test_the_systemd_units_parse_into_known_sections(unit: Path) -> None:
    sections, _ = parse_unit(unit)
    assert set(sections) <= SYSTEMD_SECTIONS, set(sections)
    assert sections["Unit"]["Description"]
    assert ("Service" in sections) == (unit.suffix == ".service")
    assert ("Timer" in sections) == (unit.suffix == ".timer")
    for values in sections.values():
        for key, value in values.items():
            assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key), f"{unit.name}: {key}"
            assert all(item.strip() for item in value), f"{unit.name}: {key}= is empty"


def test_the_cron_command_is_valid_shell() -> None:
    _, jobs = cron_jobs()
    for _schedule, _user, command in jobs:
        done = subprocess.run(
            ["/bin/sh", "-n", "-c", command],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.skipif(
    shutil.which("shellcheck") is None,
    reason="shellcheck is not installed (package shellcheck): the cron command is not linted",
)
def test_shellcheck_has_nothing_to_say_about_the_cron_command(tmp_path: Path) -> None:
    environment, jobs = cron_jobs()
    script = tmp_path / "cron-command.sh"
    lines = ["#!/bin/sh", *(f"{name}='{value}'" for name, value in environment.items())]
    script.write_text("\n".join([*lines, *(command for _, _, command in jobs), ""]))
    done = subprocess.run(
        ["shellcheck", "--shell=sh", "--exclude=SC2034", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
