"""The admin page ``/cleanup`` of ``eemt-cleanup serve``: signing in (an HttpOnly,
SameSite=Strict session cookie, never accepted by the API), the forms' CSRF token, escaping,
the headers that forbid framing and scripts; and the whole flow in headless Chromium
(sign in, dry run, clean now behind its confirmation), with a screenshot."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_server import RUN_TIMEOUT, TOKEN, Served, serve
from browser import chromium, chromium_path
from conftest import DemoBase, snapshot

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
HOSTILE_STATUS = '<img src=x onerror="alert(1)">'
# Set to a path to keep the browser test's screenshot there (docs/admin-page.png is made so).
SCREENSHOT_ENV = "EEMT_CLEANUP_SCREENSHOT"


def history_base(tmp_path: Path, demo_base: DemoBase) -> DemoBase:
    """The demo base with a month of usage history (for the chart) in its jobs.db."""
    history = demo_base.path / "history.db"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_capacity_history.py"),
            str(demo_base.db),
            str(history),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    os.replace(history, demo_base.db)
    conn = sqlite3.connect(demo_base.db)
    with conn:
        conn.execute(
            "INSERT INTO jobs (id, workflow_type, status, completed_at) VALUES (?, ?, ?, ?)",
            ("hostile-status-job", "eemt", HOSTILE_STATUS, "2026-01-01T00:00:00"),
        )
    conn.close()
    return demo_base


@pytest.fixture
def served(tmp_path: Path, demo_base: DemoBase) -> Any:
    with serve(tmp_path, history_base(tmp_path, demo_base)) as server:
        yield server


def browser_client(served: Served) -> httpx.Client:
    client = httpx.Client(base_url=served.url, timeout=RUN_TIMEOUT, follow_redirects=False)
    served.clients.append(client)
    return client


def sign_in(client: httpx.Client) -> httpx.Response:
    return client.post("/cleanup/login", data={"token": TOKEN})


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def tree(base: DemoBase) -> dict[str, Any]:
    return {root: snapshot(base.path / root) for root in ("uploads", "results", "temp")}


def test_the_page_without_a_session_is_the_sign_in_form_only(served: Served) -> None:
    answer = browser_client(served).get("/cleanup")
    assert answer.status_code == 200
    assert 'name="token"' in answer.text
    assert "Job data not yet cleaned" not in answer.text
    assert "archived" not in answer.text


def test_signing_in_sets_an_httponly_samesite_strict_cookie_that_the_api_refuses(
    served: Served,
) -> None:
    client = browser_client(served)
    wrong = client.post("/cleanup/login", data={"token": TOKEN[:-1] + "x"})
    assert wrong.status_code == 403
    assert "That is not a valid token." in wrong.text
    assert "set-cookie" not in wrong.headers

    answer = sign_in(client)

    assert answer.status_code == 303
    assert answer.headers["location"] == "/cleanup"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("eemt_cleanup_session=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/cleanup"} <= flags
    assert TOKEN not in cookie
    # The session reads the page, but is no key to the API.
    assert client.get("/cleanup").status_code == 200
    assert "Job data not yet cleaned, by status" in client.get("/cleanup").text
    assert client.post("/api/cleanup").status_code == 401
    assert client.get("/api/cleanup/status").status_code == 401


def test_the_page_escapes_what_comes_from_rows_and_forbids_scripts_and_framing(
    served: Served,
) -> None:
    client = browser_client(served)
    sign_in(client)
    answer = client.get("/cleanup")
    assert answer.status_code == 200
    assert HOSTILE_STATUS not in answer.text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in answer.text
    assert "<script" not in answer.text
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src" not in policy  # no script is allowed at all
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"
    assert 'src="data:image/png;base64,' in answer.text  # the capacity chart, inline


def test_a_bearer_header_reads_the_page_without_its_buttons(served: Served) -> None:
    answer = browser_client(served).get("/cleanup", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert "Job data not yet cleaned" in answer.text
    assert "Signed in with a header: read only" in answer.text
    assert 'name="csrf"' not in answer.text


def test_forms_without_the_csrf_token_or_from_another_site_change_nothing(
    served: Served,
) -> None:
    client = browser_client(served)
    sign_in(client)
    csrf = csrf_of(client.get("/cleanup").text)
    before = tree(served.base)
    for path in ("/cleanup/dry-run", "/cleanup/clean", "/cleanup/clean/confirm"):
        missing = client.post(path, data={"confirm": "yes"})
        assert missing.status_code == 403, path
        assert "the form is stale" in missing.text
        forged = client.post(path, data={"csrf": csrf + "x", "confirm": "yes"})
        assert forged.status_code == 403, path
        cross = client.post(
            path, data={"csrf": csrf, "confirm": "yes"}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert cross.status_code == 403, path
        assert "cross-site" in cross.text
    anonymous = browser_client(served).post(
        "/cleanup/clean/confirm", data={"csrf": csrf, "confirm": "yes"}
    )
    assert anonymous.status_code == 303  # to the sign-in form
    assert tree(served.base) == before
    runs = client.get("/api/cleanup/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert {run["trigger"] for run in runs.json()} == {"cron"}  # the history's only


def test_dry_run_then_clean_now_behind_its_confirmation(served: Served) -> None:
    client = browser_client(served)
    sign_in(client)
    csrf = csrf_of(client.get("/cleanup").text)
    before = tree(served.base)

    dry = client.post("/cleanup/dry-run", data={"csrf": csrf})
    asked = client.post("/cleanup/clean", data={"csrf": csrf})
    assert tree(served.base) == before  # neither deleted anything

    assert dry.status_code == 200
    assert "Would clean 11 jobs</b> (9 successful, 2 failed)" in dry.text
    assert "Yes, clean now" not in dry.text
    assert asked.status_code == 200
    assert "Clean now?" in asked.text and "Yes, clean now" in asked.text
    confirmed = client.post("/cleanup/clean/confirm", data={"csrf": csrf, "confirm": "yes"})
    assert confirmed.status_code == 303
    run_page = confirmed.headers["location"]
    assert run_page.startswith("/cleanup/runs/")
    deadline = time.monotonic() + RUN_TIMEOUT
    while "State: <b>finished</b>" not in (text := client.get(run_page).text):
        assert time.monotonic() < deadline, text
        time.sleep(0.1)
    assert "Cleaned 9 successful and 2 failed jobs" in text
    assert "By api:ops@127.0.0.1" in text
    rows = served.base.rows()
    assert all(rows[job["id"]]["data_cleaned_at"] for job in served.base.jobs("due"))


def test_signing_out_ends_the_session(served: Served) -> None:
    client = browser_client(served)
    sign_in(client)
    csrf = csrf_of(client.get("/cleanup").text)
    out = client.post("/cleanup/logout", data={"csrf": csrf})
    assert out.status_code == 303
    client.cookies.clear()
    assert 'name="token"' in client.get("/cleanup").text


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")
def test_the_page_in_headless_chromium_signs_in_cleans_and_is_screenshotted(
    served: Served, tmp_path: Path
) -> None:
    with chromium(tmp_path / "chromium") as browser:
        browser.goto(f"{served.url}/cleanup")
        assert "Admin token" in browser.text()
        browser.submit(
            f"document.querySelector('input[name=token]').value = {TOKEN!r};"
            "document.querySelector('form').submit()"
        )
        page = browser.text()
        assert "signed in with token ops" in page
        assert "Job data not yet cleaned, by status" in page
        assert HOSTILE_STATUS in page  # shown as text...
        assert browser.evaluate("document.images.length") == 1  # ...only the chart is an image
        assert browser.evaluate("document.images[0].naturalWidth") == 1000
        # The session cookie is not readable by scripts.
        assert "eemt_cleanup_session" not in str(browser.evaluate("document.cookie"))
        shot = browser.screenshot(tmp_path / "admin-page.png", 1280)
        width, height = png_size(shot)
        assert width == 1280 and height > 1200
        assert len(shot) > 50_000  # a page with a chart, not a blank one
        keep = os.environ.get(SCREENSHOT_ENV)
        if keep:
            shutil.copyfile(tmp_path / "admin-page.png", keep)

        browser.submit("document.querySelector('form[action$=\"/dry-run\"] button').click()")
        assert "Would clean 11 jobs (9 successful, 2 failed)" in browser.text()
        browser.goto(f"{served.url}/cleanup")  # back; then the real thing
        browser.submit("document.querySelector('button.danger').click()")
        assert "Clean now?" in browser.text()
        browser.submit("document.querySelector('button.danger').click()")
        deadline = time.monotonic() + RUN_TIMEOUT
        text = ""
        while "State: finished" not in text:
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
            try:
                text = browser.text()
            except AssertionError:  # the page was reloading (it refreshes while running)
                continue
        assert "Cleaned 9 successful and 2 failed jobs" in text
    rows = served.base.rows()
    assert all(rows[job["id"]]["data_cleaned_at"] for job in served.base.jobs("due"))
