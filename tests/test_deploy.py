"""The shipped systemd units: what can be checked of them without booting systemd.

The service's comment on exit codes must say what ``SuccessExitStatus=`` does (an operator
reads the comment, systemd reads the setting), ``Documentation=`` must hold URIs systemd
accepts, and ``systemd-analyze verify`` must have nothing to say about either unit.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import cli_executable

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "deploy" / "systemd"
SERVICE = UNITS / "eemt-cleanup.service"
TIMER = UNITS / "eemt-cleanup.timer"
INSTALLED_CLI = "/usr/local/bin/eemt-cleanup"
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
