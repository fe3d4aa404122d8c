"""``notify --test``: a test notice to every enabled channel, and which of them took it.

Imported at start-up with every command: smtplib, urllib and apprise are imported only
when a notice is sent (by :mod:`eemt_cleanup.notify`'s channels).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from eemt_cleanup.cli.common import (
    ConfigOption,
    DbOption,
    DebugOption,
    JsonOption,
    examples,
    fail,
    handle_errors,
    own_output_only,
    path_overrides,
)
from eemt_cleanup.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, ConfigError

if TYPE_CHECKING:
    from eemt_cleanup.notify import NoticeResult

NOTIFY_EPILOG = examples(
    "eemt-cleanup notify --test                     # every enabled channel, one line each",
    "eemt-cleanup notify --test -c /srv/eemt/cleanup_config.yaml",
    "eemt-cleanup notify --test --json | jq '.results[] | select(.decision == \"failed\")'",
    after="Exit codes: 0 every channel took the notice, 1 at least one failed, 2 no channel "
    "is enabled or bad input.",
)

ENABLE_HINT = (
    "set notifications.email.enabled, notifications.slack.enabled or "
    "notifications.apprise.enabled to true"
)


@handle_errors(json_arg="json_output")
def notify(
    test: Annotated[
        bool,
        typer.Option(
            "--test", help="Send a test notice to every enabled channel (required for now)."
        ),
    ] = False,
    config: ConfigOption = None,
    db_path: DbOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Send a test notice to every enabled notification channel (notifications.email,
    .slack, .apprise) and say which took it: one line per channel with its redacted
    destination, or why it failed. The notice is recorded in the database (cleanup_notices)
    but never counts for a channel's min_interval; a database that cannot record it is a
    "Note:" line."""
    if not test:
        raise fail(
            "notify: nothing to do; give --test to send a test notice to every enabled channel"
            " (see 'eemt-cleanup notify --help')",
            EXIT_USAGE,
        )
    from eemt_cleanup.config.loader import load_config
    from eemt_cleanup.notify import Notice, enabled_channels, send_notices

    loaded = load_config(config_path=config, overrides=path_overrides(db_path, None, None, None))
    if not enabled_channels(loaded.settings):
        where = f" in {loaded.config_file}" if loaded.config_file else " in a config file"
        raise ConfigError(f"no notification channel is enabled: {ENABLE_HINT}{where}")
    own_output_only()  # each channel's outcome is a line of ours
    results = send_notices(loaded, Notice(kinds=frozenset({"test"}), trigger="cli"))
    success = all(result.decision == "sent" for result in results)
    _show(results, success, json_output)
    raise typer.Exit(EXIT_OK if success else EXIT_PARTIAL)


def _show(results: list[NoticeResult], success: bool, json_output: bool) -> None:
    """The results on stdout: one line per channel, or the ``--json`` object."""
    from eemt_cleanup.report.escape import printable
    from eemt_cleanup.report.json_out import dumps

    if json_output:
        shown = [result.model_dump(mode="json") for result in results]
        print(dumps({"success": success, "results": shown}))
        return
    for result in results:
        detail = result.error or result.destination
        line = f"{result.channel}: {result.decision}" + (f" ({detail})" if detail else "")
        # Errors are escaped already: their backslashes are not escaped twice.
        print(printable(line, backslashes=False))
    # The same on every result: the database could not record the notices (as status says).
    for note in sorted({result.note for result in results if result.note}):
        print(printable(f"Note: {note}", backslashes=False))
