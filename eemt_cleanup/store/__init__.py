"""SQLite: the jobs adapter, migrations, audit rows and the run log."""
