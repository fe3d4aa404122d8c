"""``eemt-cleanup serve`` from the installed CLI, on 127.0.0.1, driven with httpx: tokens,
the dry run's shape, 202 → poll → done, 409 while another run holds the lock, 422 on bad
input, the upstream query parameters, a slow run while /healthz and status stay fast, the
metrics, the audit's filters, and what the run log and the audit record of an API run."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_server import (
    ENV_TOKEN,
    OTHER_TOKEN,
    RUN_TIMEOUT,
    TOKEN,
    Served,
    holding_lock,
    serve,
    wait_run,
)
from conftest import DemoBase, snapshot
from prometheus_client.parser import text_string_to_metric_families
from servers import wait_for

pytestmark = pytest.mark.e2e

# The reference's response keys, and those of one entry of its details.
REFERENCE_KEYS = {"success", "cleaned_jobs", "space_freed", "details"}
REFERENCE_DETAIL_KEYS = {"job_id", "status", "age_days", "space_freed"}
DUE_SUCCESSFUL, DUE_FAILED = 9, 2  # the demo base under the default retention


@pytest.fixture
def served(tmp_path: Path, demo_base: DemoBase) -> Any:
    with serve(tmp_path, demo_base) as server:
        yield server


def tree(base: DemoBase) -> dict[str, Any]:
    return {root: snapshot(base.path / root) for root in ("uploads", "results", "temp", "cache")}


def tables(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()


def post(client: httpx.Client, **kwargs: Any) -> httpx.Response:
    return client.post("/api/cleanup", **kwargs)


# -- tokens -------------------------------------------------------------------------


def test_healthz_needs_no_token_and_answers_the_version(served: Served) -> None:
    answer = httpx.get(f"{served.url}/healthz", timeout=30)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "version": "0.1.0"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/cleanup"),
        ("GET", "/api/cleanup/runs"),
        ("GET", "/api/cleanup/runs/some-run"),
        ("GET", "/api/cleanup/status"),
        ("GET", "/api/cleanup/audit"),
        ("GET", "/metrics"),
    ],
)
def test_every_endpoint_but_healthz_answers_401_without_a_token_and_403_with_a_wrong_one(
    served: Served, method: str, path: str
) -> None:
    before = tree(served.base)
    missing = served.client(token=None).request(method, path)
    assert missing.status_code == 401, missing.text
    assert missing.headers["www-authenticate"] == 'Bearer realm="eemt-cleanup"'
    assert missing.json() == {"detail": "an admin token is required: Authorization: Bearer <token>"}
    other_scheme = served.client(token=None).request(
        method, path, headers={"Authorization": f"Basic {TOKEN}"}
    )
    assert other_scheme.status_code == 401
    wrong = served.client(token=TOKEN[:-1] + "x").request(method, path)
    assert wrong.status_code == 403, wrong.text
    assert wrong.json() == {"detail": "the admin token is not valid"}
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert tree(served.base) == before  # nothing ran
    assert "cleanup_log" not in tables(served.base.db)


def test_each_token_of_the_file_and_the_environment_token_is_accepted(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    with serve(tmp_path, demo_base, env={"EEMT_CLEANUP_API_TOKEN": ENV_TOKEN}) as server:
        for token in (TOKEN, OTHER_TOKEN, ENV_TOKEN):
            answer = server.client(token=token).get("/api/cleanup/runs")
            assert answer.status_code == 200, answer.text
            assert answer.json() == []


# -- POST /api/cleanup ----------------------------------------------------------------


def test_a_dry_run_answers_200_with_the_reference_shape_and_changes_nothing(
    served: Served,
) -> None:
    before = tree(served.base)
    rows = served.base.rows()

    answer = post(served.client(), json={"dry_run": True})

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    result = answer.json()
    assert set(result) >= REFERENCE_KEYS
    assert result["success"] is True
    assert result["dry_run"] is True
    assert result["cleaned_jobs"] == {"successful": DUE_SUCCESSFUL, "failed": DUE_FAILED}
    assert set(result["space_freed"]) == {"bytes", "human_readable"}
    assert result["space_freed"]["bytes"] > 0
    due = {job["id"] for job in served.base.jobs("due")}
    assert {detail["job_id"] for detail in result["details"]} == due
    for detail in result["details"]:
        assert set(detail) >= REFERENCE_DETAIL_KEYS
        assert detail["status"] in ("completed", "failed")
        assert detail["age_days"] > 0
    assert tree(served.base) == before
    assert served.base.rows() == rows


def test_a_real_run_answers_202_with_a_location_then_its_status_says_done(
    served: Served,
) -> None:
    client = served.client()

    answer = post(client, json={"dry_run": False})

    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    location = answer.headers["location"]
    assert location == f"{served.url}/api/cleanup/runs/{accepted['run_id']}"
    assert accepted == {
        "run_id": accepted["run_id"],
        "state": "running",
        "status_url": location,
        "dry_run": False,
    }
    status = wait_run(client, location)
    assert status["state"] == "finished", status
    assert status["source"] == "api"
    assert status["outcome"] == "done"
    assert status["exit_code"] == 0
    assert status["user"] == "api:ops@127.0.0.1"
    result = status["result"]
    assert result["run_id"] == accepted["run_id"]
    assert result["dry_run"] is False
    assert result["cleaned_jobs"] == {"successful": DUE_SUCCESSFUL, "failed": DUE_FAILED}
    assert status["progress"]["jobs_done"] == DUE_SUCCESSFUL + DUE_FAILED
    assert status["progress"]["jobs_recorded"] == DUE_SUCCESSFUL + DUE_FAILED
    assert status["progress"]["bytes_so_far"] == result["space_freed"]["bytes"]
    rows = served.base.rows()
    for job in served.base.jobs("due"):
        assert rows[job["id"]]["data_cleaned_at"] is not None
        assert not (served.base.path / "results" / job["id"] / "outputs").exists()
    for expect in ("retained", "never", "unknown_status", "unparseable"):
        for job in served.base.jobs(expect):
            assert rows[job["id"]]["data_cleaned_at"] is None
            for path in job["paths"]:
                if not path.startswith("uploads/"):
                    assert (served.base.path / path).exists(), path


def test_the_run_log_and_the_audit_record_trigger_api_the_token_name_and_the_address(
    served: Served,
) -> None:
    client = served.client(token=OTHER_TOKEN)
    answer = post(client, params={"wait": "true"})
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["run_id"]

    conn = sqlite3.connect(served.base.db)
    try:
        log_row = conn.execute(
            "SELECT trigger, user, exit_code, jobs_successful, jobs_failed FROM cleanup_log "
            "WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        audit_users = {
            user
            for (user,) in conn.execute(
                "SELECT user FROM cleanup_audit WHERE run_id = ?", (run_id,)
            ).fetchall()
        }
    finally:
        conn.close()
    assert log_row == ("api", "api:ci@127.0.0.1", 0, DUE_SUCCESSFUL, DUE_FAILED)
    assert audit_users == {"api:ci@127.0.0.1"}


def test_wait_true_answers_200_with_the_result_of_the_real_run(served: Served) -> None:
    answer = post(served.client(), params={"wait": "true"}, json={"dry_run": False})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["dry_run"] is False
    assert result["success"] is True
    assert result["cleaned_jobs"] == {"successful": DUE_SUCCESSFUL, "failed": DUE_FAILED}
    second = post(served.client(), params={"wait": "true"})
    assert second.status_code == 200
    assert second.json()["cleaned_jobs"] == {"successful": 0, "failed": 0}


def test_a_run_holding_the_lock_makes_both_kinds_of_request_409_with_the_holder(
    served: Served,
) -> None:
    before = tree(served.base)
    client = served.client()
    with holding_lock(served.base.db):
        real = post(client)
        dry = post(client, json={"dry_run": True})
    for answer in (real, dry):
        assert answer.status_code == 409, answer.text
        body = answer.json()
        assert body["detail"].startswith("another eemt-cleanup run holds the lock on ")
        assert f"pid {os.getpid()}" in body["detail"]
        assert body["holder"]["pid"] == os.getpid()
    assert tree(served.base) == before
    after = post(client, params={"wait": "true"})  # released: the next one runs
    assert after.status_code == 200, after.text


@pytest.mark.parametrize(
    ("request_kwargs", "loc", "words"),
    [
        ({"json": {"success_retention_hours": -1}}, ["body", "success_retention_hours"], "0"),
        ({"json": {"failed_retention_hours": 87601}}, ["body", "failed_retention_hours"], ""),
        ({"json": {"failed_retention_hours": "12"}}, ["body", "failed_retention_hours"], ""),
        ({"json": {"success_retention_hours": True}}, ["body", "success_retention_hours"], ""),
        ({"json": {"dry_run": "yes"}}, ["body", "dry_run"], ""),
        ({"json": {"success_retention_days": 3}}, ["body", "success_retention_days"], ""),
        ({"json": ["dry_run"]}, ["body"], "JSON object"),
        ({"params": {"success_retention_days": "soon"}}, ["query", "success_retention_days"], ""),
        ({"params": {"success_retention_days": "-2"}}, ["query", "success_retention_days"], ""),
        ({"params": {"failed_retention_hours": "1e9"}}, ["query", "failed_retention_hours"], ""),
        ({"params": {"failed_retention_hours": "nan"}}, ["query", "failed_retention_hours"], ""),
        ({"params": {"success_retention_hour": "3"}}, ["query", "success_retention_hour"], ""),
        (
            {"params": {"dry_run": "true"}, "json": {"dry_run": True}},
            ["query", "dry_run"],
            "both",
        ),
    ],
)
def test_bad_input_is_422_naming_the_field_and_nothing_runs(
    served: Served, request_kwargs: dict[str, Any], loc: list[str], words: str
) -> None:
    before = tree(served.base)
    answer = post(served.client(), **request_kwargs)
    assert answer.status_code == 422, answer.text
    errors = answer.json()["detail"]
    assert [error["loc"] for error in errors] == [loc]
    assert words in errors[0]["msg"]
    assert tree(served.base) == before
    assert served.client().get("/api/cleanup/runs").json() == []


def test_invalid_json_is_422_a_body_that_is_not_json_415_and_a_big_one_413(
    served: Served,
) -> None:
    client = served.client()
    broken = post(client, content=b"{dry_run: true", headers={"Content-Type": "application/json"})
    assert broken.status_code == 422
    assert broken.json()["detail"][0]["type"] == "json_invalid"
    form = post(client, content=b"dry_run=true", headers={"Content-Type": "text/plain"})
    assert form.status_code == 415
    big = post(client, json={"dry_run": True, "padding": "x" * 20_000})
    assert big.status_code == 413
    assert big.json() == {"detail": "the body is larger than 16 KiB"}
    assert client.get("/api/cleanup/runs").json() == []


def test_the_upstream_query_parameters_set_retention_in_days_and_hours(served: Served) -> None:
    client = served.client()
    # 2.5 days: the job completed 3 days ago is due, the one 2 days ago is not; 5 hours:
    # the failed job of 6 hours ago is due.
    legacy = post(
        client,
        params={"dry_run": "true", "success_retention_days": "2.5", "failed_retention_hours": "5"},
    )
    assert legacy.status_code == 200, legacy.text
    assert legacy.json()["cleaned_jobs"] == {
        "successful": DUE_SUCCESSFUL + 1,
        "failed": DUE_FAILED + 1,
    }
    in_hours = post(
        client,
        json={"dry_run": True, "success_retention_hours": 60, "failed_retention_hours": 5},
    )
    assert in_hours.json()["cleaned_jobs"] == legacy.json()["cleaned_jobs"]
    real = post(client, params={"success_retention_days": "2.5", "wait": "1"})
    assert real.status_code == 200, real.text
    assert real.json()["dry_run"] is False
    assert real.json()["cleaned_jobs"] == {"successful": DUE_SUCCESSFUL + 1, "failed": DUE_FAILED}


def test_a_dry_run_forced_by_the_environment_answers_200_and_deletes_nothing(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    with serve(tmp_path, demo_base, env={"EEMT_CLEANUP_DRY_RUN": "true"}) as server:
        before = tree(server.base)
        answer = post(server.client())
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["dry_run"] is True
        assert result["dry_run_forced_by"] == "env EEMT_CLEANUP_DRY_RUN"
        assert tree(server.base) == before


# -- while a run is slow ----------------------------------------------------------------


def test_a_run_stuck_on_its_database_delays_neither_healthz_nor_status(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    config = "performance:\n  busy_timeout_seconds: 300\n"
    with serve(tmp_path, demo_base, config_text=config) as server:
        client = server.client()
        # Another writer holds the database (as the web interface may): the run has taken
        # the run lock and waits, up to its busy timeout, to write its start.
        blocker = sqlite3.connect(server.base.db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        answers: list[httpx.Response] = []
        poster = threading.Thread(target=lambda: answers.append(post(client)), daemon=True)
        poster.start()
        try:
            wait_for(lambda: _holder_pid(client) == server.process.pid, timeout=RUN_TIMEOUT)
            assert not answers  # the run is still waiting for the database
            started = time.monotonic()
            health = httpx.get(f"{server.url}/healthz", timeout=30)
            status = client.get("/api/cleanup/status", params={"measure": "false"})
            runs = client.get("/api/cleanup/runs")
            elapsed = time.monotonic() - started
            assert health.status_code == 200
            assert status.status_code == 200, status.text
            assert status.json()["running"]["pid"] == server.process.pid
            assert runs.status_code == 200
            assert not answers  # answered while the run was still stuck
            assert elapsed < 30
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        poster.join(RUN_TIMEOUT)
        assert answers and answers[0].status_code == 202, answers
        done = wait_run(client, answers[0].headers["location"])
        assert done["state"] == "finished"
        assert done["result"]["cleaned_jobs"] == {
            "successful": DUE_SUCCESSFUL,
            "failed": DUE_FAILED,
        }


def _holder_pid(client: httpx.Client) -> int | None:
    answer = client.get("/api/cleanup/status", params={"measure": "false"})
    assert answer.status_code == 200, answer.text
    running = answer.json()["running"]
    return running["pid"] if running else None


# -- status, runs, audit, metrics ---------------------------------------------------------


def test_status_shows_usage_by_status_what_is_due_and_the_last_run(served: Served) -> None:
    client = served.client()
    before = client.get("/api/cleanup/status")
    assert before.status_code == 200, before.text
    figures = before.json()
    by_status = {group["status"]: group for group in figures["by_status"]}
    assert by_status["completed"]["due_now"] == DUE_SUCCESSFUL
    assert by_status["failed"]["due_now"] == DUE_FAILED
    assert figures["due_now"] == DUE_SUCCESSFUL + DUE_FAILED
    assert (
        figures["due_bytes"] == post(client, json={"dry_run": True}).json()["space_freed"]["bytes"]
    )
    assert figures["last_run"] is None
    assert figures["running"] is None
    assert figures["cleaned_last_24h"]["jobs"] == 0
    assert figures["never_cleaned"]["unknown_status"]["count"] == 1
    assert figures["next_due_at"] is not None
    run = post(client, params={"wait": "true"}).json()

    after = client.get("/api/cleanup/status").json()

    assert after["due_now"] == 0
    assert after["last_run"]["run_id"] == run["run_id"]
    assert after["last_run"]["trigger"] == "api"
    assert after["cleaned_last_24h"]["jobs"] == DUE_SUCCESSFUL + DUE_FAILED
    assert after["cleaned_last_24h"]["bytes_freed"] == run["space_freed"]["bytes"]
    # A GET stores nothing: no size in data_size_mb of a job not cleaned.
    rows = served.base.rows()
    assert all(rows[job["id"]]["data_size_mb"] is None for job in served.base.jobs("retained"))


def test_runs_lists_the_run_log_and_shows_a_run_of_the_cli_from_it(
    served: Served, run_cli: Any
) -> None:
    done = run_cli(
        "run",
        "--json",
        "-c",
        str(served.base.path / "cleanup_config.yaml"),
        *served.base.path_args(),
    )
    assert done.code == 0, done.stderr
    cli_run = json.loads(done.stdout)["run_id"]
    client = served.client()

    runs = client.get("/api/cleanup/runs").json()
    one = client.get(f"/api/cleanup/runs/{cli_run}").json()
    missing = client.get("/api/cleanup/runs/no-such-run")

    assert [(run["run_id"], run["trigger"], run["exit_code"]) for run in runs] == [
        (cli_run, "cli", 0)
    ]
    assert one["source"] == "run_log"
    assert one["state"] == "finished"
    assert one["trigger"] == "cli"
    assert one["record"]["jobs_successful"] == DUE_SUCCESSFUL
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no run 'no-such-run'"}


def test_audit_filters_by_job_prefix_action_and_since_as_the_cli_does(served: Served) -> None:
    client = served.client()
    run = post(client, params={"wait": "true"}).json()
    job = next(detail["job_id"] for detail in run["details"] if detail["job_id"].startswith("97"))

    everything = client.get("/api/cleanup/audit").json()
    of_job = client.get("/api/cleanup/audit", params={"job": job[:8]}).json()
    deleted = client.get("/api/cleanup/audit", params={"action": "deleted_results"}).json()
    recent = client.get("/api/cleanup/audit", params={"since": "1h"}).json()
    future = client.get("/api/cleanup/audit", params={"since": "2999-01-01"}).json()
    limited = client.get("/api/cleanup/audit", params={"limit": 2}).json()
    none = client.get("/api/cleanup/audit", params={"job": "zzzz"}).json()

    assert everything and all(row["run_id"] == run["run_id"] for row in everything)
    assert of_job and {row["job_id"] for row in of_job} == {job}
    assert deleted and {row["action"] for row in deleted} == {"deleted_results"}
    assert len(recent) == len(everything)
    assert future == []
    assert limited == everything[:2]
    assert none == []


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"action": "deleted_everything"}, "action"),
        ({"since": "last tuesday"}, "since"),
        ({"job": " "}, "job"),
        ({"limit": "0"}, "limit"),
    ],
)
def test_a_bad_audit_filter_is_422_naming_it(
    served: Served, params: dict[str, str], name: str
) -> None:
    answer = served.client().get("/api/cleanup/audit", params=params)
    assert answer.status_code == 422, answer.text
    assert [error["loc"] for error in answer.json()["detail"]] == [["query", name]]


def test_an_ambiguous_job_prefix_is_422_with_how_many_match(served: Served) -> None:
    client = served.client()
    post(client, params={"wait": "true"})
    answer = client.get("/api/cleanup/audit", params={"job": "b"})  # bdd640fb, bd9c66b3, b74d0fb1
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["msg"].startswith("3 jobs match (")


def test_metrics_parse_and_count_the_api_run(served: Served) -> None:
    client = served.client()
    post(client, params={"wait": "true"})
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    series = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }
    assert series[("eemt_cleanup_runs_total", frozenset())] == 1
    assert series[("eemt_jobs_cleaned_total", frozenset({("status", "failed")}))] == DUE_FAILED


def test_the_openapi_document_shows_the_report_models_and_the_token_scheme(
    served: Served,
) -> None:
    document = httpx.get(f"{served.url}/openapi.json", timeout=30).json()
    schemas = document["components"]["schemas"]
    post_schema = document["paths"]["/api/cleanup"]["post"]
    assert set(post_schema["responses"]) >= {"200", "202", "401", "403", "409", "422"}
    assert "JobDetailJson" in schemas
    assert set(schemas["JobDetailJson"]["properties"]) >= REFERENCE_DETAIL_KEYS
    assert post_schema["requestBody"]["content"]["application/json"]["schema"][
        "properties"
    ].keys() == {
        "dry_run",
        "success_retention_hours",
        "failed_retention_hours",
    }
    assert document["components"]["securitySchemes"]["AdminToken"]["scheme"] == "bearer"


def test_sigterm_stops_the_server_with_exit_0(served: Served) -> None:
    assert served.stop() == 0
    assert "Traceback" not in served.log()
