"""The Python API: ``run_cleanup`` from a non-main thread of a process that has other
threads, twice, with its events; and no process-global side effect (issue #9)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from conftest import DemoBase

import eemt_cleanup
from eemt_cleanup.events import EVENT_KINDS, parse_event
from eemt_cleanup.models import Outcome

DEADLINE = 120


def host_handler(_number: int, _frame: FrameType | None) -> None:
    """The host application's own signal handler (must stay installed)."""


@pytest.fixture
def busy_host() -> Iterator[threading.Event]:
    """Another thread of the host process, busy all along (a fork would copy it mid-use)."""
    done = threading.Event()

    def spin() -> None:
        lock = threading.Lock()
        while not done.is_set():
            with lock:
                sum(range(200))

    thread = threading.Thread(target=spin, name="host-busy", daemon=True)
    thread.start()
    yield done
    done.set()
    thread.join(DEADLINE)


class Recorder:
    """Collects events; at each ``batch_recorded``, checks the deletions it records are
    done: the paths of its jobs are gone from disk."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.events: list[Any] = []
        self.removed: dict[str, list[Any]] = {}
        self.gone_at_record: list[bool] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)
        if event.kind == "path_removed":
            self.removed.setdefault(event.job_id, []).append(event)
        if event.kind == "batch_recorded":
            for job_id in event.job_ids:
                self.gone_at_record.extend(map(self._done, self.removed.get(job_id, [])))

    def _done(self, removed: Any) -> bool:
        """Gone, or (a results directory whose logs are kept) only the kept logs left."""
        path = self.base / removed.path.rstrip("/")
        if not removed.emptied:
            return not os.path.lexists(path)
        return set(os.listdir(path)) == set(removed.kept)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


def demo_config(demo_base: DemoBase, **overrides: Any) -> Any:
    """The demo base's configuration through the API, as the CLI's flags would give it."""
    return eemt_cleanup.load_config(
        db_path=str(demo_base.db),
        uploads_dir=str(demo_base.path / "uploads"),
        results_dir=str(demo_base.path / "results"),
        temp_dir=str(demo_base.path / "temp"),
        paths__logs=str(demo_base.path / "logs"),
        **overrides,
    )


def run_in_thread(config: Any, recorder: Recorder) -> Any:
    outcome: list[Any] = []
    failures: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(eemt_cleanup.run_cleanup(config, on_event=recorder))
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=target, name="api-caller")
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), "run_cleanup hung"
    if failures:
        raise failures[0]
    return outcome[0]


def marked(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT id FROM jobs WHERE data_cleaned_at IS NOT NULL")
        return {row[0] for row in rows}
    finally:
        conn.close()


def run_log(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT run_id, jobs_successful, jobs_failed, bytes_freed, exit_code "
            "FROM cleanup_log ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def assert_order(recorder: Recorder, report: Any) -> None:
    kinds = recorder.kinds()
    assert set(kinds) <= set(EVENT_KINDS)
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("run_started") == kinds.count("run_finished") == 1
    finished = [e.job.job_id for e in recorder.events if e.kind == "job_finished"]
    # In plan order: the order of the report's jobs.
    assert finished == [job.job_id for job in report.jobs]
    position = {id(event): index for index, event in enumerate(recorder.events)}
    for job_id in finished:
        mine = [
            e.kind
            for e in recorder.events
            if getattr(e, "job_id", None) == job_id
            or (e.kind == "job_finished" and e.job.job_id == job_id)
        ]
        assert mine[0] == "job_started", mine
        assert mine[-1] == "job_finished", mine
        assert set(mine[1:-1]) <= {"path_removed", "path_kept"}, mine
    for event in recorder.events:
        if event.kind != "batch_recorded":
            continue
        for job_id in event.job_ids:
            done = next(
                e for e in recorder.events if e.kind == "job_finished" and e.job.job_id == job_id
            )
            assert position[id(done)] < position[id(event)], "recorded before it was done"
    # Every event is JSON and comes back as itself.
    for event in recorder.events:
        data = json.loads(event.to_json())
        assert data["kind"] == event.kind
        assert parse_event(data).kind == event.kind


def test_run_cleanup_from_a_thread_twice_emits_ordered_events_and_touches_no_global_state(
    demo_base: DemoBase, busy_host: threading.Event
) -> None:
    config = demo_config(demo_base, workers=2, batch_size=3)  # several batches
    root = logging.getLogger()
    ours = logging.getLogger("eemt_cleanup")
    previous = {number: signal.signal(number, host_handler) for number in (2, 15)}
    try:
        logging_before = (
            list(root.handlers),
            root.level,
            list(ours.handlers),
            ours.level,
            ours.propagate,
            logging.raiseExceptions,
        )
        first, second = Recorder(demo_base.path), Recorder(demo_base.path)

        report = run_in_thread(config, first)
        again = run_in_thread(config, second)

        assert signal.getsignal(signal.SIGINT) is host_handler
        assert signal.getsignal(signal.SIGTERM) is host_handler
        assert (
            list(root.handlers),
            root.level,
            list(ours.handlers),
            ours.level,
            ours.propagate,
            logging.raiseExceptions,
        ) == logging_before
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    assert threading.current_thread() is threading.main_thread()

    assert report.outcome is Outcome.DONE
    assert_order(first, report)
    assert first.gone_at_record and all(first.gone_at_record)
    recorded = [job_id for e in first.events if e.kind == "batch_recorded" for job_id in e.job_ids]
    assert len([e for e in first.events if e.kind == "batch_recorded"]) >= 2
    # The report matches the database.
    cleaned = {job.job_id for job in report.jobs if job.recorded}
    assert cleaned == marked(demo_base.db) == set(recorded)
    assert cleaned == {job["id"] for job in demo_base.jobs("due")}
    (run_id, successful, failed, freed, code), *rest = run_log(demo_base.db)
    assert run_id == report.run_id
    assert (successful, failed, freed, code) == (
        report.summary().cleaned_jobs.successful,
        report.summary().cleaned_jobs.failed,
        report.bytes_freed,
        0,
    )
    finished = first.events[-1]
    assert finished.report == report.summary()

    # The second run in the same process: nothing left to clean, events all the same.
    assert again.outcome is Outcome.DONE
    assert again.jobs == []
    assert_order(second, again)
    assert [row[0] for row in rest] == [again.run_id]


def test_a_subscriber_that_raises_is_logged_once_and_never_breaks_the_run(
    demo_base: DemoBase, caplog: pytest.LogCaptureFixture
) -> None:
    config = demo_config(demo_base)
    calls: list[str] = []

    def broken(event: Any) -> None:
        calls.append(event.kind)
        raise RuntimeError("subscriber bug")

    with caplog.at_level(logging.ERROR, logger="eemt_cleanup"):
        report = eemt_cleanup.run_cleanup(config, on_event=broken)

    assert report.outcome is Outcome.DONE
    assert calls[0] == "run_started" and calls[-1] == "run_finished"
    failures = [r for r in caplog.records if "subscriber bug" in r.getMessage()]
    assert len(failures) == 1
    assert {job.job_id for job in report.jobs} == marked(demo_base.db)


def test_plan_changes_nothing_and_says_what_a_run_would_free(demo_base: DemoBase) -> None:
    config = demo_config(demo_base)
    database = demo_base.db.read_bytes()

    planned = eemt_cleanup.plan(config)
    status = eemt_cleanup.inventory(config)

    assert planned.dry_run is True
    assert demo_base.db.read_bytes() == database
    assert status.due_bytes == planned.bytes_freed
    assert status.due_now == len(planned.jobs)
    report = eemt_cleanup.run_cleanup(config)
    assert report.bytes_freed == planned.bytes_freed
    assert [job.job_id for job in report.jobs] == [job.job_id for job in planned.jobs]


def test_load_config_rejects_a_bad_override_naming_it(tmp_path: Path) -> None:
    from eemt_cleanup.errors import ConfigError

    config = tmp_path / "cleanup_config.yaml"
    config.write_text("retention:\n  failed_jobs: {hours: 24}\n")

    loaded = eemt_cleanup.load_config(config, batch_size=7)
    assert loaded.settings.retention.failed_jobs.hours == 24
    assert loaded.settings.performance.batch_size == 7
    assert loaded.sources["performance.batch_size"] == "flag load_config(batch_size=)"
    with pytest.raises(ConfigError, match="max_workers"):
        eemt_cleanup.load_config(config, workers=0)


def test_the_api_functions_stay_callable_after_their_modules_are_imported(
    demo_base: DemoBase,
) -> None:
    # A submodule named like an API function would replace it on the package when imported.
    import eemt_cleanup.sampling
    import eemt_cleanup.stocktake

    config = demo_config(demo_base)
    first = eemt_cleanup.inventory(config)
    second = eemt_cleanup.inventory(config)
    assert callable(eemt_cleanup.plan) and callable(eemt_cleanup.run_cleanup)
    assert first.due_now == second.due_now > 0
