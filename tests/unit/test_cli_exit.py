"""The console-script entry point ends the process with ``os._exit`` after the command:
the exit status must be what ``sys.exit`` would give, and nothing buffered may be lost."""

from __future__ import annotations

import subprocess
import sys

import pytest

from eemt_cleanup.cli import exit_status


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (1, 1), (2, 2), (75, 75)])
def test_exit_status_of_numbers_and_none(code: object, status: int) -> None:
    assert exit_status(code) == status


def test_exit_status_of_a_message_is_1_and_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_status("boom") == 1
    assert capsys.readouterr().err == "boom\n"


def test_exit_now_flushes_stdout_stderr_and_log_handlers_before_ending() -> None:
    code = (
        "import logging, sys\n"
        "from eemt_cleanup.cli import exit_now\n"
        "logging.basicConfig(stream=sys.stderr, format='%(message)s')\n"
        "sys.stdout.write('out without newline')\n"
        "sys.stderr.write('err line\\n')\n"
        "logging.getLogger('x').warning('logged')\n"
        "exit_now(3)\n"
        "print('never')\n"
    )
    # Pipes, so the streams are block-buffered as they are under cron.
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": "/usr/bin"}
    )
    assert done.returncode == 3
    assert done.stdout == "out without newline"
    assert done.stderr == "err line\nlogged\n"
