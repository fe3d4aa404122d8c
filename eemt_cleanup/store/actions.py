"""The audit's vocabulary: the actions a run writes in ``cleanup_audit``, and finding the
job an operator means by the first characters of its id.

Light to import (the command line builds its help from :class:`AuditAction`): the store's
modules are imported only when a query runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

# How many of the jobs an ambiguous prefix matches are named in the message.
EXAMPLES = 3


class AuditAction(StrEnum):
    """Every ``action`` the engine writes: one row per path acted on, kept or refused."""

    DELETED_RESULTS = "deleted_results"
    DELETED_ARCHIVE = "deleted_archive"
    DELETED_TEMP = "deleted_temp"
    DELETED_UPLOAD = "deleted_upload"
    KEPT_UPLOAD = "kept_upload"
    KEPT_LOGS = "kept_logs"
    REFUSED = "refused"
    ERROR = "error"
    NO_DATA = "no_data"


def parse_action(text: str) -> AuditAction | None:
    """The action named ``text`` exactly (actions are lower case), or None."""
    try:
        return AuditAction(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class JobMatch:
    """The audited jobs whose id is, or starts with, what was given."""

    count: int
    examples: tuple[object, ...]  # the first EXAMPLES ids, sorted
    exact: bool = False

    @property
    def job_id(self) -> object | None:
        """The one job meant, or None when none or several match."""
        return self.examples[0] if self.count == 1 else None


def match_audited_job(conn: sqlite3.Connection, prefix: str) -> JobMatch:
    """The jobs of ``cleanup_audit`` whose id is ``prefix`` (that one alone) or starts with
    it. Compared as text and case-sensitively with ``substr``, so ``%`` and ``_`` in
    ``prefix`` are plain characters. No table yet, or a prefix no stored text can hold (a
    lone surrogate from an undecodable argument), matches nothing."""
    from eemt_cleanup.store.migrations import AUDIT_TABLE

    if not _has_audit(conn, AUDIT_TABLE) or not _storable(prefix):
        return JobMatch(0, ())
    if conn.execute(f"SELECT 1 FROM {AUDIT_TABLE} WHERE job_id = ? LIMIT 1", (prefix,)).fetchone():
        return JobMatch(1, (prefix,), exact=True)
    where = "substr(CAST(job_id AS TEXT), 1, ?) = ?"
    params = (len(prefix), prefix)
    (count,) = conn.execute(
        f"SELECT count(DISTINCT job_id) FROM {AUDIT_TABLE} WHERE {where}", params
    ).fetchone()
    examples = conn.execute(
        f"SELECT DISTINCT job_id FROM {AUDIT_TABLE} WHERE {where} ORDER BY job_id LIMIT ?",
        (*params, EXAMPLES),
    ).fetchall()
    return JobMatch(int(count), tuple(row[0] for row in examples))


def _has_audit(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


__all__ = ["EXAMPLES", "AuditAction", "JobMatch", "match_audited_job", "parse_action"]
