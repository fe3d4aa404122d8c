"""The notices decided per channel (``cleanup_notices``): what the rate limit and the
success/failure change rule of :mod:`eemt_cleanup.notify` read, and where each decision is
recorded (append-only, one row per notice per channel; ``kind`` is the notice's primary
kind: ``failure``, ``success``, ``alert`` or ``test``).

Order is the row id (insertion order), never the stored time: a clock that steps back must
not reorder the history. Only notices *sent* count, for the rate limit (per kind) as for
the change rule. Test notices are recorded, but neither count as sent nor end a run of
held-back notices.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from eemt_cleanup.config.schema import Jobs
from eemt_cleanup.store.db import write_transaction
from eemt_cleanup.store.migrations import NOTICES_TABLE, migrate
from eemt_cleanup.store.usage import has_table
from eemt_cleanup.timeparse import format_utc, parse_timestamp

OUTCOME_KINDS = ("success", "failure")
TEST_KIND = "test"


@dataclass(frozen=True)
class NoticeRecord:
    """One row of ``cleanup_notices``."""

    at: datetime
    channel: str
    kind: str
    decision: str
    run_id: str | None = None
    error: str | None = None
    suppressed_before: int = 0


@dataclass(frozen=True)
class ChannelHistory:
    """What one channel's past notices say about the next one."""

    last_outcome: str | None  # kind of the last success/failure notice sent
    sent_at: Mapping[str, datetime]  # per kind (failure, success, alert): its last one sent
    held_back: int  # notices (of any kind) suppressed since the last one sent (of any kind)
    held_back_since: datetime | None  # when the first of them was held back


def ensure_notices_table(conn: sqlite3.Connection, jobs: Jobs) -> None:
    """Apply the migrations when ``cleanup_notices`` is missing (a database no real run has
    reached yet). Raises sqlite3.Error when the database cannot be written."""
    if not has_table(conn, NOTICES_TABLE):
        migrate(conn, jobs.table, jobs.columns.status, jobs.columns.dem_filename)


def channel_history(conn: sqlite3.Connection, channel: str) -> ChannelHistory:
    """Read ``channel``'s history. Raises sqlite3.Error when it cannot be read."""
    # The last notice sent of each kind (tests excluded), newest first.
    sent = conn.execute(
        f"SELECT id, kind, at FROM {NOTICES_TABLE} WHERE id IN (SELECT max(id) "
        f"FROM {NOTICES_TABLE} WHERE channel = ? AND decision = 'sent' AND kind != ? "
        "GROUP BY kind) ORDER BY id DESC",
        (channel, TEST_KIND),
    ).fetchall()
    sent_id = sent[0][0] if sent else 0
    held, first_held = conn.execute(
        f"SELECT count(*), (SELECT at FROM {NOTICES_TABLE} WHERE channel = ? "
        "AND decision = 'suppressed' AND id > ? ORDER BY id LIMIT 1) "
        f"FROM {NOTICES_TABLE} WHERE channel = ? AND decision = 'suppressed' AND id > ?",
        (channel, sent_id, channel, sent_id),
    ).fetchone()
    sent_at = {str(kind): parse_timestamp(at) for _, kind, at in sent}
    outcomes = [str(kind) for _, kind, _ in sent if kind in OUTCOME_KINDS]
    return ChannelHistory(
        last_outcome=outcomes[0] if outcomes else None,
        sent_at={kind: at for kind, at in sent_at.items() if at is not None},
        held_back=int(held),
        held_back_since=parse_timestamp(first_held) if first_held else None,
    )


def record_notice(conn: sqlite3.Connection, record: NoticeRecord) -> None:
    """Append ``record`` in its own short transaction. Raises sqlite3.Error."""
    with write_transaction(conn):
        insert_notice(conn, record)


def insert_notice(conn: sqlite3.Connection, record: NoticeRecord) -> None:
    """Append ``record`` inside the caller's transaction. Raises sqlite3.Error."""
    conn.execute(
        f"INSERT INTO {NOTICES_TABLE} (at, channel, kind, decision, run_id, error, "
        "suppressed_before) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            format_utc(record.at),
            record.channel,
            record.kind,
            record.decision,
            record.run_id,
            record.error,
            record.suppressed_before,
        ),
    )


def recent_notices(
    conn: sqlite3.Connection, channel: str | None = None, limit: int = 100
) -> list[NoticeRecord]:
    """The newest ``limit`` decisions (of ``channel``, or of every channel), oldest first;
    empty before the table exists."""
    if not has_table(conn, NOTICES_TABLE):
        return []
    where, params = ("WHERE channel = ?", (channel,)) if channel else ("", ())
    rows = conn.execute(
        f"SELECT at, channel, kind, decision, run_id, error, suppressed_before "
        f"FROM {NOTICES_TABLE} {where} ORDER BY id DESC LIMIT ?",
        (*params, limit),
    ).fetchall()
    records = []
    for at, name, kind, decision, run_id, error, suppressed in reversed(rows):
        moment = parse_timestamp(at)
        if moment is not None:
            records.append(
                NoticeRecord(moment, name, kind, decision, run_id, error, int(suppressed or 0))
            )
    return records


__all__ = [
    "ChannelHistory",
    "NoticeRecord",
    "channel_history",
    "ensure_notices_table",
    "insert_notice",
    "recent_notices",
    "record_notice",
]
