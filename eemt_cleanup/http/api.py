"""The FastAPI router: ``POST /api/cleanup`` and the endpoints around it.

Every endpoint but ``/healthz`` needs an admin token (``Authorization: Bearer <token>``,
see :mod:`eemt_cleanup.http.auth`): missing is ``401``, wrong is ``403``.

Nothing blocking runs on the event loop: runs go through :class:`~eemt_cleanup.http.runs.
RunManager` (a thread per run), and the endpoints that read the database or the disk are
plain ``def`` functions, which FastAPI runs in its thread pool. ``POST /api/cleanup`` is
``async`` only to read its body with a size limit; its work is handed to the thread pool.

HTTP statuses are the one mapping of the core's outcomes here (:func:`error_answer`), as
exit codes are in ``cli/exit_codes.py``. JSON answers are ASCII-safe (``ensure_ascii``), so a
file name that is not UTF-8 is escaped, never a serialisation error.

Works with FastAPI 0.104.1 (the version the EEMT web interface pins) and current releases:
it uses nothing newer than ``APIRouter``, ``Depends``/``Security``, ``Query``, ``HTTPBearer``,
``run_in_threadpool`` and ``Response``, and its models are pydantic v2.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at
# runtime, and those of the endpoints made in create_router name its local variables.
import contextlib
import ipaddress
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

import eemt_cleanup
from eemt_cleanup.errors import BusyError, CleanupError, LockedError
from eemt_cleanup.http.auth import Token, TokenSet, load_tokens
from eemt_cleanup.http.models import (
    MAX_RETENTION_DAYS,
    MAX_RETENTION_HOURS,
    AuditEntry,
    CleanedLastDay,
    CleanupRequest,
    ErrorDetail,
    Health,
    Locked,
    LockHolder,
    RunAccepted,
    RunLogEntry,
    RunStatus,
    StatusGroup,
    StatusReport,
)
from eemt_cleanup.http.runs import RunHandle, RunManager
from eemt_cleanup.models import RunSummary

log = logging.getLogger("eemt_cleanup")

# Bodies larger than this are refused (413): the reference's body is three keys.
MAX_BODY_BYTES = 16 * 1024
REALM = 'Bearer realm="eemt-cleanup"'
RETRY_AFTER_SECONDS = 30
CLEANUP_QUERY = frozenset({"dry_run", "success_retention_days", "failed_retention_hours", "wait"})
RUN_ROUTE = "eemt_cleanup_run"

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="An admin token: EEMT_CLEANUP_API_TOKEN, or a line of the server's token file.",
)


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: a lone surrogate (a file name that is
    not UTF-8) is ``\\udcff``, never an encoding error."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":"), default=str).encode(
            "ascii"
        )


def answer(
    content: BaseModel | Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> AsciiJSONResponse:
    data = content.model_dump(mode="json") if isinstance(content, BaseModel) else content
    return AsciiJSONResponse(data, status_code=status_code, headers=dict(headers or {}))


def invalid(errors: list[dict[str, Any]]) -> AsciiJSONResponse:
    """A ``422`` shaped as FastAPI's own (``detail[]`` with ``loc``, ``msg``, ``type``)."""
    return answer({"detail": errors}, 422)


def invalid_field(where: str, name: str, message: str, value: Any = None) -> AsciiJSONResponse:
    return invalid([{"type": "value_error", "loc": [where, name], "msg": message, "input": value}])


def error_answer(error: BaseException, holder: LockHolder | None = None) -> AsciiJSONResponse:
    """The one mapping of the core's errors to HTTP: another run holds the lock → 409 (with
    who); the database stayed busy → 503 with Retry-After; a configuration or database
    error of the server (nothing deleted) → 500 with its one line; anything else → 500."""
    from eemt_cleanup.report.escape import printable

    message = printable(str(error), backslashes=False)
    if isinstance(error, LockedError):
        return answer(Locked(detail=message, holder=holder), 409)
    if isinstance(error, BusyError):
        return answer(ErrorDetail(detail=message), 503, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    if isinstance(error, CleanupError):
        return answer(ErrorDetail(detail=message), 500)
    return answer(ErrorDetail(detail=f"unexpected error: {message}"), 500)


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the name of the token it presented, and its address."""

    token_name: str
    address: str

    @property
    def user(self) -> str:
        """What the run log and the audit record as ``user``: ``api:NAME@ADDRESS``."""
        return f"api:{self.token_name}@{self.address}"


def client_address(request: Request) -> str:
    """The peer's address as the server saw it (proxy headers are not trusted), escaped."""
    from eemt_cleanup.report.escape import printable

    host = request.client.host if request.client is not None else None
    if not host:
        return "unknown"
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    return printable(host)


def as_token_set(
    tokens: TokenSet | Mapping[str, str] | None, token_file: str | Path | None
) -> TokenSet:
    """``tokens`` given (a TokenSet, or names → secrets), else those of the environment and
    ``token_file``. Raises ConfigError for a token that cannot be used."""
    if isinstance(tokens, TokenSet):
        return tokens
    if tokens is None:
        return load_tokens(token_file)
    from eemt_cleanup.http.auth import check_secret

    return TokenSet(
        Token(name, check_secret(secret, f"token {name!r}")) for name, secret in tokens.items()
    )


class CleanupApi:
    """The router's state: where the configuration comes from, the tokens, the runs."""

    def __init__(
        self,
        config: str | Path | None,
        tokens: TokenSet,
        overrides: Mapping[str, Any],
        on_event: Callable[[Any], None] | None,
    ) -> None:
        self.config_path = config
        self.tokens = tokens
        self.overrides = dict(overrides)
        self.runs = RunManager(on_event=on_event)
        self.load()  # a configuration that cannot work is an error now, not per request

    def load(self, success_hours: float | None = None, failed_hours: float | None = None) -> Any:
        """The effective configuration (re-read per request: the file may change), with a
        request's retention. Raises ConfigError."""
        retention: dict[str, float] = {}
        if success_hours is not None:
            retention["success_retention"] = success_hours
        if failed_hours is not None:
            retention["failed_retention"] = failed_hours
        return eemt_cleanup.load_config(self.config_path, **self.overrides, **retention)

    # -- authentication ----------------------------------------------------------------

    def caller(self, request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
        """The caller of a request with a valid token; raises HTTPException 401 (no token)
        or 403 (not a valid one)."""
        if credentials is None or not credentials.credentials:
            raise HTTPException(
                401,
                "an admin token is required: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": REALM},
            )
        name = self.tokens.match(credentials.credentials)
        if name is None:
            raise HTTPException(
                403,
                "the admin token is not valid",
                headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
            )
        return Caller(name, client_address(request))

    # -- the work, on worker threads ---------------------------------------------------

    def holder(self, config: Any) -> LockHolder | None:
        from eemt_cleanup.lock import find_holder

        found = find_holder(config.roots.database)
        return LockHolder(**found.__dict__) if found is not None else None

    def cleanup(
        self,
        options: Any,
        success_hours: float | None,
        failed_hours: float | None,
        wait: bool,
        status_url: Callable[[str], str],
    ) -> Response:
        """Run (or start) one cleanup and answer: 200 with the result (a dry run, or
        ``wait``), 202 with where to follow a real run, or the error's status. A dry run
        forced by the environment is asked for as a real run: the engine then says it was
        forced (``dry_run_forced_by``) and records it in the run log."""
        try:
            config = self.load(success_hours, failed_hours)
        except CleanupError as error:
            return error_answer(error)
        dry_run = options.dry_run or config.force_dry_run
        if dry_run:
            holder = self.holder(config)
            if holder is not None:
                # A preview while another run deletes would describe a state that is
                # changing under it.
                described = _describe(holder)
                return error_answer(
                    LockedError(
                        f"another eemt-cleanup run holds the lock on {config.roots.database} "
                        f"({described}); try the dry run again when it is done"
                    ),
                    holder,
                )
        handle = self.runs.start(config, options)
        if handle.error is not None:
            holder = self.holder(config) if isinstance(handle.error, LockedError) else None
            return error_answer(handle.error, holder)
        if handle.dry_run or wait:
            handle.wait()
            return self.result(handle)
        url = status_url(handle.run_id or "")
        accepted = RunAccepted(run_id=handle.run_id or "", state="running", status_url=url)
        return answer(accepted, 202, {"Location": url})

    def result(self, handle: RunHandle) -> Response:
        if handle.error is not None:
            return error_answer(handle.error)
        assert handle.report is not None
        return answer(handle.report.summary())

    def run_status(self, run_id: str) -> Response:
        handle = self.runs.get(run_id)
        if handle is not None:
            return answer(handle.status())
        try:
            config = self.load()
            row = _read(config, lambda conn: _run_row(conn, run_id))
        except CleanupError as error:
            return error_answer(error)
        if row is None:
            return answer(ErrorDetail(detail=f"no run {run_id!r}"), 404)
        holder = self.holder(config)
        record = RunLogEntry(**row)
        if record.exit_code is not None:
            state = "finished"
        elif holder is not None and holder.run_id == run_id:
            state = "running"
        else:
            state = "interrupted"
        status = RunStatus(
            run_id=run_id,
            state=state,
            source="run_log",
            dry_run=bool(record.dry_run) if record.dry_run is not None else None,
            trigger=record.trigger,
            user=record.user,
            started_at=record.started_at,
            finished_at=record.finished_at,
            exit_code=record.exit_code,
            record=record,
        )
        return answer(status)

    def history(self, limit: int) -> Response:
        from eemt_cleanup.store.audit import recent_runs

        try:
            rows = _read(self.load(), lambda conn: recent_runs(conn, limit))
        except CleanupError as error:
            return error_answer(error)
        return answer([RunLogEntry(**row).model_dump(mode="json") for row in rows])

    def audit(self, job: str | None, since: str | None, action: str | None, limit: int) -> Response:
        from eemt_cleanup.store.actions import AuditAction, match_audited_job, parse_action
        from eemt_cleanup.store.audit import audit_rows

        if action is not None and parse_action(action) is None:
            return invalid_field(
                "query", "action", f"not an audit action; one of {', '.join(AuditAction)}", action
            )
        if job is not None and not job.strip():
            return invalid_field("query", "job", "must not be empty", job)
        since_text = None
        if since is not None:
            since_text = _since(since)
            if since_text is None:
                return invalid_field(
                    "query",
                    "since",
                    "expected a duration like 7d, 12h, 30m, 2w or an ISO date/time",
                    since,
                )

        def query(conn: Any) -> list[dict[str, Any]] | AsciiJSONResponse:
            job_id: Any = None
            if job is not None:
                match = match_audited_job(conn, job)
                if match.count > 1:
                    shown = ", ".join(str(found) for found in match.examples)
                    return invalid_field(
                        "query",
                        "job",
                        f"{match.count} jobs match ({shown}"
                        f"{', ...' if match.count > len(match.examples) else ''}); "
                        "give more of the id",
                        job,
                    )
                if match.job_id is None:
                    return []
                job_id = match.job_id
            return audit_rows(conn, job_id=job_id, since=since_text, action=action, limit=limit)

        try:
            rows = _read(self.load(), query)
        except CleanupError as error:
            return error_answer(error)
        if isinstance(rows, AsciiJSONResponse):
            return rows
        return answer([AuditEntry(**row).model_dump(mode="json") for row in rows])

    def status(self, measure: bool) -> Response:
        from eemt_cleanup.capacity import cleaned_recently
        from eemt_cleanup.humanize_size import human_size
        from eemt_cleanup.models import NeverCleaned, SkipEntry
        from eemt_cleanup.store.usage import latest_sample
        from eemt_cleanup.timeparse import utc_now

        try:
            config = self.load()
            inventory = eemt_cleanup.inventory(config, measure=measure, store_sizes=False)
            since = utc_now() - timedelta(hours=24)
            recent, sample = _read(
                config, lambda conn: (cleaned_recently(conn, since), latest_sample(conn))
            )
        except CleanupError as error:
            return error_answer(error)
        groups = sorted(inventory.groups.values(), key=lambda group: group.status)
        running = inventory.running
        report = StatusReport(
            by_status=[
                StatusGroup(
                    status=group.status,
                    jobs=group.jobs,
                    bytes=group.bytes_used,
                    human_readable=human_size(group.bytes_used),
                    due_now=group.due_now,
                    due_bytes=group.due_bytes,
                )
                for group in groups
            ],
            measured=inventory.measured,
            due_now=inventory.due_now,
            due_bytes=inventory.due_bytes,
            due_human_readable=human_size(inventory.due_bytes),
            next_due_at=inventory.next_due_at,
            next_due_job=inventory.next_due_job,
            last_run=RunLogEntry(**inventory.last_run) if inventory.last_run else None,
            running=LockHolder(**running.__dict__) if running is not None else None,
            cleaned_last_24h=CleanedLastDay(
                since=recent.since,
                jobs=recent.jobs,
                bytes_freed=recent.bytes_freed,
                human_readable=recent.human_readable,
                jobs_by_status=recent.jobs_by_status,
            ),
            never_cleaned={
                str(kind): NeverCleaned(
                    count=kept.count,
                    examples=[
                        SkipEntry(job_id=skip.job_id, reason=skip.reason) for skip in kept.examples
                    ],
                )
                for kind, kept in inventory.kept.items()
            },
            problems=inventory.problems,
            notes=inventory.notes,
            latest_sample=sample,
        )
        return answer(report)

    def metrics(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        from eemt_cleanup.metrics import render

        try:
            data = render(self.load())
        except CleanupError as error:
            return error_answer(error)
        return Response(data, media_type=CONTENT_TYPE_LATEST)


def _describe(holder: LockHolder) -> str:
    from eemt_cleanup.lock import Holder

    return Holder(**holder.model_dump()).describe()


def _read(config: Any, query: Callable[[Any], Any]) -> Any:
    """``query(conn)`` on a read-only connection to the database. Raises DatabaseError."""
    from eemt_cleanup.store.db import connect

    conn = connect(
        config.roots.database,
        readonly=True,
        timeout=config.settings.performance.busy_timeout_seconds,
    )
    try:
        return query(conn)
    finally:
        conn.close()


def _run_row(conn: Any, run_id: str) -> dict[str, Any] | None:
    from eemt_cleanup.store.audit import run_row

    return run_row(conn, run_id)


def _since(text: str) -> str | None:
    """``7d``, ``12h``, ``30m``, ``2w`` ago, or an ISO date/time, as the audit's UTC text
    (None: neither, or outside the calendar) — the CLI's ``audit --since``."""
    from eemt_cleanup.timeparse import format_utc, parse_timestamp, utc_now

    units = {"d": "days", "h": "hours", "m": "minutes", "w": "weeks"}
    stripped = text.strip()
    count = stripped[:-1]
    if count.isascii() and count.isdigit() and stripped[-1:] in units:
        try:
            return format_utc(utc_now() - timedelta(**{units[stripped[-1]]: int(count)}))
        except (OverflowError, ValueError):
            return None
    parsed = parse_timestamp(stripped)
    return format_utc(parsed) if parsed is not None else None


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The request's body, or None when it is larger than ``limit`` bytes (read no
    further than that: a declared length over the limit is refused unread)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_request(body: bytes, content_type: str | None) -> CleanupRequest | Response:
    """The JSON body of ``POST /api/cleanup`` (empty: every default), or the answer that
    refuses it: 415 (not JSON), 422 (not a JSON object, or a value out of range; the field
    is named in ``loc``)."""
    if not body.strip():
        return CleanupRequest()
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        return answer(
            ErrorDetail(detail="the body must be JSON (Content-Type: application/json)"), 415
        )
    try:
        data = json.loads(body)
    except ValueError as error:
        return invalid(
            [{"type": "json_invalid", "loc": ["body"], "msg": f"JSON decode error: {error}"}]
        )
    if not isinstance(data, dict):
        return invalid(
            [{"type": "model_type", "loc": ["body"], "msg": "the body must be a JSON object"}]
        )
    try:
        return CleanupRequest.model_validate(data)
    except ValidationError as error:
        return invalid(
            [
                {
                    "type": item["type"],
                    "loc": ["body", *item["loc"]],
                    "msg": item["msg"],
                    "input": item.get("input"),
                }
                for item in error.errors(include_url=False)
            ]
        )


def check_query(request: Request, allowed: frozenset[str]) -> Response | None:
    """A 422 for a query parameter the endpoint does not know (a misspelt retention must not
    silently become the default) or one given twice; else None."""
    for name in request.query_params:
        if name not in allowed:
            return invalid_field(
                "query", name, f"unknown parameter; the parameters are {', '.join(sorted(allowed))}"
            )
        if len(request.query_params.getlist(name)) > 1:
            return invalid_field("query", name, "given more than once")
    return None


def create_router(
    config: str | Path | None = None,
    *,
    tokens: TokenSet | Mapping[str, str] | None = None,
    token_file: str | Path | None = None,
    on_event: Callable[[Any], None] | None = None,
    metrics: bool = True,
    admin_page: bool = True,
    **overrides: Any,
) -> APIRouter:
    """The API as a router to mount in an existing FastAPI app.

    ``config`` is the config file (else the CLI's search: ``$EEMT_CLEANUP_CONFIG``,
    ``./cleanup_config.yaml``, ``/etc/eemt-cleanup/cleanup_config.yaml``), re-read per
    request; ``overrides`` are :func:`eemt_cleanup.load_config`'s (``db_path=``, ...).
    ``tokens`` are the admin tokens (a TokenSet, or names → tokens); by default
    ``$EEMT_CLEANUP_API_TOKEN`` (named ``env``) and those of ``token_file``. Without any,
    every endpoint but ``/healthz`` answers 401. ``on_event`` also receives every event of
    every run the API starts. ``metrics=False`` leaves ``/metrics`` to the host app;
    ``admin_page=False`` leaves out ``/cleanup``.

    Raises ConfigError now (not per request) for a configuration or a token that cannot
    be used.
    """
    api = CleanupApi(config, as_token_set(tokens, token_file), overrides, on_event)
    router = APIRouter()
    router.eemt_cleanup = api  # type: ignore[attr-defined]

    # Parameters are declared as defaults (``x: int = Query(...)``), not with Annotated:
    # FastAPI 0.104 cannot read Annotated parameters under current pydantic releases.

    # Async: it does no I/O, so it runs on the loop (a plain def would take a thread).
    async def admin_caller(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
    ) -> Caller:
        return api.caller(request, credentials)

    admin = Depends(admin_caller)
    locked = {"model": Locked, "description": "Another run holds the lock (cron, a timer, …)"}
    refused: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorDetail},
        403: {"model": ErrorDetail},
    }

    @router.post(
        "/api/cleanup",
        response_model=RunSummary,
        summary="Clean up job data past retention",
        description="A dry run answers with what would be cleaned (200). A real run answers "
        "202 with its run id and a Location to follow; with wait=true it answers 200 with the "
        "result once it is done. The JSON body (dry_run, success_retention_hours, "
        "failed_retention_hours) or, for existing clients, the query parameters dry_run, "
        "success_retention_days and failed_retention_hours; retention from 0 to ten years.",
        responses={
            200: {"description": "The result (a dry run: what would happen)"},
            202: {"model": RunAccepted, "description": "The run is under way"},
            **refused,
            409: locked,
            413: {"model": ErrorDetail, "description": "The body is over 16 KiB"},
            415: {"model": ErrorDetail},
            500: {"model": ErrorDetail},
            503: {"model": ErrorDetail, "description": "The database stayed busy"},
        },
        openapi_extra={
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": CleanupRequest.model_json_schema()}},
            }
        },
    )
    async def post_cleanup(
        request: Request,
        caller: Caller = admin,
        dry_run: bool | None = Query(None, description="Legacy: preview only"),
        success_retention_days: float | None = Query(
            None, ge=0, le=MAX_RETENTION_DAYS, description="Legacy: days to keep successful jobs"
        ),
        failed_retention_hours: float | None = Query(
            None, ge=0, le=MAX_RETENTION_HOURS, description="Legacy: hours to keep failed jobs"
        ),
        wait: bool = Query(False, description="Real runs: answer when done, with the result"),
    ) -> Response:
        refusal = check_query(request, CLEANUP_QUERY)
        if refusal is not None:
            return refusal
        body = await read_body(request)
        if body is None:
            return answer(
                ErrorDetail(detail=f"the body is larger than {MAX_BODY_BYTES // 1024} KiB"), 413
            )
        parsed = parse_request(body, request.headers.get("content-type"))
        if isinstance(parsed, Response):
            return parsed
        given = parsed.model_fields_set
        for name, query_value, field in (
            ("dry_run", dry_run, "dry_run"),
            ("failed_retention_hours", failed_retention_hours, "failed_retention_hours"),
            ("success_retention_days", success_retention_days, "success_retention_hours"),
        ):
            if query_value is not None and field in given:
                return invalid_field(
                    "query", name, f"given both as a query parameter and as {field} in the body"
                )
        success_hours = parsed.success_retention_hours
        if success_retention_days is not None:
            success_hours = success_retention_days * 24
        failed_hours = parsed.failed_retention_hours
        if failed_retention_hours is not None:
            failed_hours = failed_retention_hours
        from eemt_cleanup.engine import RunOptions

        options = RunOptions(
            dry_run=parsed.dry_run if dry_run is None else dry_run,
            trigger="api",
            user=caller.user,
        )

        def status_url(run_id: str) -> str:
            return str(request.url_for(RUN_ROUTE, run_id=run_id))

        return await run_in_threadpool(
            api.cleanup, options, success_hours, failed_hours, wait, status_url
        )

    @router.get(
        "/api/cleanup/runs/{run_id}",
        name=RUN_ROUTE,
        response_model=RunStatus,
        summary="One run: live progress while it runs, its report when done",
        responses={**refused, 404: {"model": ErrorDetail}},
    )
    def get_run(run_id: str, caller: Caller = admin) -> Response:
        return api.run_status(run_id)

    @router.get(
        "/api/cleanup/runs",
        response_model=list[RunLogEntry],
        summary="Past runs, newest first (the run log, as `eemt-cleanup history`)",
        responses=refused,
    )
    def get_runs(caller: Caller = admin, limit: int = Query(20, ge=1, le=1000)) -> Response:
        return api.history(limit)

    @router.get(
        "/api/cleanup/status",
        response_model=StatusReport,
        summary="Disk used per status, what is due now, when the next job is due, the last run",
        responses=refused,
    )
    def get_status(
        caller: Caller = admin,
        measure: bool = Query(
            True, description="Measure the data on disk (false: counts and dates only)"
        ),
    ) -> Response:
        return api.status(measure)

    @router.get(
        "/api/cleanup/audit",
        response_model=list[AuditEntry],
        summary="Audit rows, newest first (as `eemt-cleanup audit`)",
        responses=refused,
    )
    def get_audit(
        caller: Caller = admin,
        job: str | None = Query(
            None, max_length=200, description="A job id, or its first characters"
        ),
        since: str | None = Query(
            None, max_length=64, description="7d, 12h, 30m, 2w, or an ISO date/time"
        ),
        action: str | None = Query(None, max_length=64, description="An audit action"),
        limit: int = Query(100, ge=1, le=10000),
    ) -> Response:
        return api.audit(job, since, action, limit)

    if metrics:

        @router.get(
            "/metrics",
            summary="Prometheus metrics (as `eemt-cleanup metrics`)",
            response_class=Response,
            responses={200: {"content": {"text/plain": {}}}, **refused},
        )
        def get_metrics(caller: Caller = admin) -> Response:
            return api.metrics()

    @router.get("/healthz", response_model=Health, summary="Liveness: no token needed")
    async def healthz() -> Response:
        return answer(Health(version=eemt_cleanup.__version__))

    if admin_page:
        from eemt_cleanup.http.page import add_admin_page

        add_admin_page(router, api)

    return router


def runs_of(router: APIRouter | FastAPI) -> RunManager:
    """The RunManager of a router made by :func:`create_router`, or of an app made by
    :func:`create_app` (e.g. to stop its runs when the host app shuts down:
    ``runs_of(router).stop_all(timeout=60)``)."""
    if isinstance(router, FastAPI):
        runs: RunManager = router.state.eemt_cleanup_runs
        return runs
    api: CleanupApi = router.eemt_cleanup  # type: ignore[attr-defined]
    return api.runs


def create_app(
    config: str | Path | None = None,
    *,
    tokens: TokenSet | Mapping[str, str] | None = None,
    token_file: str | Path | None = None,
    on_event: Callable[[Any], None] | None = None,
    stop_timeout: float | None = None,
    **overrides: Any,
) -> FastAPI:
    """A FastAPI app serving :func:`create_router` alone. On shutdown, the runs it started
    are asked to stop after their jobs in hand, and waited for (``stop_timeout`` seconds at
    most; None: as long as they take)."""
    router = create_router(
        config, tokens=tokens, token_file=token_file, on_event=on_event, **overrides
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(runs_of(router).stop_all, stop_timeout)

    app = FastAPI(
        title="eemt-cleanup",
        version=eemt_cleanup.__version__,
        description="Cleanup of EEMT web-interface job data past its retention.",
        lifespan=lifespan,
    )
    app.include_router(router)
    app.state.eemt_cleanup_runs = runs_of(router)
    return app


__all__ = [
    "MAX_BODY_BYTES",
    "AsciiJSONResponse",
    "Caller",
    "CleanupApi",
    "create_app",
    "create_router",
    "error_answer",
    "runs_of",
]
