"""Issue 8, item 11 (usage errors): a command line Click cannot parse — a bad option value,
an unknown option, an option without its value, an unknown command — is one line on stderr
naming the help to read, exit 2, nothing done (no lock, no log, no database change); with
``--json`` also one JSON error object on stdout. ``--help``, ``--version`` and a bare group
(its help, exit 2) behave as before.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DemoBase, call, error_line, guarded_env, snapshot

from eemt_cleanup import __version__

pytestmark = pytest.mark.e2e

# (arguments after the command, words of Click's message)
BAD_LINES = {
    "run": [
        (["--workers", "abc"], "Invalid value for '--workers'"),
        (["--workers"], "Option '--workers' requires an argument."),
        (["--limit", "0"], "Invalid value for '--limit'"),
        (["--batch-size", "1.5"], "Invalid value for '--batch-size'"),
        (["--success-retention", "a week"], "Invalid value for '--success-retention'"),
        (["--bogus"], "No such option: --bogus"),
        (["stray"], "unexpected extra argument(s) (stray)"),
    ],
    "status": [
        (["--bogus"], "No such option: --bogus"),
        (["--db-path"], "Option '--db-path' requires an argument."),
    ],
    "history": [
        (["--limit", "x"], "Invalid value for '--limit'"),
        (["--limit", "0"], "Invalid value for '--limit'"),
        (["--bogus"], "No such option: --bogus"),
    ],
    "audit": [
        (["--limit", "-1"], "Invalid value for '--limit'"),
        (["--since"], "Option '--since' requires an argument."),
        (["--bogus"], "No such option: --bogus"),
    ],
    "config show": [
        (["--bogus"], "No such option: --bogus"),
        (["--db-path"], "Option '--db-path' requires an argument."),
    ],
}
CASES = [
    pytest.param(command, args, words, id=f"{command}-{' '.join(args)}")
    for command, lines in BAD_LINES.items()
    for args, words in lines
]


def uses_the_base(command: str, demo: DemoBase) -> list[str]:
    """Point the command at the demo base, so that a run that went ahead would show."""
    if command in ("run", "status", "config show"):
        return demo.path_args()
    return ["--db-path", str(demo.db)]


@pytest.mark.parametrize("json_output", [False, True], ids=["plain", "json"])
@pytest.mark.parametrize(("command", "args", "words"), CASES)
def test_bad_command_line_is_one_line_exit_2_and_nothing_done(
    tmp_path: Path,
    demo_base: DemoBase,
    command: str,
    args: list[str],
    words: str,
    json_output: bool,
) -> None:
    # --json goes first: after an option missing its value it would be taken as the value.
    line = [
        *command.split(),
        *(["--json"] if json_output else []),
        *uses_the_base(command, demo_base),
        *args,
    ]
    before = snapshot(demo_base.path)
    result = call(line, guarded_env(tmp_path))
    assert result.code == 2
    message = error_line(result)
    assert words in message
    assert message.endswith(f"(see 'eemt-cleanup {command} --help')")
    assert "Usage:" not in result.stderr
    if json_output:
        assert json.loads(result.stdout) == {"success": False, "errors": [message]}
    else:
        assert result.stdout == ""
    assert snapshot(demo_base.path) == before


@pytest.mark.parametrize(
    ("line", "words", "see"),
    [
        (["bogus"], "No such command 'bogus'.", "eemt-cleanup"),
        (["config", "bogus"], "No such command 'bogus'.", "eemt-cleanup config"),
        (["--bogus", "run"], "No such option: --bogus", "eemt-cleanup"),
        (
            ["config", "validate", "a.yaml", "b.yaml"],
            "unexpected extra argument",
            "eemt-cleanup config validate",
        ),
    ],
)
def test_unknown_command_or_group_option_is_one_line_exit_2(
    tmp_path: Path, line: list[str], words: str, see: str
) -> None:
    result = call(line, guarded_env(tmp_path))
    assert result.code == 2
    message = error_line(result)
    assert words in message
    assert message.endswith(f"(see '{see} --help')")
    assert result.stdout == ""


def test_control_characters_in_a_bad_option_are_escaped_on_the_one_line(tmp_path: Path) -> None:
    result = call(["run", "--json", "--x\x1b]8;;evil\x07\nforged line"], guarded_env(tmp_path))
    assert result.code == 2
    message = error_line(result)  # one line, so the newline did not get through
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert message.startswith("No such option: --x")
    assert json.loads(result.stdout) == {"success": False, "errors": [message]}


def test_python_dash_m_reports_a_bad_command_line_the_same_way(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "eemt_cleanup", "history", "--limit", "x"],
        cwd="/",
        env=guarded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("eemt-cleanup: error: Invalid value for '--limit'")
    assert done.stdout == ""


@pytest.mark.parametrize(
    "line",
    [["--help"], ["-h"], ["run", "--help"], ["config", "show", "--help"], ["audit", "-h"]],
    ids=" ".join,
)
def test_help_still_prints_the_help_and_exits_0(tmp_path: Path, line: list[str]) -> None:
    result = call(line, guarded_env(tmp_path))
    assert result.code == 0
    assert result.stdout.startswith("Usage: eemt-cleanup")
    assert "Options:" in result.stdout
    assert result.stderr == ""


def test_version_still_prints_the_version_and_exits_0(tmp_path: Path) -> None:
    result = call(["--version"], guarded_env(tmp_path))
    assert (result.code, result.stdout, result.stderr) == (0, f"eemt-cleanup {__version__}\n", "")


@pytest.mark.parametrize("line", [[], ["config"]], ids=["no command", "config without a command"])
def test_a_group_without_a_command_still_shows_its_help_on_stderr_and_exits_2(
    tmp_path: Path, line: list[str]
) -> None:
    result = call(line, guarded_env(tmp_path))
    assert result.code == 2
    assert result.stderr.startswith(f"Usage: eemt-cleanup {' '.join(line)}".rstrip() + " [OPTIONS]")
    assert "Commands:" in result.stderr
    assert result.stdout == ""
