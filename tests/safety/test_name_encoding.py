"""Non-ASCII names under a locale that is not UTF-8 (issue #8 item 10, SPEC §7).

Under ``LC_ALL=C PYTHONUTF8=0`` Python's filesystem encoding is ASCII: a name from the
database such as ``Mätterhorn.tif`` cannot be encoded by ``os.stat``/``os.unlink`` the
default way. The web interface wrote its files with UTF-8 names, so names from the database
are encoded with UTF-8 whatever the locale, and names read from directories are used as the
OS gives them (even bytes that are not UTF-8). End to end through the installed CLI, with
``--json`` (ASCII) for the judgement, and the config file's two workers, so big trees and
their non-ASCII subdirectories travel to the deletion worker processes as task paths.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from conftest import CliResult, cli_executable, guarded_env

from .conftest import Harness, Job, mounted, write

pytestmark = pytest.mark.e2e

NOT_UTF8_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}
ENVIRONMENTS = {
    "c-locale": NOT_UTF8_LOCALE,
    "c-locale-latin-1-streams": {**NOT_UTF8_LOCALE, "PYTHONIOENCODING": "latin-1"},
}
UPLOAD_NAME = "{job_id}_Mätterhorn_Zürich_日本.tif"
# Inner names as the web interface's workflows write them, and one that is not UTF-8 at all.
INNER_FILES = ("Ergebnisse_ä.tif", "Ausgabe_é/月_01.tif", "Ausgabe_é/ß.log", "Ωmega/σ/ü.dat")
NOT_UTF8_NAME = b"raw-\xff\xfe"


def environment(harness: Harness, extra: dict[str, str]) -> dict[str, str]:
    env = guarded_env(harness.tmp, **extra)
    for key in ("LANGUAGE", "LC_CTYPE", "LC_MESSAGES"):
        env.pop(key, None)
    return env


def run_cli(harness: Harness, env: dict[str, str]) -> CliResult:
    """``eemt-cleanup run --json`` on the harness's base. Its stdout must be ASCII (JSON's
    own escaping); stderr is in the streams' encoding, here perhaps latin-1."""
    done = subprocess.run(
        [cli_executable(), "run", "--json", "--config", str(harness.config_file)],
        cwd="/",
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    stdout = done.stdout.decode("ascii")
    return CliResult(done.returncode, stdout, done.stderr.decode("utf-8", "backslashreplace"))


def filesystem_encoding(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def non_ascii_job(harness: Harness, job_id: str) -> Job:
    """A due job whose upload and inner files have non-ASCII names, with enough entries
    that its results tree is split over the deletion workers."""
    job = Job(job_id, UPLOAD_NAME.format(job_id=job_id))
    harness.make_data(job)
    results = job.results(harness.base)
    for name in INNER_FILES:
        write(results / name, 3_000, b"i")
    for number in range(300):
        write(results / "Ausgabe_é" / f"Kachel_{number:03d}_ä.tif", 100)
    raw = os.fsencode(results) + b"/" + NOT_UTF8_NAME
    os.mkdir(raw)
    with open(raw + b"/" + NOT_UTF8_NAME + b".bin", "wb") as handle:
        handle.write(b"r" * 500)
    write(harness.temp / job_id / "Zwischenstand_ö.tmp", 2_000, b"t")
    harness.add_row(job_id, job.upload)
    return job


@pytest.mark.parametrize("setting", list(ENVIRONMENTS))
def test_cli_under_a_locale_that_is_not_utf8_deletes_non_ascii_names_and_marks_the_jobs(
    harness: Harness, setting: str
) -> None:
    env = environment(harness, ENVIRONMENTS[setting])
    assert filesystem_encoding(env) == "ascii", "the locale did not make names ASCII-only"
    jobs = [non_ascii_job(harness, "victim-1"), non_ascii_job(harness, "jöb-ü-2")]
    harness.arm()

    result = run_cli(harness, env)

    assert result.code == 0, result.stdout + result.stderr
    data = result.json()
    assert data["success"] is True
    details = {detail["job_id"]: detail for detail in data["details"]}
    for job in jobs:
        assert details[job.job_id]["errors"] == [], details[job.job_id]
        assert f"uploads/{job.upload}" in details[job.job_id]["paths"]
        for path in job.artifacts(harness.base):
            assert not os.path.lexists(path), path
    assert {job.job_id for job in jobs} <= harness.marked()
    harness.assert_safe(result, gone=jobs)


def test_cli_under_a_locale_that_is_not_utf8_keeps_a_non_ascii_upload_still_referenced(
    harness: Harness,
) -> None:
    # The name still reaches the reference check and the report intact: the retained job's
    # upload, shared with a due job, stays.
    env = environment(harness, NOT_UTF8_LOCALE)
    shared = UPLOAD_NAME.format(job_id="shared")
    write(harness.uploads / shared, 4_000, b"s")
    harness.add_row("due-sharing", shared)
    harness.add_row("retained-sharing", shared, age=timedelta(hours=1))
    due = Job("due-sharing", shared)
    harness.arm()

    result = run_cli(harness, env)

    assert result.code == 0, result.stdout + result.stderr
    assert (harness.uploads / shared).read_bytes() == b"s" * 4_000
    details = {detail["job_id"]: detail for detail in result.json()["details"]}
    assert details[due.job_id]["errors"] == []
    assert f"uploads/{shared}" in details[due.job_id]["kept"]
    harness.assert_safe(result)


def test_cli_under_a_locale_that_is_not_utf8_reports_inner_names_as_utf8_text(
    harness: Harness,
) -> None:
    # An inner entry is reported (here a mount point, not crossed) with its name decoded
    # as UTF-8, as the web interface wrote it, not as undecodable bytes of the locale.
    env = environment(harness, NOT_UTF8_LOCALE)
    job = non_ascii_job(harness, "victim-1")
    point = job.results(harness.base) / "Ausgabe_é" / "Einhängepunkt_ü"
    point.mkdir()
    with mounted(["-t", "tmpfs", "-o", "size=1m", "none"], point):
        harness.arm()

        result = run_cli(harness, env)

        assert result.code == 1, result.stdout + result.stderr
        details = {detail["job_id"]: detail for detail in result.json()["details"]}
        assert details[job.job_id]["errors"] == [
            f"results/{job.job_id}/Ausgabe_é/Einhängepunkt_ü/: a mount point: not crossed"
        ]
        assert job.job_id not in harness.marked()
        harness.assert_safe(result, changing=[job])
