"""The migration fast path: a migrated database is recognised without sqlite-utils."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import create_jobs_db

from eemt_cleanup.store.migrations import build_migrations, due_index_migration, migration_names


def test_migration_names_match_the_registered_migrations() -> None:
    migrations = build_migrations("jobs")
    due_index_migration(migrations, "jobs", "status", "dem_filename")
    registered = [migration.name for migration in migrations._migrations]
    assert registered == migration_names("status", "dem_filename")


def test_migrated_database_is_recognised_without_importing_sqlite_utils(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"
    create_jobs_db(database, [])
    script = (
        "import sqlite3, sys\n"
        "from eemt_cleanup.store.migrations import migrate\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "migrate(conn, 'jobs', 'status', 'dem_filename')\n"
        "print('sqlite_utils' in sys.modules)\n"
    )
    first = subprocess.run(
        [sys.executable, "-c", script, str(database)], capture_output=True, text=True, check=True
    )
    second = subprocess.run(
        [sys.executable, "-c", script, str(database)], capture_output=True, text=True, check=True
    )
    assert first.stdout.strip() == "True"
    assert second.stdout.strip() == "False"
