"""The reference documentation's client examples against ``eemt-cleanup serve``, as written
plus the token header: its three curl commands, and its Python client with requests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_server import TOKEN, Served, serve, wait_run
from conftest import DemoBase, guarded_env

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"

AUTH = f"Authorization: Bearer {TOKEN}"

# The reference's "Usage Examples", each with the token header added (and the port).
CURL_EXAMPLES = [
    # Trigger cleanup with defaults
    ["curl", "-X", "POST", "http://localhost:5000/api/cleanup"],
    # Dry run to preview
    [
        "curl",
        "-X",
        "POST",
        "http://localhost:5000/api/cleanup",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{"dry_run": true}',
    ],
    # Custom retention periods
    [
        "curl",
        "-X",
        "POST",
        "http://localhost:5000/api/cleanup",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{\n"success_retention_hours": 72,\n"failed_retention_hours": 6\n}',
    ],
]

# The reference's "Python Client Example", word for word but for the added header.
PYTHON_EXAMPLE = textwrap.dedent(
    '''
    import requests
    from datetime import datetime, timedelta

    def cleanup_old_jobs(base_url="http://localhost:5000", dry_run=True):
        """Trigger job cleanup via API"""
        response = requests.post(
            f"{base_url}/api/cleanup",
            headers={"Authorization": "Bearer " + os.environ["EEMT_CLEANUP_API_TOKEN"]},
            json={
                "dry_run": dry_run,
                "success_retention_hours": 168,  # 7 days
                "failed_retention_hours": 12     # 12 hours
            }
        )

        if response.status_code == 200:
            result = response.json()
            print(f"Cleanup {'preview' if dry_run else 'completed'}:")
            print(f"  Successful jobs cleaned: {result['cleaned_jobs']['successful']}")
            print(f"  Failed jobs cleaned: {result['cleaned_jobs']['failed']}")
            print(f"  Space freed: {result['space_freed']['human_readable']}")
        else:
            print(f"Cleanup failed: {response.text}")

    # Preview cleanup
    cleanup_old_jobs(dry_run=True)

    # Execute cleanup
    cleanup_old_jobs(dry_run=False)
    '''
)


@pytest.fixture
def served(tmp_path: Path, demo_base: DemoBase) -> Any:
    with serve(tmp_path, demo_base) as server:
        yield server


def on_port(text: str, served: Served) -> str:
    return text.replace("http://localhost:5000", served.url)


def curl(served: Served, args: list[str]) -> Any:
    command = [on_port(arg, served) for arg in args]
    done = subprocess.run(
        [*command[:4], "-s", "-H", AUTH, *command[4:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_reference_curl_examples_work_with_the_token_header(served: Served) -> None:
    client = served.client()
    defaults, preview, custom = CURL_EXAMPLES

    started = curl(served, defaults)
    # A real run answers 202 with where to follow it.
    assert started["state"] == "running"
    finished = wait_run(client, started["status_url"])
    assert finished["result"]["success"] is True
    assert finished["result"]["cleaned_jobs"] == {"successful": 9, "failed": 2}

    previewed = curl(served, preview)
    assert previewed["dry_run"] is True
    assert previewed["cleaned_jobs"] == {"successful": 0, "failed": 0}  # all done already

    custom_run = curl(served, custom)
    done = wait_run(client, custom_run["status_url"])
    # 72 hours: the job completed 3 days ago is due now; 6 hours: the failed job of 6
    # hours ago is too.
    assert done["result"]["cleaned_jobs"] == {"successful": 1, "failed": 1}


def run_python(served: Served, tmp_path: Path, source: str) -> str:
    script = tmp_path / "client.py"
    script.write_text("import os\n" + on_port(source, served))
    done = subprocess.run(
        [sys.executable, str(script)],
        env=guarded_env(tmp_path, EEMT_CLEANUP_API_TOKEN=TOKEN),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_reference_python_client_previews_then_starts_the_run(
    served: Served, tmp_path: Path
) -> None:
    pytest.importorskip("requests")
    preview = httpx.post(
        f"{served.url}/api/cleanup",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"dry_run": True},
        timeout=120,
    ).json()

    out = run_python(served, tmp_path, PYTHON_EXAMPLE).splitlines()

    assert out[:4] == [
        "Cleanup preview:",
        "  Successful jobs cleaned: 9",
        "  Failed jobs cleaned: 2",
        f"  Space freed: {preview['space_freed']['human_readable']}",
    ]
    # The real run answers 202 (it runs on; its result is at its status URL), which the
    # example, written for a synchronous answer, prints as its "failed" branch.
    (started,) = out[4:]
    assert started.startswith("Cleanup failed: ")
    accepted = json.loads(started.removeprefix("Cleanup failed: "))
    status = wait_run(served.client(), accepted["status_url"])
    assert status["state"] == "finished"
    assert status["result"]["cleaned_jobs"] == {"successful": 9, "failed": 2}


def readme_python_client() -> str:
    """The Python client of README.md's "HTTP API" section."""
    text = README.read_text()
    section = text[text.index("## HTTP API") :]
    section = section[: section.index("\n## ", 1)]
    start = section.index("```python\nimport os")
    return section[start + len("```python\n") : section.index("```", start + 3)]


def test_the_readme_python_client_with_wait_true_prints_the_completed_run(
    served: Served, tmp_path: Path
) -> None:
    pytest.importorskip("requests")
    source = readme_python_client()
    assert 'f"{base_url}/api/cleanup?wait=true"' in source

    out = run_python(served, tmp_path, source).splitlines()

    assert out[0] == "Cleanup preview:"
    assert out[4:8] == [
        "Cleanup completed:",
        "  Successful jobs cleaned: 9",
        "  Failed jobs cleaned: 2",
        out[3],  # freed what the preview said
    ]
