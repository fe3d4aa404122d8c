"""The admin page, ``GET /cleanup``: server-rendered HTML, no JavaScript.

It shows disk use by job status, what is due now and next, the last runs, and the capacity
chart (``report/chart.py``, the ``[charts]`` extra, inline as a PNG), with a "Dry run" button
that shows what would be freed and a "Clean now" button behind a confirmation page.

Signing in: the page's form takes an admin token and, when it is valid, sets a session
cookie (a random id kept in this process's memory, never the token itself; ``HttpOnly``,
``SameSite=Strict``, ``Secure`` over HTTPS, for 8 hours). A request with the bearer header
may read the pages too. Every form that changes something carries the session's CSRF token,
compared in constant time, and a request a browser marks as cross-site is refused. Every
value on the page is escaped (``html.escape`` after the control-character escape); the
answers forbid framing and scripts (``Content-Security-Policy``) and caching.

The session cookie is accepted by these pages only, never by ``/api/cleanup``: the API stays
bearer-only, so no cookie a browser sends on its own can start a run there.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations.
import base64
import hmac
import html
import secrets
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials

from eemt_cleanup.http.api import (
    MAX_BODY_BYTES,
    Caller,
    CleanupApi,
    bearer_scheme,
    client_address,
    read_body,
)

COOKIE = "eemt_cleanup_session"
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 1000
DETAILS_SHOWN = 200  # jobs listed in a dry run's table (all are counted)
RUNS_SHOWN = 10
CHART_DAYS = 30
CHART_SIZE = (1000, 560)
PAGE_ROUTE = "eemt_cleanup_page"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class Session:
    token_name: str
    csrf: str
    expires: float


class Sessions:
    """Signed-in browsers, by session id (in memory: a restart signs everyone out)."""

    def __init__(self) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, token_name: str) -> tuple[str, Session]:
        key = secrets.token_urlsafe(32)
        session = Session(token_name, secrets.token_urlsafe(32), time.time() + SESSION_SECONDS)
        with self._lock:
            self._sessions[key] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return key, session

    def get(self, key: str | None) -> Session | None:
        if not key:
            return None
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and session.expires < time.time():
                del self._sessions[key]
                return None
            return session

    def close(self, key: str | None) -> None:
        with self._lock:
            self._sessions.pop(key or "", None)


def e(value: object) -> str:
    """``value`` for HTML: control characters escaped first, then markup."""
    from eemt_cleanup.report.escape import printable

    return html.escape(printable("" if value is None else value), quote=True)


def size(value: int | None) -> str:
    from eemt_cleanup.humanize_size import human_size

    return "–" if value is None else human_size(int(value))


def when(text: object) -> str:
    """A stored UTC time as the CLI shows dates (``2026-11-22 02:00 UTC``)."""
    if not text:
        return "–"
    from eemt_cleanup.report.dates import moment
    from eemt_cleanup.timeparse import parse_timestamp

    parsed = parse_timestamp(text)
    return e(moment(parsed) if parsed is not None else text)


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f6f8;
color:#1d2733}
header{background:#1f3a5f;color:#fff;padding:14px 28px;display:flex;align-items:center;
justify-content:space-between}
header h1{font-size:20px;margin:0}header form{display:inline}
main{padding:20px 28px;max-width:1180px}
section{background:#fff;border-radius:8px;padding:16px 20px;margin-bottom:18px;
box-shadow:0 1px 3px rgba(0,0,0,.12)}
h2{font-size:16px;margin:0 0 10px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e3e7eb}
th{background:#eef2f6;font-weight:600}td.n,th.n{text-align:right}
.figures{display:flex;gap:18px;flex-wrap:wrap}
.figure{background:#eef2f6;border-radius:6px;padding:10px 16px;min-width:180px}
.figure b{display:block;font-size:22px}
.actions form{display:inline-block;margin-right:10px}
button{font-size:15px;padding:8px 18px;border-radius:6px;border:1px solid #1f3a5f;
background:#fff;color:#1f3a5f;cursor:pointer}
button.danger{background:#b3261e;border-color:#b3261e;color:#fff}
.note{color:#5a6673;font-size:13px}.bad{color:#b3261e}.ok{color:#1b7f3b}
.notice{border-left:4px solid #1f3a5f;background:#eef2f6;padding:10px 14px;margin:10px 0}
.warn{border-left-color:#b3261e;background:#fbeceb}
img{max-width:100%;height:auto}code{font-size:13px}
input[type=password]{font-size:15px;padding:7px;width:340px}
"""


def page(title: str, body: str, *, header: str = "", refresh: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">{meta}'
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>EEMT job data cleanup</h1>{header}</header><main>{body}</main>"
        "</body></html>"
    )


def html_answer(text: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status_code, headers=HEADERS)


def table(heads: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """A table of already-escaped cells; columns in ``numeric`` align right."""
    right = numeric or set()

    def cell(tag: str, index: int, value: str) -> str:
        kind = ' class="n"' if index in right else ""
        return f"<{tag}{kind}>{value}</{tag}>"

    head = "".join(cell("th", i, e(h)) for i, h in enumerate(heads))
    body = "".join(
        "<tr>" + "".join(cell("td", i, value) for i, value in enumerate(row)) + "</tr>"
        for row in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(heads)}" class="note">none</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class AdminPage:
    """The pages' work (on worker threads) and their HTML."""

    def __init__(self, api: CleanupApi) -> None:
        self.api = api
        self.sessions = Sessions()
        self._chart_lock = threading.Lock()  # matplotlib draws one figure at a time

    # -- what the page shows -----------------------------------------------------------

    def overview(self, caller: Caller, csrf: str | None, urls: dict[str, str]) -> str:
        from eemt_cleanup.errors import CleanupError

        try:
            config = self.api.load()
            status = self.api.status(True)
            runs = self.api.history(RUNS_SHOWN)
        except CleanupError as error:
            return page("eemt-cleanup", f'<p class="bad">{e(error)}</p>')
        figures = _json(status)
        history = _json(runs)
        if not isinstance(figures, dict) or "by_status" not in figures:
            return page("eemt-cleanup", f'<p class="bad">{e(figures)}</p>')
        body = [
            self._figures(figures),
            self._actions(csrf, urls) if csrf else self._read_only(),
            self._status_table(figures),
            self._runs_table(history if isinstance(history, list) else []),
            self._chart(config),
        ]
        return page("eemt-cleanup", "".join(body), header=self._header(caller, csrf, urls))

    def _header(self, caller: Caller, csrf: str | None, urls: dict[str, str]) -> str:
        out = ""
        if csrf:
            out = (
                f'<form method="post" action="{e(urls["logout"])}">'
                f'<input type="hidden" name="csrf" value="{e(csrf)}">'
                '<button type="submit">Sign out</button></form>'
            )
        return f"<span>signed in with token <b>{e(caller.token_name)}</b> {out}</span>"

    def _figures(self, figures: dict[str, Any]) -> str:
        running = figures.get("running")
        last = figures.get("last_run")
        cleaned = figures["cleaned_last_24h"]
        boxes = [
            ("Due now", f"{figures['due_now']} jobs", size(figures["due_bytes"])),
            (
                "Next due",
                when(figures.get("next_due_at")),
                f"job {e(figures.get('next_due_job') or '–')}",
            ),
            ("Cleaned in 24 h", f"{cleaned['jobs']} jobs", size(cleaned["bytes_freed"])),
            (
                "Last run",
                when(last.get("started_at")) if last else "never",
                f"exit {e(last.get('exit_code'))}" if last else "",
            ),
        ]
        html_boxes = "".join(
            f'<div class="figure">{e(label)}<b>{value}</b><span class="note">{extra}</span></div>'
            for label, value, extra in boxes
        )
        notices = ""
        if running:
            notices += (
                '<div class="notice">A run is in progress: pid '
                f"{e(running.get('pid'))}, trigger {e(running.get('trigger'))}, since "
                f"{when(running.get('started_at'))}.</div>"
            )
        for problem in figures.get("problems") or []:
            notices += f'<div class="notice warn">{e(problem)}</div>'
        return f'<section><div class="figures">{html_boxes}</div>{notices}</section>'

    def _actions(self, csrf: str, urls: dict[str, str]) -> str:
        hidden = f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        return (
            '<section class="actions"><h2>Clean up</h2>'
            f'<form method="post" action="{e(urls["dry_run"])}">{hidden}'
            '<button type="submit">Dry run: what would be freed</button></form>'
            f'<form method="post" action="{e(urls["clean"])}">{hidden}'
            '<button type="submit" class="danger">Clean now…</button></form>'
            '<p class="note">Clean now asks for a confirmation first. Retention as '
            "configured; pending, running and unknown jobs are never touched.</p></section>"
        )

    def _read_only(self) -> str:
        return (
            '<section class="note">Signed in with a header: read only. Sign in with the '
            "form to use the buttons.</section>"
        )

    def _status_table(self, figures: dict[str, Any]) -> str:
        rows = [
            [
                e(group["status"]),
                e(group["jobs"]),
                e(size(group["bytes"])),
                e(group["due_now"]),
                e(size(group["due_bytes"])),
            ]
            for group in figures["by_status"]
        ]
        note = "" if figures.get("measured") else '<p class="note">not measured</p>'
        return (
            "<section><h2>Job data not yet cleaned, by status</h2>"
            + table(["Status", "Jobs", "Data", "Due now", "Due data"], rows, {1, 2, 3, 4})
            + note
            + "</section>"
        )

    def _runs_table(self, runs: list[dict[str, Any]]) -> str:
        rows = []
        for run in runs:
            code = run.get("exit_code")
            state = (
                '<span class="ok">0</span>'
                if code == 0
                else (f'<span class="bad">{e(code)}</span>' if code is not None else "running?")
            )
            rows.append(
                [
                    when(run.get("started_at")),
                    e(run.get("trigger")),
                    e(run.get("user")),
                    e(f"{run.get('jobs_successful') or 0} / {run.get('jobs_failed') or 0}"),
                    e(size(run.get("bytes_freed"))),
                    state,
                ]
            )
        return (
            "<section><h2>Last runs</h2>"
            + table(
                ["Started", "Trigger", "User", "Jobs (successful / failed)", "Freed", "Exit"],
                rows,
                {3, 4, 5},
            )
            + "</section>"
        )

    def _chart(self, config: Any) -> str:
        from eemt_cleanup.capacity import build_report
        from eemt_cleanup.errors import CleanupError
        from eemt_cleanup.report.chart import ChartUnavailable, chart_png
        from eemt_cleanup.timeparse import utc_now

        now = utc_now()
        try:
            report = build_report(config, since=now - timedelta(days=CHART_DAYS), now=now)
            with self._chart_lock:
                png = chart_png(report, size=CHART_SIZE)
        except ChartUnavailable:
            return (
                '<section><h2>Capacity</h2><p class="note">The chart needs matplotlib: '
                "<code>pip install 'eemt-cleanup[charts]'</code></p></section>"
            )
        except CleanupError as error:
            return f'<section><h2>Capacity</h2><p class="bad">{e(error)}</p></section>'
        notes = "".join(f'<p class="note">{e(note)}</p>' for note in report.notes)
        data = base64.b64encode(png).decode("ascii")
        return (
            f"<section><h2>Capacity, last {CHART_DAYS} days</h2>"
            f'<img alt="Storage used by status, the results filesystem and its projection, '
            f'and space freed per day" src="data:image/png;base64,{data}">'
            f"{notes}</section>"
        )

    # -- the buttons -------------------------------------------------------------------

    def dry_run(self, caller: Caller, back: str, confirm: str | None, csrf: str) -> str:
        """The dry run's result; with ``confirm`` (the confirmation URL), the page that asks
        whether to clean now."""
        from eemt_cleanup.engine import RunOptions

        options = RunOptions(dry_run=True, trigger="api", user=caller.user)
        answer = self.api.cleanup(options, None, None, False, lambda run_id: "")
        result = _json(answer)
        if answer.status_code != 200:
            return self._refused(result, back)
        cleaned = result["cleaned_jobs"]
        jobs = cleaned["successful"] + cleaned["failed"]
        rows = [
            [
                e(detail["job_id"]),
                e(detail["status"]),
                e(f"{detail['age_days']:.1f} days" if detail["age_days"] is not None else "–"),
                e(detail["space_freed"]),
                "<br>".join(e(path) for path in detail["paths"]),
            ]
            for detail in result["details"][:DETAILS_SHOWN]
        ]
        more = len(result["details"]) - len(rows)
        summary = (
            f"<p><b>Would clean {jobs} jobs</b> ({cleaned['successful']} successful, "
            f"{cleaned['failed']} failed), freeing <b>{e(result['space_freed']['human_readable'])}"
            f"</b>.</p>"
        )
        if confirm is not None:
            head = "<h2>Clean now?</h2>" + summary
            if jobs:
                head += (
                    '<p class="bad">This deletes the data listed below. It cannot be '
                    "undone.</p>"
                    f'<form method="post" action="{e(confirm)}">'
                    f'<input type="hidden" name="csrf" value="{e(csrf)}">'
                    '<input type="hidden" name="confirm" value="yes">'
                    '<button type="submit" class="danger">Yes, clean now</button> '
                    f'<a href="{e(back)}">Cancel</a></form>'
                )
            else:
                head += f'<p>Nothing to clean. <a href="{e(back)}">Back</a></p>'
        else:
            head = f'<h2>Dry run</h2>{summary}<p><a href="{e(back)}">Back</a></p>'
        tail = f'<p class="note">and {more} more jobs</p>' if more > 0 else ""
        body = (
            f"<section>{head}</section><section>"
            + table(["Job", "Status", "Age", "Frees", "Paths"], rows, {3})
            + tail
            + "</section>"
        )
        return page("eemt-cleanup: dry run", body)

    def clean(self, caller: Caller, status_url: Callable[[str], str], back: str) -> Response:
        """Start a real run; to its page (303), or the page saying why not."""
        from eemt_cleanup.engine import RunOptions

        options = RunOptions(dry_run=False, trigger="api", user=caller.user)
        answer = self.api.cleanup(options, None, None, False, status_url)
        if answer.status_code == 202:
            return RedirectResponse(_json(answer)["status_url"], 303, headers=HEADERS)
        result = _json(answer)
        if answer.status_code == 200:  # forced to a dry run by the environment
            return html_answer(
                page(
                    "eemt-cleanup",
                    "<section><p>The environment forces dry runs "
                    f"({e(result.get('dry_run_forced_by'))}): nothing was deleted.</p>"
                    f'<p><a href="{e(back)}">Back</a></p></section>',
                )
            )
        return html_answer(self._refused(result, back), answer.status_code)

    def run_page(self, run_id: str, back: str) -> tuple[str, int]:
        answer = self.api.run_status(run_id)
        status = _json(answer)
        if answer.status_code != 200:
            return self._refused(status, back), answer.status_code
        progress = status.get("progress") or {}
        state = status["state"]
        lines = [
            f"<h2>Run {e(run_id)}</h2>",
            f"<p>State: <b>{e(state)}</b>"
            + (f", outcome {e(status['outcome'])}" if status.get("outcome") else "")
            + (f", exit {e(status['exit_code'])}" if status.get("exit_code") is not None else "")
            + "</p>",
            f"<p>By {e(status.get('user'))}, started {when(status.get('started_at'))}</p>",
        ]
        if progress:
            lines.append(
                f"<p>{e(progress.get('jobs_done'))} of {e(progress.get('jobs_planned'))} jobs "
                f"done, {e(progress.get('human_readable'))} freed so far</p>"
            )
        result = status.get("result")
        if result:
            cleaned = result["cleaned_jobs"]
            lines.append(
                f"<p><b>Cleaned {cleaned['successful']} successful and {cleaned['failed']} "
                f"failed jobs, freed {e(result['space_freed']['human_readable'])}</b></p>"
            )
            lines += [f'<p class="bad">{e(error)}</p>' for error in result["errors"][:20]]
        if status.get("error"):
            lines.append(f'<p class="bad">{e(status["error"])}</p>')
        lines.append(f'<p><a href="{e(back)}">Back</a></p>')
        refresh = 2 if state == "running" else None
        body = f"<section>{''.join(lines)}</section>"
        return page(f"eemt-cleanup: run {run_id}", body, refresh=refresh), 200

    def _refused(self, result: Any, back: str) -> str:
        detail = result.get("detail") if isinstance(result, dict) else result
        return page(
            "eemt-cleanup",
            f'<section><p class="bad">{e(detail)}</p><p><a href="{e(back)}">Back</a></p></section>',
        )

    def login(self, action: str, error: str | None = None) -> str:
        problem = f'<p class="bad">{e(error)}</p>' if error else ""
        return page(
            "eemt-cleanup: sign in",
            "<section><h2>Sign in</h2>"
            f'<form method="post" action="{e(action)}">'
            '<p><label>Admin token<br><input type="password" name="token" '
            'autocomplete="current-password" required></label></p>'
            f'{problem}<button type="submit">Sign in</button></form>'
            '<p class="note">The token of EEMT_CLEANUP_API_TOKEN or of the server\'s token '
            "file.</p></section>",
        )


def _json(answer: Any) -> Any:
    import json

    return json.loads(bytes(answer.body))


async def form(request: Request) -> dict[str, str] | None:
    """The urlencoded form of a POST (None: too large); each field's first value."""
    body = await read_body(request, MAX_BODY_BYTES)
    if body is None:
        return None
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def cross_site(request: Request) -> Response | None:
    """The refusal of a form a browser says comes from another site (``Sec-Fetch-Site``;
    a client that does not send it is not a browser that could be tricked)."""
    if request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none"):
        return None
    return html_answer(page("eemt-cleanup", "<p>Refused: a cross-site request.</p>"), 403)


def add_admin_page(router: APIRouter, api: CleanupApi) -> None:
    """Add ``/cleanup`` and its forms to ``router``."""
    admin = AdminPage(api)

    def urls(request: Request) -> dict[str, str]:
        return {
            name: request.url_for(route).path
            for name, route in (
                ("page", PAGE_ROUTE),
                ("login", "eemt_cleanup_login"),
                ("logout", "eemt_cleanup_logout"),
                ("dry_run", "eemt_cleanup_dry_run"),
                ("clean", "eemt_cleanup_clean"),
                ("confirm", "eemt_cleanup_confirm"),
            )
        }

    def session_of(request: Request) -> Session | None:
        return admin.sessions.get(request.cookies.get(COOKIE))

    async def viewer(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
    ) -> tuple[Caller, Session | None] | None:
        """Who may read the page: a session, or a valid bearer header; None otherwise."""
        session = session_of(request)
        if session is not None:
            return Caller(session.token_name, client_address(request)), session
        if credentials is not None and credentials.credentials:
            name = api.tokens.match(credentials.credentials)
            if name is not None:
                return Caller(name, client_address(request)), None
        return None

    async def acting(request: Request) -> tuple[Caller, Session, dict[str, str]] | Response:
        """A form that changes something: a signed-in session, its CSRF token, and not a
        request the browser says is cross-site; else the refusal."""
        refused = cross_site(request)
        if refused is not None:
            return refused
        session = session_of(request)
        if session is None:
            return RedirectResponse(urls(request)["page"], 303, headers=HEADERS)
        fields = await form(request)
        if fields is None:
            return html_answer(page("eemt-cleanup", "<p>The form is too large.</p>"), 413)
        given = fields.get("csrf", "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, session.csrf.encode("ascii")):
            return html_answer(
                page("eemt-cleanup", "<p>Refused: the form is stale. Reload the page.</p>"), 403
            )
        return Caller(session.token_name, client_address(request)), session, fields

    @router.get("/cleanup", name=PAGE_ROUTE, response_class=HTMLResponse, summary="Admin page")
    async def get_page(
        request: Request, who: tuple[Caller, Session | None] | None = Depends(viewer)
    ) -> Response:
        links = urls(request)
        if who is None:
            return html_answer(admin.login(links["login"]))
        caller, session = who
        csrf = session.csrf if session is not None else None
        return html_answer(await run_in_threadpool(admin.overview, caller, csrf, links))

    @router.post("/cleanup/login", name="eemt_cleanup_login", include_in_schema=False)
    async def login(request: Request) -> Response:
        refused = cross_site(request)
        if refused is not None:  # another site must not sign a browser in, either
            return refused
        links = urls(request)
        fields = await form(request)
        token = (fields or {}).get("token", "")
        name = api.tokens.match(token) if token else None
        if name is None:
            return html_answer(admin.login(links["login"], "That is not a valid token."), 403)
        key, _session = admin.sessions.open(name)
        answer = RedirectResponse(links["page"], 303, headers=HEADERS)
        answer.set_cookie(
            COOKIE,
            key,
            max_age=SESSION_SECONDS,
            path=links["page"],
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return answer

    @router.post("/cleanup/logout", name="eemt_cleanup_logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        acted = await acting(request)
        if isinstance(acted, Response):
            return acted
        admin.sessions.close(request.cookies.get(COOKIE))
        answer = RedirectResponse(urls(request)["page"], 303, headers=HEADERS)
        answer.delete_cookie(COOKIE, path=urls(request)["page"])
        return answer

    @router.post("/cleanup/dry-run", name="eemt_cleanup_dry_run", include_in_schema=False)
    async def dry_run(request: Request) -> Response:
        acted = await acting(request)
        if isinstance(acted, Response):
            return acted
        caller, session, _fields = acted
        text = await run_in_threadpool(
            admin.dry_run, caller, urls(request)["page"], None, session.csrf
        )
        return html_answer(text)

    @router.post("/cleanup/clean", name="eemt_cleanup_clean", include_in_schema=False)
    async def clean(request: Request) -> Response:
        acted = await acting(request)
        if isinstance(acted, Response):
            return acted
        caller, session, _fields = acted
        links = urls(request)
        text = await run_in_threadpool(
            admin.dry_run, caller, links["page"], links["confirm"], session.csrf
        )
        return html_answer(text)

    @router.post("/cleanup/clean/confirm", name="eemt_cleanup_confirm", include_in_schema=False)
    async def confirm(request: Request) -> Response:
        acted = await acting(request)
        if isinstance(acted, Response):
            return acted
        caller, _session, fields = acted
        links = urls(request)
        if fields.get("confirm") != "yes":
            return RedirectResponse(links["page"], 303, headers=HEADERS)

        def run_page_url(run_id: str) -> str:
            return request.url_for("eemt_cleanup_run_page", run_id=run_id).path

        return await run_in_threadpool(admin.clean, caller, run_page_url, links["page"])

    @router.get(
        "/cleanup/runs/{run_id}",
        name="eemt_cleanup_run_page",
        response_class=HTMLResponse,
        include_in_schema=False,
    )
    async def run_page(
        request: Request,
        run_id: str,
        who: tuple[Caller, Session | None] | None = Depends(viewer),
    ) -> Response:
        links = urls(request)
        if who is None:
            return html_answer(admin.login(links["login"]))
        text, status_code = await run_in_threadpool(admin.run_page, run_id, links["page"])
        return html_answer(text, status_code)


__all__ = ["COOKIE", "AdminPage", "Sessions", "add_admin_page"]
