"""The router mounted in a FastAPI app of its own routes, served by a real uvicorn on
127.0.0.1 in this process: a run held mid-way by a subscriber that blocks until the test
lets it go shows its live progress, and while it is held /healthz and status answer, and a
second run is refused with 409 naming the first."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_server import OTHER_TOKEN, RUN_TIMEOUT, TOKEN, bearer, uvicorn_thread, wait_run
from conftest import DemoBase
from fastapi import FastAPI
from servers import wait_for

from eemt_cleanup.http import create_app, create_router
from eemt_cleanup.http.api import runs_of

DUE = 11  # due jobs of the demo base


def paths(base: DemoBase) -> dict[str, Any]:
    config = base.path / "cleanup_config.yaml"
    config.write_text("performance:\n  max_workers: 1\n  batch_size: 1\n")
    return {
        "config": config,
        "db_path": str(base.db),
        "uploads_dir": str(base.path / "uploads"),
        "results_dir": str(base.path / "results"),
        "temp_dir": str(base.path / "temp"),
    }


class Gate:
    """An event subscriber that holds the run at its first ``job_finished`` until
    ``release``; ``reached`` is set once the run is held."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.released = threading.Event()
        self.kinds: list[str] = []

    def __call__(self, event: Any) -> None:
        self.kinds.append(event.kind)
        if event.kind == "job_finished" and not self.reached.is_set():
            self.reached.set()
            assert self.released.wait(RUN_TIMEOUT), "the test never released the run"

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def gate() -> Iterator[Gate]:
    held = Gate()
    yield held
    held.release()  # whatever happened, the run's thread is not left waiting


def host_app(router: Any) -> FastAPI:
    """The web interface: an app with routes of its own, the router mounted in one line."""
    app = FastAPI(title="EEMT web interface")

    @app.get("/api/jobs")
    def jobs() -> dict[str, list[str]]:
        return {"jobs": ["a", "b"]}

    @app.get("/")
    def home() -> dict[str, str]:
        return {"page": "home"}

    app.include_router(router)
    return app


def test_the_router_mounted_in_an_app_serves_beside_the_apps_own_routes(
    demo_base: DemoBase,
) -> None:
    router = create_router(tokens={"web": TOKEN}, **paths(demo_base))
    with uvicorn_thread(host_app(router)) as server:
        client = httpx.Client(base_url=server.url, headers=bearer(), timeout=RUN_TIMEOUT)
        with client:
            assert client.get("/api/jobs").json() == {"jobs": ["a", "b"]}
            assert client.get("/").json() == {"page": "home"}
            assert client.get("/healthz").json()["status"] == "ok"
            preview = client.post("/api/cleanup", json={"dry_run": True})
            assert preview.status_code == 200, preview.text
            assert preview.json()["cleaned_jobs"] == {"successful": 9, "failed": 2}
            run = client.post("/api/cleanup", params={"wait": "true"})
            assert run.status_code == 200, run.text
            assert client.get("/api/cleanup/runs").json()[0]["user"] == "api:web@127.0.0.1"
            assert client.get("/api/cleanup/status").status_code == 200
            document = client.get("/openapi.json").json()
    assert {"/api/jobs", "/", "/api/cleanup", "/api/cleanup/runs/{run_id}"} <= set(
        document["paths"]
    )
    assert document["info"]["title"] == "EEMT web interface"


def test_a_router_mounted_under_a_prefix_answers_there_with_its_location(
    demo_base: DemoBase,
) -> None:
    app = FastAPI()
    app.include_router(create_router(tokens={"web": TOKEN}, **paths(demo_base)), prefix="/admin")
    with (
        uvicorn_thread(app) as server,
        httpx.Client(base_url=server.url, headers=bearer(), timeout=RUN_TIMEOUT) as client,
    ):
        answer = client.post("/admin/api/cleanup")
        assert answer.status_code == 202, answer.text
        location = answer.headers["location"]
        assert location.startswith(f"{server.url}/admin/api/cleanup/runs/")
        assert wait_run(client, location)["state"] == "finished"
        assert client.post("/api/cleanup").status_code == 404


def test_a_held_run_shows_live_progress_while_healthz_status_answer_and_a_second_is_409(
    demo_base: DemoBase, gate: Gate
) -> None:
    router = create_router(
        tokens={"ops": TOKEN, "ci": OTHER_TOKEN}, on_event=gate, **paths(demo_base)
    )
    with (
        uvicorn_thread(host_app(router)) as server,
        httpx.Client(base_url=server.url, headers=bearer(), timeout=RUN_TIMEOUT) as client,
    ):
        started = client.post("/api/cleanup")
        assert started.status_code == 202, started.text
        location = started.headers["location"]
        assert gate.reached.wait(RUN_TIMEOUT)

        # Held at its first job: everything else still answers.
        live = client.get(location).json()
        health = client.get("/healthz")
        status = client.get("/api/cleanup/status", params={"measure": "false"})
        second = client.post("/api/cleanup", headers=bearer(OTHER_TOKEN))
        preview = client.post("/api/cleanup", json={"dry_run": True})
        own = client.get("/api/jobs")

        assert live["state"] == "running"
        assert live["source"] == "api"
        assert live["progress"]["jobs_done"] == 1
        assert live["progress"]["current_job"] is not None
        assert live["progress"]["last_event"] == "job_finished"
        assert live["result"] is None
        assert health.status_code == 200
        assert status.status_code == 200, status.text
        assert status.json()["running"]["run_id"] == started.json()["run_id"]
        assert own.status_code == 200
        for refused in (second, preview):
            assert refused.status_code == 409, refused.text
            holder = refused.json()["holder"]
            assert holder["pid"] == os.getpid()
            assert holder["run_id"] == started.json()["run_id"]
            assert holder["trigger"] == "api"
            assert holder["user"] == "api:ops@127.0.0.1"
        assert "trigger api" in second.json()["detail"]

        gate.release()
        done = wait_run(client, location)
    assert done["state"] == "finished"
    assert done["progress"]["jobs_done"] == DUE
    assert done["result"]["cleaned_jobs"] == {"successful": 9, "failed": 2}
    assert gate.kinds[0] == "run_started" and gate.kinds[-1] == "run_finished"


def test_stop_all_stops_a_run_after_its_job_in_hand(demo_base: DemoBase, gate: Gate) -> None:
    router = create_router(tokens={"ops": TOKEN}, on_event=gate, **paths(demo_base))
    with (
        uvicorn_thread(host_app(router)) as server,
        httpx.Client(base_url=server.url, headers=bearer(), timeout=RUN_TIMEOUT) as client,
    ):
        location = client.post("/api/cleanup").headers["location"]
        assert gate.reached.wait(RUN_TIMEOUT)
        runs = runs_of(router)
        stopper = threading.Thread(target=runs.stop_all, args=(RUN_TIMEOUT,))
        stopper.start()
        assert runs.running()[0].stop.requested
        gate.release()
        stopper.join(RUN_TIMEOUT)
        done = wait_run(client, location)
    assert done["state"] == "finished"
    assert done["outcome"] == "stopped"
    assert done["exit_code"] == 1
    assert done["progress"]["jobs_done"] < DUE
    recorded = done["result"]["cleaned_jobs"]
    assert recorded["successful"] + recorded["failed"] == done["progress"]["jobs_recorded"]


def test_create_app_asks_its_runs_to_stop_on_shutdown(demo_base: DemoBase, gate: Gate) -> None:
    app = create_app(tokens={"ops": TOKEN}, on_event=gate, **paths(demo_base))
    with (
        uvicorn_thread(app) as server,
        httpx.Client(base_url=server.url, headers=bearer(), timeout=RUN_TIMEOUT) as client,
    ):
        client.post("/api/cleanup")
        assert gate.reached.wait(RUN_TIMEOUT)
        handle = runs_of(app).running()[0]

        def release_once_asked_to_stop() -> None:
            wait_for(lambda: handle.stop.requested, timeout=RUN_TIMEOUT)
            gate.release()

        releaser = threading.Thread(target=release_once_asked_to_stop)
        releaser.start()
        assert not handle.stop.requested
    # Leaving uvicorn_thread shut the server down; its lifespan waited for the run.
    releaser.join(RUN_TIMEOUT)
    assert handle.stop.requested
    assert handle.done.is_set()
    assert handle.report is not None and handle.report.outcome == "stopped"


def test_an_unconfigured_token_set_lets_only_healthz_through(
    demo_base: DemoBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EEMT_CLEANUP_API_TOKEN", raising=False)
    router = create_router(**paths(demo_base))
    with (
        uvicorn_thread(host_app(router)) as server,
        httpx.Client(base_url=server.url, timeout=RUN_TIMEOUT) as client,
    ):
        assert client.get("/healthz").status_code == 200
        assert client.post("/api/cleanup", headers=bearer()).status_code == 403
        assert client.post("/api/cleanup").status_code == 401
    assert not (Path(demo_base.path) / "logs" / "cleanup.log").exists()
