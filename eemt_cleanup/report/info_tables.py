"""What ``status``, ``history``, ``audit`` and ``config show`` show people.

Each table is described once, as an :class:`InfoTable` (a title, typed columns, rows of
text), and shown one of three ways:

- off a terminal: tab-separated lines, a header line first, one row a line (every value
  escaped, so a tab or newline inside one cannot split it);
- on a terminal wide enough to show every id whole on one line: a horizontal Rich table;
- else one block of ``Key  value`` lines per record, so a 36-character job or run id is
  never cut, folded or replaced by "…" at 80 columns.

The choice is made per table from the console's width. Values are text for people: one
date style (:func:`eemt_cleanup.report.dates.moment`), human sizes, "1 job"/"2 jobs".
JSON is not made here: the commands print their rows as they are.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, TextIO

from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.models import job_word
from eemt_cleanup.report.dates import moment, moment_and_relative
from eemt_cleanup.report.escape import printable

if TYPE_CHECKING:
    from rich.console import Console

    from eemt_cleanup.lock import Holder

# Free text wraps at its spaces; a word longer than its column folds. This is the least a
# free-text column is given before a table is laid out vertically instead.
TEXT_MIN_WIDTH = 12
# Rich's default table: one space of padding either side of a cell, a border between and
# around the columns.
CELL_PADDING = 2
# Between a key and its value in the vertical layout.
KEY_GAP = 2
MISSING = "-"


class Kind(Enum):
    """How a column's values may be laid out."""

    ID = "id"  # a job or run id: whole, on one line
    FIXED = "fixed"  # a date, a size, an action, a key: on one line
    NUMBER = "number"  # on one line, right-aligned
    TEXT = "text"  # free text: wraps at spaces, a long word folds


@dataclass(frozen=True)
class Column:
    header: str
    kind: Kind = Kind.TEXT

    @property
    def one_line(self) -> bool:
        return self.kind is not Kind.TEXT


class Whole(str):
    """A value in a free-text column whose every word must stay whole on one line (a list
    of ids): the column is never laid out narrower than its longest word."""

    __slots__ = ()


@dataclass
class InfoTable:
    """A table for people: rows of unescaped text, one value per column."""

    title: str
    columns: list[Column]
    rows: list[list[str]] = field(default_factory=list)
    empty: str = ""  # said on a terminal instead of a table without rows
    continues: bool = False  # off a terminal, its rows follow the previous table's rows


# --------------------------------------------------------------------------- words


def _text(value: object) -> str:
    return MISSING if value is None or value == "" else str(value)


def _size(value: object) -> str:
    """A byte count from a row as people read it; a value that is not one, as it is."""
    if isinstance(value, bool) or value is None:
        return MISSING if value is None else str(value)
    if isinstance(value, int | float):
        return human_size(int(value))
    return str(value)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --------------------------------------------------------------------------- status

STATUS_COLUMNS = [
    Column("Status", Kind.FIXED),
    Column("Jobs", Kind.NUMBER),
    Column("Disk Used", Kind.NUMBER),
    Column("Due Now", Kind.NUMBER),
    Column("Due Size", Kind.NUMBER),
]


def status_table(groups: Iterable[Any], measured: bool) -> InfoTable:
    """Per status of not-yet-cleaned jobs: how many, their disk use, what is due now (sizes
    ``-`` when not ``measured``)."""

    def size(value: int) -> str:
        return human_size(value) if measured else MISSING

    return InfoTable(
        "Jobs Not Yet Cleaned",
        STATUS_COLUMNS,
        [
            [
                str(group.status),
                str(group.jobs),
                size(group.bytes_used),
                str(group.due_now),
                size(group.due_bytes),
            ]
            for group in groups
        ],
        empty="No job data left to clean.",
    )


def status_lines(inventory: Any) -> list[str]:
    """The lines under the status table: what is due, what comes next, the runs."""
    size = human_size(inventory.due_bytes) if inventory.measured else MISSING
    # On a terminal these lines wrap at spaces: an id is a word, never split; a date near
    # the start of its line stays whole too.
    if inventory.next_due_at is not None:
        next_due = (
            f"{moment_and_relative(inventory.next_due_at)}, job {_text(inventory.next_due_job)}"
        )
    else:
        next_due = "none"
    lines = [
        f"Due now: {job_word(inventory.due_now, 'job')}, {size}",
        f"Next job becomes due: {next_due}",
    ]
    running = inventory.running
    if running is not None:
        lines.append(f"Run in progress: {describe_holder(running)}")
    lines.append("Last run: " + describe_last_run(inventory.last_run, running))
    lines.extend(f"Attention: {problem}" for problem in inventory.problems)
    lines.extend(f"Note: {note}" for note in inventory.notes)
    return lines


def describe_holder(holder: Holder) -> str:
    """The run holding the lock in words, its start time in the one date style."""
    if holder.started_at:
        holder = dataclasses.replace(holder, started_at=moment(holder.started_at))
    return holder.describe()


def describe_last_run(last: dict[str, Any] | None, running: Any) -> str:
    """The latest run-log row in words (no Python None: a row without an exit code is the
    run in progress, or one that was killed)."""
    if not last:
        return "never"
    started = moment(last.get("started_at")) if last.get("started_at") else "?"
    successful, failed = _count(last.get("jobs_successful")), _count(last.get("jobs_failed"))
    counts = (
        f"{job_word(successful + failed, 'job')} cleaned ({successful} successful, {failed} "
        f"failed), {job_word(_count(last.get('files_deleted')), 'file')}, "
        f"{_size(last.get('bytes_freed') or 0)} freed"
    )
    run = f"{_text(last.get('run_id'))}, started {started}"
    if last.get("exit_code") is not None:
        finished = f", finished {moment(last['finished_at'])}" if last.get("finished_at") else ""
        return f"{run}{finished}, exit {last['exit_code']}: {counts}"
    if running is not None and running.run_id == last.get("run_id"):
        return f"{run}, still running: {counts} so far"
    return f"{run}, did not finish (killed, or still running elsewhere): {counts}"


# --------------------------------------------------------------------------- history

HISTORY_COLUMNS = [
    Column("Run", Kind.ID),
    Column("Started", Kind.FIXED),
    Column("Finished", Kind.FIXED),
    Column("Trigger"),
    Column("User"),
    Column("Dry Run"),
    Column("Successful Jobs", Kind.NUMBER),
    Column("Failed Jobs", Kind.NUMBER),
    Column("Files", Kind.NUMBER),
    Column("Freed", Kind.NUMBER),
    Column("Errors", Kind.NUMBER),
    Column("Exit", Kind.NUMBER),
]


def _dry_run(row: dict[str, Any]) -> str:
    if not row.get("dry_run"):
        return "no"
    forced = row.get("dry_run_forced_by")
    return f"yes, forced by {forced}" if forced else "yes"


def history_table(rows: Sequence[dict[str, Any]]) -> InfoTable:
    """Runs from the run log, newest first. A run without an exit code is still running,
    or was killed: its Finished and Exit are ``-``."""
    return InfoTable(
        "Runs",
        HISTORY_COLUMNS,
        [
            [
                _text(row.get("run_id")),
                moment(row.get("started_at")),
                moment(row.get("finished_at")),
                _text(row.get("trigger")),
                _text(row.get("user")),
                _dry_run(row),
                _text(row.get("jobs_successful")),
                _text(row.get("jobs_failed")),
                _text(row.get("files_deleted")),
                _size(row.get("bytes_freed")),
                _text(row.get("errors")),
                _text(row.get("exit_code")),
            ]
            for row in rows
        ],
        empty="No runs recorded yet.",
    )


# --------------------------------------------------------------------------- audit

AUDIT_COLUMNS = [
    Column("Time", Kind.FIXED),
    Column("Job", Kind.ID),
    Column("Action", Kind.FIXED),
    Column("Path"),
    Column("Freed", Kind.NUMBER),
    Column("Files", Kind.NUMBER),
    Column("User"),
    Column("Run", Kind.ID),
    Column("Error"),
]


def audit_table(rows: Sequence[dict[str, Any]]) -> InfoTable:
    """Audit rows, newest first: one per path deleted, kept or refused."""
    return InfoTable(
        "Audit",
        AUDIT_COLUMNS,
        [
            [
                moment(row.get("timestamp")),
                _text(row.get("job_id")),
                _text(row.get("action")),
                _text(row.get("path")),
                _size(row.get("bytes_freed")),
                _text(row.get("files_deleted")),
                _text(row.get("user")),
                _text(row.get("run_id")),
                _text(row.get("error")),
            ]
            for row in rows
        ],
        empty="No audit rows match.",
    )


# --------------------------------------------------------------------------- config show

CONFIG_COLUMNS = [Column("Key", Kind.FIXED), Column("Value"), Column("Source")]


def config_value(value: object) -> str:
    """A configuration value as text: strings as they are, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def config_tables(
    settings: Sequence[dict[str, Any]],
    run_options: Sequence[dict[str, Any]],
    *,
    config_file: object = None,
    ids: Collection[str] = (),
) -> list[InfoTable]:
    """The effective configuration (``key``, ``value``, ``source`` rows), and what the run
    would do with the flags that set no key (a second table, when one was given).

    A value from ``config_file`` says ``file``: the file is named once, in the row
    ``config file``. The values of the keys in ``ids`` are lists of ids, each kept whole.
    """
    from_file = f"file {config_file}" if config_file is not None else None

    def rows(items: Sequence[dict[str, Any]]) -> list[list[str]]:
        shown = []
        for item in items:
            value = config_value(item["value"])
            if item["key"] in ids:
                value = Whole(value)
            source = str(item["source"])
            shown.append([str(item["key"]), value, "file" if source == from_file else source])
        return shown

    tables = [InfoTable("Effective Configuration", CONFIG_COLUMNS, rows(settings))]
    if run_options:
        tables.append(InfoTable("Run Options", CONFIG_COLUMNS, rows(run_options), continues=True))
    return tables


# --------------------------------------------------------------------------- rendering


def show(
    tables: Sequence[InfoTable], lines: Sequence[str] = (), *, stream: TextIO, rich: bool
) -> None:
    """Write ``tables`` and then ``lines`` to ``stream``: Rich tables when ``rich`` (a
    terminal), tab-separated lines otherwise."""
    if not rich:
        _show_plain(tables, lines, stream)
        return
    from eemt_cleanup.report.console import make_console
    from eemt_cleanup.report.tables import cell

    console = make_console(stream)
    for table in tables:
        show_table(console, table)
    for line in lines:
        console.print(cell(line))


def _show_plain(tables: Sequence[InfoTable], lines: Sequence[str], stream: TextIO) -> None:
    for table in tables:
        if not table.continues:
            stream.write("\t".join(column.header for column in table.columns) + "\n")
        for row in table.rows:
            stream.write("\t".join(printable(value) for value in row) + "\n")
    for line in lines:
        stream.write(printable(line) + "\n")


def show_table(console: Console, table: InfoTable) -> None:
    """One table on a terminal: horizontal when it fits the console's width with every id
    and date whole on one line, else one block per record."""
    if not table.rows:
        if table.empty:
            from eemt_cleanup.report.tables import cell

            console.print(cell(table.empty))
        return
    widths = column_widths(table, console.width)
    if widths is None:
        _show_vertical(console, table)
    else:
        _show_horizontal(console, table, widths)


def column_widths(table: InfoTable, width: int) -> list[int] | None:
    """The content width of each column of ``table`` laid out horizontally in ``width``
    terminal columns, or None when it cannot fit with every one-line value (ids, dates,
    numbers) whole and each free-text column given at least its longest word, up to
    TEXT_MIN_WIDTH (a Whole value's longest word, however long)."""
    count = len(table.columns)
    budget = width - count * CELL_PADDING - (count + 1)
    measured = _measure(table)
    if sum(measured.needed) > budget:
        return None
    widths = list(measured.needed)
    spare = budget - sum(widths)
    # Room left goes first to free text, so that no word is folded (the narrowest need
    # first), then to showing whole values on one line (the shortest first).
    for goal in (measured.unfolded, measured.wanted):
        for index in sorted(range(count), key=lambda column: goal[column] - widths[column]):
            grant = max(0, min(spare, goal[index] - widths[index]))
            widths[index] += grant
            spare -= grant
    return widths


@dataclass(frozen=True)
class _Widths:
    needed: list[int]  # the least a column may have
    unfolded: list[int]  # no word folded
    wanted: list[int]  # every value on one line


def _measure(table: InfoTable) -> _Widths:
    """Per column, the width it needs, the width that folds no word, and the width that
    shows every value on one line."""
    from rich.cells import cell_len

    needed: list[int] = []
    unfolded: list[int] = []
    wanted: list[int] = []
    for index, column in enumerate(table.columns):
        header_words = [cell_len(word) for word in column.header.split()] or [0]
        need = word = max(header_words)
        want = cell_len(column.header)
        for row in table.rows:
            value = row[index]
            text = printable(value)
            full = cell_len(text)
            longest = max((cell_len(part) for part in text.split()), default=0)
            if column.one_line:
                need = max(need, full)
            elif isinstance(value, Whole):
                need = max(need, longest)
            else:
                need = max(need, min(longest, TEXT_MIN_WIDTH))
            word = max(word, longest)
            want = max(want, full)
        needed.append(need)
        unfolded.append(max(word, need))
        wanted.append(max(want, need))
    return _Widths(needed, unfolded, wanted)


def _show_horizontal(console: Console, table: InfoTable, widths: list[int]) -> None:
    from rich.table import Table
    from rich.text import Text

    from eemt_cleanup.report.tables import cell

    shown = Table(title=table.title)
    for column, width in zip(table.columns, widths, strict=True):
        shown.add_column(
            # Headers may wrap at their spaces even above a one-line column.
            Text(column.header, no_wrap=False),
            justify="right" if column.kind is Kind.NUMBER else "left",
            no_wrap=column.one_line,
            overflow="fold",
            width=width,
        )
    for row in table.rows:
        shown.add_row(*(cell(value) for value in row))
    console.print(shown)


def _show_vertical(console: Console, table: InfoTable) -> None:
    """``Key  value`` lines per record, a blank line between records. When even the key
    and the longest id do not fit side by side, each value goes under its key."""
    from rich.cells import cell_len
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    from eemt_cleanup.report.tables import cell

    key_width = max(cell_len(column.header) for column in table.columns)
    needed = _measure(table).needed
    side_by_side = key_width + KEY_GAP + max(needed, default=0) <= console.width
    console.print(Text(table.title, style="italic"))
    for index, row in enumerate(table.rows):
        if index:
            console.print()
        if side_by_side:
            grid = Table.grid(padding=(0, KEY_GAP))
            grid.add_column(no_wrap=True, style="bold")
            grid.add_column(overflow="fold")
            for column, value in zip(table.columns, row, strict=True):
                grid.add_row(Text(column.header), cell(value))
            console.print(grid)
        else:
            for column, value in zip(table.columns, row, strict=True):
                console.print(Text(column.header, style="bold"))
                console.print(Padding(cell(value), (0, 0, 0, KEY_GAP)))


__all__ = [
    "Column",
    "InfoTable",
    "Kind",
    "Whole",
    "audit_table",
    "column_widths",
    "config_tables",
    "config_value",
    "describe_last_run",
    "history_table",
    "show",
    "show_table",
    "status_lines",
    "status_table",
]
