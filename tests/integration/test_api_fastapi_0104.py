"""The router under FastAPI 0.104.1, the version the EEMT web interface pins (the rest of
the suite runs the current release): FastAPI 0.104.1 and its Starlette are installed with
``pip install --target`` into a cache kept in the virtual environment, and a child process
mounts the router into an app of its own routes there and serves it with uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_server import RUN_TIMEOUT, TOKEN, bearer, healthy, wait_run
from conftest import DemoBase, guarded_env
from servers import free_port, wait_for

PINNED = ("fastapi==0.104.1", "starlette==0.27.0")
CACHE = Path(sys.prefix) / "eemt-test-cache" / "fastapi-0.104.1"
UNREACHABLE = (
    "Could not find a version",
    "No matching distribution",
    "Network is unreachable",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
)

APP = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    import fastapi, starlette, uvicorn
    assert fastapi.__version__ == "0.104.1", fastapi.__version__
    assert starlette.__version__ == "0.27.0", starlette.__version__
    from fastapi import FastAPI
    from eemt_cleanup.http import create_router

    app = FastAPI(title="EEMT web interface")

    @app.get("/api/jobs")
    def jobs():
        return {"jobs": [], "fastapi": fastapi.__version__}

    base = sys.argv[3]
    app.include_router(
        create_router(
            base + "/cleanup_config.yaml",
            tokens={"web": sys.argv[4]},
            db_path=base + "/jobs.db",
            uploads_dir=base + "/uploads",
            results_dir=base + "/results",
            temp_dir=base + "/temp",
        )
    )
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    """
)


@pytest.fixture(scope="module")
def fastapi_0104(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding FastAPI 0.104.1 and Starlette 0.27.0 (installed once, then
    reused from the cache)."""
    if (CACHE / "fastapi" / "__init__.py").exists():
        return CACHE
    work = tmp_path_factory.mktemp("pip")
    target = work / "target"
    env = {key: value for key, value in os.environ.items() if not key.startswith("EEMT_")}
    env["TMPDIR"] = str(work)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-cache-dir",
            "--target",
            str(target),
            *PINNED,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        if any(words in done.stderr for words in UNREACHABLE):
            pytest.skip(f"pip cannot reach the package registry for {', '.join(PINNED)}")
        pytest.fail(f"pip install {' '.join(PINNED)} failed:\n{done.stderr}")
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.rename(CACHE)
    except OSError:  # another run filled the cache meanwhile
        return target if not (CACHE / "fastapi").exists() else CACHE
    return CACHE


@pytest.fixture
def served_0104(tmp_path: Path, demo_base: DemoBase, fastapi_0104: Path) -> Any:
    (demo_base.path / "cleanup_config.yaml").write_text("")
    script = tmp_path / "web_interface.py"
    script.write_text(APP)
    port = free_port()
    err = tmp_path / "app.err"
    with err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(script), str(fastapi_0104), str(port), str(demo_base.path), TOKEN],
            env=guarded_env(tmp_path),
            cwd="/",
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for(lambda: healthy(url, process), timeout=RUN_TIMEOUT)
        except AssertionError:
            raise AssertionError(err.read_text()) from None
        yield url
    finally:
        process.terminate()
        process.wait(timeout=RUN_TIMEOUT)


def test_the_router_mounted_under_fastapi_0104_serves_the_whole_api(served_0104: str) -> None:
    with httpx.Client(base_url=served_0104, headers=bearer(), timeout=RUN_TIMEOUT) as client:
        own = client.get("/api/jobs")
        assert own.json() == {"jobs": [], "fastapi": "0.104.1"}
        assert httpx.post(f"{served_0104}/api/cleanup", timeout=30).status_code == 401
        assert client.post("/api/cleanup", headers=bearer("x" * 20)).status_code == 403

        preview = client.post("/api/cleanup", json={"dry_run": True})
        assert preview.status_code == 200, preview.text
        assert preview.json()["cleaned_jobs"] == {"successful": 9, "failed": 2}

        bad = client.post("/api/cleanup", params={"success_retention_days": "-1"})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["query", "success_retention_days"]
        bad_body = client.post("/api/cleanup", json={"failed_retention_hours": -1})
        assert bad_body.json()["detail"][0]["loc"] == ["body", "failed_retention_hours"]

        started = client.post("/api/cleanup")
        assert started.status_code == 202, started.text
        done = wait_run(client, started.headers["location"])
        assert done["state"] == "finished"
        assert done["result"]["cleaned_jobs"] == {"successful": 9, "failed": 2}
        assert done["user"] == "api:web@127.0.0.1"

        for path in ("/api/cleanup/runs", "/api/cleanup/status", "/api/cleanup/audit", "/metrics"):
            assert client.get(path).status_code == 200, path
        document = client.get("/openapi.json").json()
    assert {"/api/jobs", "/api/cleanup", "/healthz"} <= set(document["paths"])
    assert "JobDetailJson" in document["components"]["schemas"]
