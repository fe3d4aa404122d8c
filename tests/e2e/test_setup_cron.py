"""End-to-end: ``scripts/setup_cleanup_cron.sh``, the cron and systemd installer.

The script runs for real, against stand-in ``crontab`` and ``systemctl`` programs first on
``PATH`` (written here into ``tmp_path/bin``): the crontab keeps its table in a file (``-l``
prints it, or says "no crontab for USER" and exits 1 like the real one; ``-`` or FILE
replaces it) and both record every call. Units go to ``--unit-dir`` under ``tmp_path`` and
``HOME`` is ``tmp_path/home``: nothing outside the test's directory is written. The program
it installs is the installed CLI, and the line it writes is run with ``sh`` as cron would.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, cli_executable, guarded_env, make_demo_base, snapshot

pytestmark = pytest.mark.e2e

SCRIPT = REPO / "scripts" / "setup_cleanup_cron.sh"
TOOLS_SCRIPT = REPO / "scripts" / "ensure_test_tools.sh"
MARKER = "# eemt-cleanup: managed by setup_cleanup_cron.sh"
UNIT_MARKER = "# Installed by setup_cleanup_cron.sh"
DEFAULT_SCHEDULE = "0 2 * * *"
# A crontab as people write them: comments, variables, other jobs, blank lines, odd spacing.
OTHER_LINES = (
    "# m h  dom mon dow   command\n"
    "MAILTO=ops@example.org\n"
    "SHELL=/bin/sh\n"
    "\n"
    "*/5 * * * * /usr/bin/true   # keep  the  spacing\t\n"
    "\n"
    "@reboot /bin/echo started\n"
)

CRONTAB = """#!/bin/sh
# Stand-in crontab: the table is the file $CRONTAB_TABLE; every call is recorded.
printf '%s\\n' "$*" >> "$CRONTAB_CALLS"
case "$1" in
    -l) if [ -f "$CRONTAB_TABLE" ]; then cat "$CRONTAB_TABLE"; else
            echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
    -r) rm -f "$CRONTAB_TABLE" ;;
    -) cat > "$CRONTAB_TABLE" ;;
    *) cat "$1" > "$CRONTAB_TABLE" ;;
esac
"""
SYSTEMCTL = """#!/bin/sh
# Stand-in systemctl: records its arguments, answers the two questions status asks.
printf '%s\\n' "$*" >> "$SYSTEMCTL_CALLS"
for word in "$@"; do
    case "$word" in
        is-enabled) echo enabled ;;
        is-active) echo active ;;
    esac
done
"""


@dataclass
class Bench:
    """The stand-ins, the environment the script runs in, and a base directory to schedule."""

    root: Path
    env: dict[str, str]
    table: Path
    crontab_calls: Path
    systemctl_calls: Path
    config: Path
    lock: Path

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(SCRIPT), *args],
            cwd=cwd or self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert "Traceback" not in done.stdout + done.stderr
        return done

    def install(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(
            "install", "--config", str(self.config), "--lock-file", str(self.lock), *args
        )

    def crontab_writes(self) -> list[str]:
        """The calls that replaced the table (anything but ``-l``)."""
        if not self.crontab_calls.exists():
            return []
        return [line for line in self.crontab_calls.read_text().splitlines() if line != "-l"]

    def systemctl(self) -> list[str]:
        if not self.systemctl_calls.exists():
            return []
        return self.systemctl_calls.read_text().splitlines()

    def marked(self) -> list[str]:
        return [line for line in self.table.read_text().splitlines() if line.endswith(MARKER)]


def make_config(base: Path) -> Path:
    """The documented default config in ``base`` (its relative paths: ``base``'s data)."""
    config = base / "cleanup_config.yaml"
    done = subprocess.run(
        [cli_executable(), "config", "init", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return config


def make_bench(root: Path, base: Path) -> Bench:
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("crontab", CRONTAB), ("systemctl", SYSTEMCTL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for name in ("home", "tmp"):
        (root / name).mkdir()
    env = guarded_env(root)
    env.update(
        PATH=os.pathsep.join(
            [str(bin_dir), str(Path(cli_executable()).parent), "/usr/bin", "/bin"]
        ),
        HOME=str(root / "home"),
        TMPDIR=str(root / "tmp"),
        TZ="UTC",
        CRONTAB_TABLE=str(root / "crontab.table"),
        CRONTAB_CALLS=str(root / "crontab.calls"),
        SYSTEMCTL_CALLS=str(root / "systemctl.calls"),
    )
    env.pop("XDG_CONFIG_HOME", None)
    env.pop("XDG_RUNTIME_DIR", None)
    return Bench(
        root=root,
        env=env,
        table=root / "crontab.table",
        crontab_calls=root / "crontab.calls",
        systemctl_calls=root / "systemctl.calls",
        config=make_config(base),
        lock=root / "cron.lock",
    )


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    base = tmp_path / "base"
    for name in ("uploads", "results", "temp"):
        (base / name).mkdir(parents=True)
    return make_bench(tmp_path, base)


def command_of(line: str) -> str:
    """What cron hands to ``sh -c``: the line after its five time fields."""
    return line.split(maxsplit=5)[5]


def words_of(line: str) -> list[str]:
    """The command's words as sh reads them (quotes removed, the trailing comment dropped)."""
    return shlex.split(command_of(line), comments=True)


def error_of(done: subprocess.CompletedProcess[str]) -> str:
    """The script's one error line, without its prefix."""
    lines = [line for line in done.stderr.splitlines() if "setup_cleanup_cron.sh: error: " in line]
    assert len(lines) == 1, done.stderr
    return lines[0].split("setup_cleanup_cron.sh: error: ", 1)[1]


# --------------------------------------------------------------------------- install


def test_install_adds_one_marked_line_and_keeps_every_other_line_byte_for_byte(
    bench: Bench,
) -> None:
    bench.table.write_text(OTHER_LINES)
    done = bench.install()
    assert done.returncode == 0, done.stderr
    text = bench.table.read_text()
    assert text.startswith(OTHER_LINES)
    (line,) = text[len(OTHER_LINES) :].splitlines()
    assert text == OTHER_LINES + line + "\n"
    assert line.startswith(DEFAULT_SCHEDULE + " ") and line.endswith(" " + MARKER)
    logs = bench.config.parent / "logs"
    assert words_of(line) == [
        "umask",
        "027;",
        shutil.which("flock"),
        "-n",
        str(bench.lock),
        cli_executable(),
        "run",
        "--config",
        str(bench.config),
        "--quiet",
        "--trigger",
        "cron",
        ">>",
        str(logs / "cleanup.log"),
        "2>&1",
    ]
    assert "%" not in line  # cron would turn it into a newline
    assert "installed in the crontab of" in done.stdout and line in done.stdout
    assert "next runs:" in done.stdout
    # The logs directory the redirection needs exists, with the program's own mode.
    assert stat.S_IMODE(logs.stat().st_mode) == 0o750


def test_install_again_leaves_one_line_replaced_in_place(bench: Bench) -> None:
    bench.table.write_text(OTHER_LINES)
    assert bench.install().returncode == 0
    first = bench.table.read_text()
    writes = len(bench.crontab_writes())

    same = bench.install()
    assert same.returncode == 0, same.stderr
    assert "already installed, unchanged" in same.stdout
    assert bench.table.read_text() == first
    assert len(bench.crontab_writes()) == writes  # an unchanged table is not written again

    # Move the line between other lines: a new schedule replaces it where it stands.
    other = OTHER_LINES.splitlines(keepends=True)
    (marked,) = bench.marked()
    bench.table.write_text("".join([*other[:3], marked + "\n", *other[3:]]))
    changed = bench.install("--schedule", "30 3 * * 1-5")
    assert changed.returncode == 0, changed.stderr
    lines = bench.table.read_text().splitlines(keepends=True)
    assert lines[:3] == other[:3] and lines[4:] == other[3:]
    assert lines[3].startswith("30 3 * * 1-5 ") and lines[3].rstrip("\n").endswith(MARKER)
    assert len(bench.marked()) == 1


def test_install_into_an_empty_crontab_creates_it(bench: Bench) -> None:
    assert not bench.table.exists()
    done = bench.install()
    assert done.returncode == 0, done.stderr
    assert len(bench.marked()) == 1
    assert bench.table.read_text().count("\n") == 1


def test_install_takes_the_schedule_from_the_config(bench: Bench) -> None:
    text = bench.config.read_text().replace('cron: "0 2 * * *"', 'cron: "15 4 * * 0"')
    assert text != bench.config.read_text()
    bench.config.write_text(text)
    assert bench.install().returncode == 0
    (line,) = bench.marked()
    assert line.startswith("15 4 * * 0 ")


def test_install_with_mail_leaves_the_output_to_cron(bench: Bench) -> None:
    done = bench.install("--mail")
    assert done.returncode == 0, done.stderr
    (line,) = bench.marked()
    words = words_of(line)
    assert ">>" not in words and "umask" not in words
    assert words[:2] == [shutil.which("flock"), "-n"]
    assert words[-3:] == ["--quiet", "--trigger", "cron"]
    assert not (bench.config.parent / "logs").exists()


def test_install_defaults_to_the_program_on_path_and_the_root_lock(bench: Bench) -> None:
    done = bench.run("install", "--config", str(bench.config), "--dry-run")
    assert done.returncode == 0, done.stderr
    (line,) = [
        line.strip()
        for line in done.stdout.splitlines()
        if line.startswith("  ") and not line.startswith("    | ") and line.endswith(MARKER)
    ]
    words = words_of(line)
    home_lock = bench.root / "home" / ".eemt-cleanup.cron.lock"
    lock = "/run/eemt-cleanup.cron.lock" if os.geteuid() == 0 else str(home_lock)
    assert words[2:6] == [shutil.which("flock"), "-n", lock, cli_executable()]
    assert not bench.table.exists()


def test_install_reads_the_config_alone_not_this_shells_environment(bench: Bench) -> None:
    bench.env["EEMT_DB_PATH"] = str(bench.root / "elsewhere" / "jobs.db")
    bench.env["EEMT_CLEANUP_SCHEDULE"] = "1 1 1 1 *"
    done = bench.install()
    assert done.returncode == 0, done.stderr
    (line,) = bench.marked()
    assert line.startswith(DEFAULT_SCHEDULE + " ")
    assert str(bench.config.parent / "logs" / "cleanup.log") in words_of(line)
    assert "EEMT_DB_PATH" in done.stderr and "EEMT_CLEANUP_SCHEDULE" in done.stderr
    assert "not passed on" in done.stderr


# --------------------------------------------------------------------------- the line runs


def cron_environment(bench: Bench, **extra: str) -> dict[str, str]:
    """What cron gives a job: a bare PATH, HOME, SHELL; plus the test guard."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": bench.env["HOME"],
        "SHELL": "/bin/sh",
        "LOGNAME": "root",
        "PYTHONPATH": bench.env["PYTHONPATH"],
        "EEMT_TEST_GUARD_ALLOWED": bench.env["EEMT_TEST_GUARD_ALLOWED"],
    }
    env.update(extra)
    return env


def run_as_cron(bench: Bench, line: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", command_of(line)],
        cwd="/",
        env=cron_environment(bench, **extra),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_written_line_runs_under_sh_as_cron_would_and_appends_to_the_log(
    tmp_path: Path,
) -> None:
    demo = make_demo_base(tmp_path / "base")
    bench = make_bench(tmp_path / "bench", demo.path)
    assert bench.install().returncode == 0
    (line,) = bench.marked()
    log = demo.path / "logs" / "cleanup.log"
    before = snapshot(demo.path / "results"), snapshot(demo.path / "uploads")

    first = run_as_cron(bench, line, EEMT_CLEANUP_DRY_RUN="true")
    assert (first.returncode, first.stdout, first.stderr) == (0, "", "")
    written = log.read_bytes()
    assert b"DRY RUN" in written or b"dry run" in written.lower()
    assert stat.S_IMODE(log.stat().st_mode) == 0o640

    second = run_as_cron(bench, line, EEMT_CLEANUP_DRY_RUN="true")
    assert second.returncode == 0, second.stderr
    again = log.read_bytes()
    assert again.startswith(written) and len(again) > len(written)
    assert (snapshot(demo.path / "results"), snapshot(demo.path / "uploads")) == before


def test_paths_with_spaces_are_quoted_and_the_line_still_runs(tmp_path: Path) -> None:
    demo = make_demo_base(tmp_path / "with space" / "eemt base")
    bench = make_bench(tmp_path / "bench dir", demo.path)
    done = bench.install()
    assert done.returncode == 0, done.stderr
    (line,) = bench.marked()
    words = words_of(line)
    assert str(bench.config) in words and str(bench.lock) in words
    assert str(demo.path / "logs" / "cleanup.log") in words
    assert f"'{bench.config}'" in line
    ran = run_as_cron(bench, line, EEMT_CLEANUP_DRY_RUN="true")
    assert ran.returncode == 0, ran.stderr
    assert (demo.path / "logs" / "cleanup.log").stat().st_size > 0
    status = bench.run("status", "--unit-dir", str(bench.root / "units"))
    assert status.returncode == 0, status.stderr
    assert "Next 3 runs" in status.stdout


def test_refuses_to_append_where_others_could_plant_a_symlink_and_suggests_mail(
    bench: Bench,
) -> None:
    logs = bench.config.parent / "logs"
    logs.mkdir()
    logs.chmod(0o777)
    done = bench.install()
    assert done.returncode == 2
    message = error_of(done)
    assert "refusing to append cron's output" in message and "--mail" in message
    assert str(logs) in message
    assert bench.crontab_writes() == [] and not bench.table.exists()
    assert bench.install("--mail").returncode == 0
    assert len(bench.marked()) == 1


# --------------------------------------------------------------------------- status, remove


def test_status_shows_the_line_and_the_next_fire_times(bench: Bench) -> None:
    units = bench.root / "units"
    assert bench.install("--schedule", "45 1 * * *").returncode == 0
    done = bench.run("status", "--unit-dir", str(units))
    assert done.returncode == 0, done.stderr
    (line,) = bench.marked()
    assert "cron: installed" in done.stdout and line in done.stdout
    assert "next runs:" in done.stdout and "Next 3 runs" in done.stdout
    assert "45 1 * * *" in done.stdout
    assert f"no units in {units}" not in done.stdout


def test_status_with_nothing_installed_says_so_and_exits_1(bench: Bench) -> None:
    units = bench.root / "units"
    done = bench.run("status", "--unit-dir", str(units))
    assert done.returncode == 1
    assert "cron: no eemt-cleanup line in the crontab" in done.stdout
    assert f"nothing installed (no crontab line, no units in {units})" in done.stdout


def test_remove_takes_out_only_the_marked_line_then_says_nothing_to_remove(
    bench: Bench,
) -> None:
    bench.table.write_text(OTHER_LINES)
    assert bench.install().returncode == 0
    (line,) = bench.marked()
    removed = bench.run("remove")
    assert removed.returncode == 0, removed.stderr
    assert "removed from the crontab" in removed.stdout and line in removed.stdout
    assert bench.table.read_text() == OTHER_LINES
    writes = len(bench.crontab_writes())

    again = bench.run("remove")
    assert again.returncode == 0, again.stderr
    assert "nothing to remove" in again.stdout
    assert len(bench.crontab_writes()) == writes
    assert bench.table.read_text() == OTHER_LINES


def test_remove_with_no_crontab_at_all_says_so_and_exits_0(bench: Bench) -> None:
    done = bench.run("remove")
    assert done.returncode == 0, done.stderr
    assert "nothing to remove" in done.stdout
    assert bench.crontab_writes() == [] and not bench.table.exists()


def test_dry_run_prints_the_table_and_commands_and_changes_nothing(bench: Bench) -> None:
    bench.table.write_text(OTHER_LINES)
    done = bench.install("--dry-run")
    assert done.returncode == 0, done.stderr
    assert bench.table.read_text() == OTHER_LINES
    assert bench.crontab_writes() == []
    assert not (bench.config.parent / "logs").exists()
    assert "+ mkdir -p -m 0750" in done.stdout
    assert "+ crontab " in done.stdout
    assert "would install in the crontab" in done.stdout
    # The whole new table is shown, the other lines included.
    shown = [line[6:] for line in done.stdout.splitlines() if line.startswith("    | ")]
    assert shown[: len(OTHER_LINES.splitlines())] == OTHER_LINES.splitlines()
    assert shown[-1].endswith(MARKER)

    assert bench.install().returncode == 0
    removal = bench.run("remove", "--dry-run")
    assert removal.returncode == 0, removal.stderr
    assert "would remove" in removal.stdout
    assert len(bench.marked()) == 1


# --------------------------------------------------------------------------- systemd


def read_units(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(directory.iterdir())}


def exec_start(text: str) -> list[str]:
    (line,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.mark.parametrize("mode", ["--user", "--system"])
def test_install_systemd_writes_the_timer_pair_then_reloads_and_enables_in_order(
    bench: Bench, mode: str
) -> None:
    units = bench.root / "units"
    scope = ["--user"] if mode == "--user" else []
    done = bench.run(
        "install-systemd", mode, "--unit-dir", str(units), "--config", str(bench.config)
    )
    assert done.returncode == 0, done.stderr
    written = read_units(units)
    assert set(written) == {"eemt-cleanup.service", "eemt-cleanup.timer"}
    for name, text in written.items():
        assert text.startswith(UNIT_MARKER)
        assert stat.S_IMODE((units / name).stat().st_mode) == 0o644
    command = exec_start(written["eemt-cleanup.service"])
    assert command == [
        cli_executable(),
        "run",
        "--config",
        str(bench.config),
        "--trigger",
        "systemd",
    ]
    assert "OnCalendar=*-*-* 02:00:00" in written["eemt-cleanup.timer"].splitlines()
    assert bench.systemctl() == [
        " ".join([*scope, "daemon-reload"]),
        " ".join([*scope, "enable", "--now", "eemt-cleanup.timer"]),
    ]
    # Everything else of the shipped units is kept.
    shipped = (REPO / "deploy" / "systemd" / "eemt-cleanup.timer").read_text().splitlines()
    kept = [line for line in shipped if not line.startswith("OnCalendar=")]
    assert [
        line
        for line in written["eemt-cleanup.timer"].splitlines()[2:]
        if not line.startswith("OnCalendar=")
    ] == kept

    status = bench.run("status", mode, "--unit-dir", str(units))
    assert status.returncode == 0, status.stderr
    assert f"systemd: {units / 'eemt-cleanup.timer'} (written by this script)" in status.stdout
    assert "enabled: enabled" in status.stdout and "OnCalendar=*-*-* 02:00:00" in status.stdout

    before = len(bench.systemctl())
    removed = bench.run("remove-systemd", mode, "--unit-dir", str(units))
    assert removed.returncode == 0, removed.stderr
    assert list(units.iterdir()) == []
    assert bench.systemctl()[before:] == [
        " ".join([*scope, "disable", "--now", "eemt-cleanup.timer"]),
        " ".join([*scope, "daemon-reload"]),
    ]
    again = bench.run("remove-systemd", mode, "--unit-dir", str(units))
    assert again.returncode == 0, again.stderr
    assert "nothing to remove" in again.stdout
    assert len(bench.systemctl()) == before + 2


def test_install_systemd_for_root_defaults_to_system_units(bench: Bench) -> None:
    if os.geteuid() != 0:
        pytest.skip("the default scope for root is checked as root")
    units = bench.root / "units"
    done = bench.run("install-systemd", "--unit-dir", str(units), "--config", str(bench.config))
    assert done.returncode == 0, done.stderr
    assert bench.systemctl() == ["daemon-reload", "enable --now eemt-cleanup.timer"]


def test_install_systemd_daemon_writes_the_daemon_unit_and_restarts_it_when_it_changes(
    bench: Bench,
) -> None:
    units = bench.root / "units"
    args = ("install-systemd", "--daemon", "--user", "--unit-dir", str(units))
    done = bench.run(*args, "--config", str(bench.config))
    assert done.returncode == 0, done.stderr
    written = read_units(units)
    assert set(written) == {"eemt-cleanup-daemon.service"}
    text = written["eemt-cleanup-daemon.service"]
    assert exec_start(text) == [
        cli_executable(),
        "daemon",
        "--config",
        str(bench.config),
        "--health-file",
        "%t/eemt-cleanup.health",
    ]
    assert "WantedBy=default.target" in text.splitlines()  # a user manager has no multi-user
    assert bench.systemctl() == [
        "--user daemon-reload",
        "--user enable --now eemt-cleanup-daemon.service",
    ]

    # Installed again with its own schedule: the changed unit is restarted once enabled.
    again = bench.run(*args, "--config", str(bench.config), "--schedule", "30 3 * * *")
    assert again.returncode == 0, again.stderr
    command = exec_start(read_units(units)["eemt-cleanup-daemon.service"])
    assert command[-2:] == ["--cron", "30 3 * * *"]
    assert bench.systemctl()[2:] == [
        "--user daemon-reload",
        "--user enable --now eemt-cleanup-daemon.service",
        "--user try-restart eemt-cleanup-daemon.service",
    ]
    removed = bench.run("remove-systemd", "--daemon", "--user", "--unit-dir", str(units))
    assert removed.returncode == 0, removed.stderr
    assert list(units.iterdir()) == []
    assert bench.systemctl()[-2:] == [
        "--user disable --now eemt-cleanup-daemon.service",
        "--user daemon-reload",
    ]


def test_install_systemd_with_spaces_in_paths_quotes_exec_start(tmp_path: Path) -> None:
    base = tmp_path / "data dir" / "base"
    for name in ("uploads", "results", "temp"):
        (base / name).mkdir(parents=True)
    bench = make_bench(tmp_path / "bench", base)
    units = bench.root / "units"
    done = bench.run(
        "install-systemd", "--system", "--unit-dir", str(units), "--config", str(bench.config)
    )
    assert done.returncode == 0, done.stderr
    text = (units / "eemt-cleanup.service").read_text()
    assert f'--config "{bench.config}"' in text
    assert exec_start(text)[:4] == [cli_executable(), "run", "--config", str(bench.config)]


def test_install_systemd_dry_run_prints_the_units_and_writes_nothing(bench: Bench) -> None:
    units = bench.root / "units"
    done = bench.run(
        "install-systemd",
        "--user",
        "--unit-dir",
        str(units),
        "--config",
        str(bench.config),
        "--dry-run",
    )
    assert done.returncode == 0, done.stderr
    assert not units.exists()
    assert bench.systemctl() == []
    assert f"+ write {units / 'eemt-cleanup.timer'}:" in done.stdout
    assert "+ systemctl --user daemon-reload" in done.stdout
    assert "+ systemctl --user enable --now eemt-cleanup.timer" in done.stdout


def test_install_systemd_refuses_a_unit_it_did_not_write_unless_forced(bench: Bench) -> None:
    units = bench.root / "units"
    units.mkdir()
    hand_made = units / "eemt-cleanup.service"
    hand_made.write_text("[Service]\nExecStart=/bin/true\n")
    args = ("install-systemd", "--user", "--unit-dir", str(units), "--config", str(bench.config))
    done = bench.run(*args)
    assert done.returncode == 2
    assert "was not written by this script" in error_of(done) and "--force" in error_of(done)
    assert hand_made.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert not (units / "eemt-cleanup.timer").exists() and bench.systemctl() == []
    removal = bench.run("remove-systemd", "--user", "--unit-dir", str(units))
    assert removal.returncode == 2 and hand_made.exists()

    forced = bench.run(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert hand_made.read_text().startswith(UNIT_MARKER)


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (package systemd): the written units are not verified",
)
@pytest.mark.parametrize("daemon", [False, True], ids=["timer", "daemon"])
def test_systemd_analyze_verify_accepts_the_written_units(bench: Bench, daemon: bool) -> None:
    units = bench.root / "units"
    extra = ["--daemon"] if daemon else ["--schedule", "*/20 6-22 1,15 * mon-fri"]
    done = bench.run(
        "install-systemd",
        "--system",
        "--unit-dir",
        str(units),
        "--config",
        str(bench.config),
        *extra,
    )
    assert done.returncode == 0, done.stderr
    verified = subprocess.run(
        ["systemd-analyze", "verify", *(str(path) for path in sorted(units.iterdir()))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")


# --------------------------------------------------------------------------- cron -> OnCalendar

TRANSLATIONS = [
    ("0 2 * * *", ["*-*-* 02:00:00"]),
    ("*/15 8-18 * * mon-fri", ["Mon..Fri *-*-* 08..18:00,15,30,45:00"]),
    ("30 3 1,15 * *", ["*-*-01,15 03:30:00"]),
    ("0 4 * * 0", ["Sun *-*-* 04:00:00"]),
    ("0 4 * * 7", ["Sun *-*-* 04:00:00"]),
    ("5 0 1 jan,jul *", ["*-01,07-01 00:05:00"]),
    # Both day fields restricted: cron fires when either matches (two OnCalendar= lines).
    ("0 3 1 * 1", ["*-*-01 03:00:00", "Mon *-*-* 03:00:00"]),
    # A day field starting with * narrows the other one.
    ("0 3 */2 * 1", ["Mon *-*-01,03,05,07,09,11,13,15,17,19,21,23,25,27,29,31 03:00:00"]),
]


def on_calendar_of(bench: Bench, expression: str) -> list[str]:
    units = bench.root / "units"
    done = bench.run(
        "install-systemd", "--system", "--unit-dir", str(units), "--config", str(bench.config),
        "--schedule", expression, "--dry-run",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    prefix = "    | OnCalendar="
    return [
        line.removeprefix(prefix) for line in done.stdout.splitlines() if line.startswith(prefix)
    ]


@pytest.mark.parametrize(("expression", "expected"), TRANSLATIONS, ids=[t[0] for t in TRANSLATIONS])
def test_the_schedule_becomes_the_oncalendar_systemd_fires_at_the_same_times(
    bench: Bench, expression: str, expected: list[str]
) -> None:
    calendars = on_calendar_of(bench, expression)
    assert calendars == expected
    if shutil.which("systemd-analyze") is None:
        return
    # The times systemd would fire at are the times eemt-cleanup's own parser gives.
    count = 12
    ours = subprocess.run(
        [cli_executable(), "schedule", "--config", str(bench.config), "--cron", expression,
         "--timezone", "UTC", "--count", str(count), "--json"],
        capture_output=True, text=True, timeout=60, check=False, env=bench.env,
    )  # fmt: skip
    assert ours.returncode == 0, ours.stderr
    expected_times = [
        slot["utc"][:19].replace("T", " ") for slot in json.loads(ours.stdout)["next"]
    ]
    # Both lists start from "now", taken a moment apart: a slot may pass in between.
    theirs: set[str] = set()
    for calendar in calendars:
        analyzed = subprocess.run(
            ["systemd-analyze", "calendar", f"--iterations={count}", calendar],
            capture_output=True, text=True, timeout=60, check=False, env={**bench.env, "TZ": "UTC"},
        )  # fmt: skip
        assert analyzed.returncode == 0, analyzed.stderr
        theirs.update(re.findall(r"\w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", analyzed.stdout))
    first = sorted(theirs)[: count - 1]
    assert first in (expected_times[: count - 1], expected_times[1:count])


def test_a_schedule_systemd_cannot_express_is_refused(bench: Bench) -> None:
    units = bench.root / "units"
    done = bench.run(
        "install-systemd", "--system", "--unit-dir", str(units), "--config", str(bench.config),
        "--schedule", "0 3 * * fri-mon",
    )  # fmt: skip
    assert done.returncode == 2
    assert not units.exists() and bench.systemctl() == []


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "no command given"),
        (["bogus"], "unknown command: bogus"),
        (["install", "--frob"], "unknown option: --frob"),
        (["install", "--schedule"], "--schedule: needs a value"),
        (["install", "--config="], "--config: needs a value"),
        (["install", "remove"], "one command at a time"),
        (["install", "--daemon"], "--daemon applies to install-systemd and remove-systemd only"),
        (["status", "--mail"], "--mail applies to install only"),
        (["install-systemd", "--user", "--system"], "--user and --system exclude each other"),
    ],
)
def test_a_bad_command_line_exits_2_with_one_error_line(
    bench: Bench, args: list[str], words: str
) -> None:
    done = bench.run(*args)
    assert done.returncode == 2
    message = error_of(done)
    assert words in message and "--help" in message
    assert done.stdout == ""
    assert bench.crontab_calls.exists() is False and bench.systemctl() == []


def test_a_config_that_does_not_validate_exits_2_and_changes_nothing(bench: Bench) -> None:
    bench.table.write_text(OTHER_LINES)
    valid = bench.config.read_text()
    bench.config.write_text(valid.replace("hours: 12", "hours: -5", 1))
    assert bench.config.read_text() != valid
    units = bench.root / "units"
    for done in (
        bench.install(),
        bench.run(
            "install-systemd", "--user", "--unit-dir", str(units), "--config", str(bench.config)
        ),
    ):
        assert done.returncode == 2
        assert f"the config does not validate: {bench.config}" in error_of(done)
        assert "must be >= 0, got -5" in done.stderr
    assert bench.table.read_text() == OTHER_LINES and bench.crontab_writes() == []
    assert not units.exists() and bench.systemctl() == []


def test_a_missing_config_file_exits_2(bench: Bench) -> None:
    done = bench.run("install", "--config", str(bench.root / "nope.yaml"))
    assert done.returncode == 2
    assert error_of(done) == f"--config: no such file: {bench.root / 'nope.yaml'}"


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ("0 2 * *", "a cron expression has 5 fields"),
        ("0 2 * * * *", "a cron expression has 5 fields"),
        ("0 25 * * *", "eemt-cleanup schedule refused '0 25 * * *'"),
        ("0 0 30 2 *", "eemt-cleanup schedule refused '0 0 30 2 *'"),
        ("0 2 * * 5L", "is not a cron field"),
        ("0 2 % * *", "is not a cron field"),
    ],
)
def test_a_bad_schedule_exits_2_and_changes_nothing(
    bench: Bench, schedule: str, words: str
) -> None:
    done = bench.install("--schedule", schedule)
    assert done.returncode == 2
    assert words in error_of(done)
    assert bench.crontab_writes() == [] and not bench.table.exists()


def test_a_missing_program_exits_2(bench: Bench) -> None:
    missing = bench.root / "no" / "eemt-cleanup"
    done = bench.install("--bin", str(missing))
    assert done.returncode == 2
    assert f"the program {missing} is missing or not executable" in error_of(done)
    assert bench.crontab_writes() == []


# What the script runs besides crontab, systemctl and the program.
SCRIPT_TOOLS = (
    "bash", "env", "realpath", "dirname", "mktemp", "rm", "awk", "cmp", "sed", "grep", "id",
    "stat", "readlink", "flock", "cat", "head", "chmod", "mv", "mkdir",
)  # fmt: skip


def test_a_missing_crontab_program_exits_2_and_names_its_package(bench: Bench) -> None:
    tools = bench.root / "tools"
    tools.mkdir()
    for name in SCRIPT_TOOLS:
        found = shutil.which(name)
        assert found, name
        (tools / name).symlink_to(found)
    bench.env["PATH"] = os.pathsep.join([str(tools), str(Path(cli_executable()).parent)])
    done = bench.install()
    assert done.returncode == 2
    assert error_of(done) == "crontab not found (install the package cron)"
    assert not bench.table.exists()


def test_a_path_cron_or_systemd_would_misread_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "100%" / "base"
    for name in ("uploads", "results", "temp"):
        (base / name).mkdir(parents=True)
    bench = make_bench(tmp_path / "bench", base)
    done = bench.install()
    assert done.returncode == 2
    assert "holds characters this script does not write" in error_of(done)
    assert bench.crontab_writes() == []


# --------------------------------------------------------------------------- help, lint


def test_help_teaches_the_commands_options_and_exit_codes(bench: Bench) -> None:
    done = bench.run("--help")
    assert done.returncode == 0 and done.stderr == ""
    for words in (
        "install", "status", "remove", "install-systemd", "remove-systemd", "--dry-run",
        "--config PATH", "--schedule", "--bin PATH", "--mail", "--user", "--system",
        "--unit-dir DIR", "--daemon", "--force", MARKER, "Exit codes:", "Examples:",
    ):  # fmt: skip
        assert words in done.stdout, words


@pytest.mark.skipif(
    shutil.which("shellcheck") is None,
    reason="shellcheck is not installed (package shellcheck; make test installs it as root)",
)
@pytest.mark.parametrize("script", [SCRIPT, TOOLS_SCRIPT], ids=lambda path: path.name)
def test_shellcheck_has_nothing_to_say_about_the_script(script: Path) -> None:
    done = subprocess.run(
        ["shellcheck", "--shell=bash", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("script", [SCRIPT, TOOLS_SCRIPT], ids=lambda path: path.name)
def test_the_scripts_are_executable_strict_bash(script: Path) -> None:
    assert script.stat().st_mode & stat.S_IXUSR
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
