"""Open the web interface's SQLite database safely and read jobs from it.

The web interface opens the same file with Python's default ``sqlite3.connect`` while we
run, so every connection has a busy timeout, reads hold no cursor open across writes
(keyset pagination), and every write is one short ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from eemt_cleanup.config.schema import Jobs
from eemt_cleanup.errors import DatabaseError

BUSY_TIMEOUT_SECONDS = 30.0
CLEANED_COLUMN = "data_cleaned_at"
SIZE_COLUMN = "data_size_mb"
REQUIRED = ("id", "status", "created_at", "started_at", "completed_at", "dem_filename")


def _decode_text(raw: bytes) -> str:
    # Hostile rows may hold text that is not UTF-8: keep it loss-free instead of failing the
    # whole query; names that are not valid UTF-8 are refused later by the path rules.
    return raw.decode("utf-8", "surrogateescape")


class _SqlTrace:
    """Whether connections log every statement: switched on by the CLI for ``--debug``
    (or ``EEMT_CLEANUP_LOG_LEVEL=DEBUG``) only, never by a host's logging level."""

    enabled = False


TRACE_SQL = _SqlTrace()
_sql_log = logging.getLogger("eemt_cleanup.sql")


def _trace(statement: str) -> None:
    from eemt_cleanup.report.escape import printable

    _sql_log.debug("SQL: %s", printable(statement))


def connect(
    path: Path, *, readonly: bool, timeout: float = BUSY_TIMEOUT_SECONDS
) -> sqlite3.Connection:
    """Open ``path`` (which must exist) with a busy timeout, in autocommit mode.

    A read-only connection (used by dry runs) cannot write even by mistake.
    Raises DatabaseError when the file is missing or is not an SQLite database.
    """
    check_database_path(path)
    uri = f"{path.as_uri()}?mode={'ro' if readonly else 'rw'}"
    try:
        conn = sqlite3.connect(
            uri,
            uri=True,
            timeout=timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.text_factory = _decode_text
        if TRACE_SQL.enabled:
            # --debug: every statement executed, with its values, escaped here (a host's
            # own handlers may not escape them).
            conn.set_trace_callback(_trace)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as error:
        raise DatabaseError(
            f"{path}: not a usable SQLite database ({error}){_planted_hint(path)}"
        ) from None
    return conn


def _planted_hint(path: Path) -> str:
    """SQLite never opens its journal files through a symlink; say so when one is there."""
    for suffix in ("-journal", "-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.is_symlink():
            return f"; {side} is a symbolic link, which SQLite refuses to use: remove it"
    return ""


def check_database_path(path: Path) -> None:
    """Raise DatabaseError unless ``path`` exists and is a regular file (followed)."""
    if not path.exists():
        raise DatabaseError(
            f"database not found: {path} (set paths.database, EEMT_DB_PATH or --db-path)"
        )
    if not path.is_file():
        raise DatabaseError(f"database path is not a file: {path}")


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One short write transaction: BEGIN IMMEDIATE (takes the write lock up front, so the
    busy timeout applies and no read-to-write upgrade can deadlock), COMMIT or ROLLBACK."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        # COMMIT can fail too (a reader outlasting the busy timeout): never leave the
        # transaction, and its write lock, open behind us.
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    """Column names of ``table`` in order (empty when the table does not exist)."""
    return [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]


def table_names(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    return [row[0] for row in rows]


ROWID_ALIASES = ("rowid", "_rowid_", "oid")


def check_jobs_table(conn: sqlite3.Connection, jobs: Jobs, path: Path) -> list[str]:
    """Verify the jobs table and its required columns; return its column names.

    Only a plain table with a rowid will do: we append columns to it, index it, and page
    through it by rowid. A view, a virtual table or a ``WITHOUT ROWID`` table is refused
    here, before anything is altered (rather than read as "0 jobs"). Raises DatabaseError
    saying precisely what is wrong.
    """
    _check_plain_table(conn, jobs.table, path)
    columns = table_columns(conn, jobs.table)
    if not columns:
        found = ", ".join(name for name in table_names(conn) if not name.startswith("sqlite_"))
        raise DatabaseError(
            f"{path}: no table {jobs.table!r} (tables: {found or 'none'}); is "
            f"this the EEMT web interface's database? (jobs.table)"
        )
    mapping = jobs.columns.model_dump()
    missing = [
        f"{mapping[name]}" + ("" if mapping[name] == name else f" (jobs.columns.{name})")
        for name in REQUIRED
        if mapping[name] not in columns
    ]
    if missing:
        raise DatabaseError(
            f"{path}: table {jobs.table!r} lacks required column"
            f"{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
        )
    return columns


def _check_plain_table(conn: sqlite3.Connection, table: str, path: Path) -> None:
    found = conn.execute(
        "SELECT type, sql FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name = ? COLLATE NOCASE",
        (table,),
    ).fetchone()
    if found is None:
        return  # check_jobs_table says what is missing
    kind, sql = found
    hint = "point jobs.table at a plain table"
    if kind == "view":
        raise DatabaseError(
            f"{path}: {table!r} is a view, not a table: its rows cannot be marked cleaned; {hint}"
        )
    text = " ".join((sql or "").split()).upper()
    if text.startswith("CREATE VIRTUAL TABLE"):
        raise DatabaseError(f"{path}: {table!r} is a virtual table; {hint}")
    if _without_rowid(conn, table, text):
        raise DatabaseError(
            f"{path}: {table!r} is a WITHOUT ROWID table, which eemt-cleanup cannot page "
            f"through; {hint}"
        )


def _without_rowid(conn: sqlite3.Connection, table: str, sql: str) -> bool:
    try:
        rows = conn.execute("PRAGMA table_list").fetchall()  # SQLite 3.37+
    except sqlite3.DatabaseError:
        return sql.rstrip(" ;").endswith("WITHOUT ROWID") or ") WITHOUT ROWID" in sql
    for _schema, name, _kind, _columns, without_rowid, *_rest in rows:
        if str(name).lower() == table.lower():
            return bool(without_rowid)
    return False


def rowid_alias(columns: Sequence[str], table: str, path: Path) -> str:
    """A name that reaches the table's rowid: ``rowid`` unless a column has that name."""
    taken = {column.lower() for column in columns}
    for alias in ROWID_ALIASES:
        if alias not in taken:
            return alias
    raise DatabaseError(
        f"{path}: table {table!r} has columns named rowid, _rowid_ and oid, which hide its "
        "rowid; point jobs.table at another table"
    )


class JobRow(NamedTuple):
    """One job as read from the table. ``job_id`` is the raw stored value (any type).

    A named tuple: planning builds one per not-yet-cleaned row, and a tuple is built three
    times faster than a frozen dataclass."""

    rowid: int
    job_id: Any
    status: Any
    created_at: Any
    started_at: Any
    completed_at: Any
    dem_filename: Any
    data_cleaned_at: Any = None


class JobStore:
    """Reads of the jobs table, with the configured table and column names."""

    def __init__(self, conn: sqlite3.Connection, path: Path, jobs: Jobs) -> None:
        self.conn = conn
        self.path = path
        self.jobs = jobs
        self.columns = check_jobs_table(conn, jobs, path)
        self.has_cleaned_column = CLEANED_COLUMN in self.columns
        names = jobs.columns
        cleaned = CLEANED_COLUMN if self.has_cleaned_column else "NULL"
        self.rowid = rowid_alias(self.columns, jobs.table, path)
        self._select = (
            f'SELECT {self.rowid}, "{names.id}", "{names.status}", "{names.created_at}", '
            f'"{names.started_at}", "{names.completed_at}", "{names.dem_filename}", '
            f'{cleaned} FROM "{jobs.table}"'
        )
        self._not_cleaned = f"{CLEANED_COLUMN} IS NULL" if self.has_cleaned_column else "1"
        self._local = threading.local()
        self._reader_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []

    def _rows(self, conn: sqlite3.Connection, where: str, params: Sequence[Any]) -> list[JobRow]:
        """The matching rows. Text is decoded by SQLite's own UTF-8 decoder first (planning
        decodes every text column of every not-yet-cleaned row, and the Python text factory
        costs a call per value); a page holding text that is not UTF-8 fails that decoder and
        is read again with the loss-free one. Each connection belongs to one thread, so
        switching its text factory here races with nothing."""
        sql = f"{self._select} WHERE {where}"
        conn.text_factory = str
        try:
            return [JobRow(*row) for row in conn.execute(sql, params)]
        except sqlite3.OperationalError:  # "Could not decode to UTF-8 column ..."
            conn.text_factory = _decode_text
            return [JobRow(*row) for row in conn.execute(sql, params)]
        finally:
            conn.text_factory = _decode_text

    def iter_unclean(self, statuses: Sequence[str], page_size: int = 1000) -> Iterator[JobRow]:
        """Stream jobs not yet cleaned whose status is one of ``statuses``, by status then
        rowid, a page at a time (no cursor stays open between pages)."""
        status = self.jobs.columns.status
        for value in statuses:
            yield from self._pages(f'"{status}" = ?', (value,), page_size)

    def _pages(self, where: str, params: Sequence[Any], page_size: int) -> Iterator[JobRow]:
        """Not-yet-cleaned rows matching ``where``, keyset-paginated on rowid."""
        last = -(2**63)
        while True:
            page = self._rows(
                self.conn,
                f"{where} AND {self._not_cleaned} AND {self.rowid} > ? "
                f"ORDER BY {self.rowid} LIMIT ?",
                (*params, last, page_size),
            )
            yield from page
            if len(page) < page_size:
                return
            last = page[-1].rowid

    def iter_unknown(self, known: Sequence[str], page_size: int = 1000) -> Iterator[JobRow]:
        """Stream not-yet-cleaned jobs whose status is in none of the configured groups.

        The distinct statuses of not-yet-cleaned jobs come from the partial due index (a
        ``NOT IN`` over the table would make SQLite scan every row, cleaned ones included);
        each unknown one is then streamed like a known one.
        """
        status = self.jobs.columns.status
        values = self.conn.execute(
            f'SELECT DISTINCT "{status}" FROM "{self.jobs.table}" WHERE {self._not_cleaned}'
        ).fetchall()
        unknown = [value for (value,) in values if value not in known]
        for value in unknown:
            if value is None:
                yield from self._pages(f'"{status}" IS NULL', (), page_size)
            else:
                yield from self._pages(f'"{status}" = ?', (value,), page_size)

    def count_ids(self, values: Sequence[Any]) -> int:
        """How many rows have one of these id values (read on the calling thread)."""
        marks = ", ".join("?" * len(values))
        table, column = self.jobs.table, self.jobs.columns.id
        sql = f'SELECT count(*) FROM "{table}" WHERE "{column}" IN ({marks})'
        (count,) = self.reader().execute(sql, tuple(values)).fetchone()
        return int(count)

    def by_id(self, job_id: Any) -> list[JobRow]:
        """The row(s) with this id, read on the main connection."""
        return self._rows(self.conn, f'"{self.jobs.columns.id}" = ?', (job_id,))

    def reader(self) -> sqlite3.Connection:
        """A read connection owned by the calling thread (sqlite3 objects are not shared)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._reader_lock:
                self._readers.append(conn)
        return conn

    def reread(self, row: JobRow) -> JobRow | None:
        """Read a job's row again (from the calling thread); None when it is gone."""
        rows = self._rows(self.reader(), f'"{self.jobs.columns.id}" = ?', (row.job_id,))
        return rows[0] if rows else None

    def references(self, dem_filename: Any) -> list[JobRow]:
        """Every job (cleaned or not) whose upload is ``dem_filename``."""
        return self._rows(self.reader(), f'"{self.jobs.columns.dem_filename}" = ?', (dem_filename,))

    def close(self) -> None:
        with self._reader_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
