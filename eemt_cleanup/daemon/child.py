"""One cleanup run in a child process: ``eemt-cleanup run --events jsonl``.

The daemon never cleans in its own process: a crash, a leak or a filesystem that hangs
takes down the child only, and the deletion workers start from a process without the
daemon's threads. The child reads the daemon's validated configuration from a private
snapshot file (so a config file edited into something invalid never reaches a run), writes
its own log file, and streams its events on stdout; the daemon reads them back as events
and relays the child's stderr lines to its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eemt_cleanup.config.loader import LoadedConfig
from eemt_cleanup.report.escape import printable

log = logging.getLogger("eemt_cleanup.daemon")

# Lines longer than this from the child are skipped, never held whole (a run's event lines
# are far shorter; the run_finished line of a big run is the longest, about 1 KiB per job).
MAX_LINE = 64 * 1024 * 1024


@dataclass(frozen=True)
class RunRequest:
    """What to start: the trigger, the slot (scheduled runs) and tighter retention
    (pressure runs)."""

    trigger: str
    slot: Any = None  # datetime of the scheduled slot
    catch_up: bool = False
    successful_hours: float | None = None
    failed_hours: float | None = None
    reason: str = ""  # for the log line


@dataclass
class ChildResult:
    exit_code: int
    run_id: str | None = None
    finished: Any = None  # the RunFinished event, when the child got that far
    last_error_line: str | None = None  # its last ERROR line on stderr
    events: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def snapshot_settings(config: LoadedConfig, directory: Path) -> Path:
    """Write ``config``'s effective settings, paths absolute, to a new file in
    ``directory`` (a private one the daemon made) for the child's ``--config``.
    Notification settings (secrets) are left out: the daemon sends the notices."""
    tree = config.settings.model_dump(mode="json")
    tree.pop("notifications", None)
    roots = config.roots
    tree["paths"].update(
        database=str(roots.database),
        uploads=str(roots.uploads),
        results=str(roots.results),
        temp=str(roots.temp),
        logs=str(roots.logs),
    )
    fd, name = tempfile.mkstemp(prefix="config-", suffix=".yaml", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        # JSON is YAML: plain scalars, no anchors, every key quoted (a bare 'on' too).
        json.dump(tree, out, indent=1)
    return Path(name)


def child_argv(snapshot: Path, request: RunRequest) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "eemt_cleanup",
        "run",
        "--config",
        str(snapshot),
        "--events",
        "jsonl",
        "--trigger",
        request.trigger,
        "--no-reports",
    ]
    if request.successful_hours is not None:
        argv += ["--success-retention", repr(float(request.successful_hours))]
    if request.failed_hours is not None:
        argv += ["--failed-retention", repr(float(request.failed_hours))]
    return argv


def child_environment() -> dict[str, str]:
    """The daemon's environment, minus what must not reach the child: the variables that
    name another config file (the snapshot is the config) and the path overrides, which
    the snapshot already holds resolved."""
    environ = dict(os.environ)
    for name in (
        "EEMT_CLEANUP_CONFIG",
        "EEMT_DB_PATH",
        "EEMT_UPLOADS_DIR",
        "EEMT_RESULTS_DIR",
        "EEMT_TEMP_DIR",
        "EEMT_SUCCESS_RETENTION_HOURS",
        "EEMT_SUCCESS_RETENTION_DAYS",
        "EEMT_FAILED_RETENTION_HOURS",
        "EEMT_CLEANUP_WORKERS",
        "EEMT_CLEANUP_BATCH_SIZE",
        "EEMT_CLEANUP_LOG_LEVEL",
    ):
        environ.pop(name, None)
    environ["PYTHONUNBUFFERED"] = "1"
    return environ


class ChildRun:
    """A started child: its events go to ``on_event`` (on the reading thread), its stderr
    lines to ``on_line``."""

    def __init__(
        self,
        argv: list[str],
        on_event: Callable[[Any], None],
        on_line: Callable[[str], None],
        env: dict[str, str] | None = None,
    ) -> None:
        from eemt_cleanup.events import parse_event

        self._parse = parse_event
        self.on_event = on_event
        self.on_line = on_line
        self.result = ChildResult(exit_code=-1)
        self._signalled = False
        # Its own session: a Ctrl-C at the daemon's terminal reaches the daemon only, which
        # passes one SIGTERM on (two signals would make the child stop without its books).
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
        self._err_thread = threading.Thread(
            target=self._read_stderr, name="eemt-cleanup-child-stderr", daemon=True
        )
        self._err_thread.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_events(self) -> ChildResult:
        """Read the child's events until it closes stdout, then wait for it. Blocks."""
        assert self.process.stdout is not None
        stdout = self.process.stdout
        while True:
            raw = stdout.readline(MAX_LINE)
            if not raw:
                break
            if not raw.endswith(b"\n") and len(raw) >= MAX_LINE:
                # A line longer than the bound: skip the rest of it, never hold it all.
                while (rest := stdout.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                    pass
                self.on_line(f"(a line of the run's output over {MAX_LINE} bytes was skipped)")
                continue
            line = raw.strip()
            if not line:
                continue
            try:
                event = self._parse(line)
            except ValueError:
                self.on_line(printable(line.decode("utf-8", "replace"), backslashes=False))
                continue
            self.result.events += 1
            if getattr(event, "kind", None) == "run_started":
                self.result.run_id = event.run_id
            elif getattr(event, "kind", None) == "run_finished":
                self.result.finished = event
            try:
                self.on_event(event)
            except Exception:
                log.exception("relaying an event of the run failed")
        self.result.exit_code = self.process.wait()
        self._err_thread.join(timeout=10)
        for pipe in (self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError):
                pipe.close()  # type: ignore[union-attr]
        return self.result

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in iter(lambda: self.process.stderr.readline(MAX_LINE), b""):  # type: ignore[union-attr]
            text = printable(
                raw[:MAX_LINE].decode("utf-8", "replace").rstrip("\r\n"), backslashes=False
            )
            if not text:
                continue
            if " ERROR: " in text or text.startswith("eemt-cleanup: "):
                self.result.last_error_line = text
            self.on_line(text)

    def terminate(self) -> None:
        """Ask the child to stop after the job in hand (once: a second signal would make
        it stop at once)."""
        if self._signalled or self.process.poll() is not None:
            return
        self._signalled = True
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
