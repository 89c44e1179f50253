"""The HTTP ingest service: ``POST /v1/events`` for runtimes that have no database login.

    python -m ingest                      # 127.0.0.1:8787, or COMPLIANCE_INGEST_HOST / _PORT
    curl -X POST "$COMPLIANCE_INGEST_URL/v1/events" -H "Authorization: Bearer $COMPLIANCE_INGEST_TOKEN" \\
         -H 'Content-Type: application/json' -d '{"tenant_id": "acme", ...}'

Answers (problems as RFC 9457 ``application/problem+json``):

- ``202`` ``{"event_ids": [...], "stored": n, "duplicates": m}``: committed before the answer. A retry with
  the same ``event_id``s returns the same ids and stores nothing twice (``duplicates`` counts them).
- ``401`` a missing, unknown or revoked token; ``403`` an event outside the token's tenants or types
  (each listed by index and field); ``413`` over :data:`MAX_BODY_BYTES` or :data:`MAX_BATCH_EVENTS`;
  ``422`` every refused event by index, field and reason, nothing of the batch stored;
  ``429`` with ``Retry-After`` while the outbox is deeper than its critical depth (back off, nothing lost);
  ``503`` with ``Retry-After`` while the database cannot be reached (nothing acknowledged).
- ``GET /healthz``, ``GET /openapi.json``, ``GET /docs``.

Access logs are JSON lines on the ``compliance.ingest.access`` logger: method, path, status, duration,
event count and source name; never a body, a payload or a token.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from compliance.events import ACTOR_TYPES, MAX_PAYLOAD_BYTES, Registry
from compliance.ingest import (
    MAX_BATCH_EVENTS,
    MAX_BODY_BYTES,
    BatchForbidden,
    BatchRefused,
    BodyRefused,
    EventProblem,
    TooLarge,
    problem,
)
from compliance.settings import Settings, SettingsError
from tasks.db import connect
from tasks.ingest import DatabaseUnavailable, DepthMonitor, TokenRefused, WriterPool, accept

__all__ = ["IngestConfig", "create_app"]

access_log = logging.getLogger("compliance.ingest.access")
OUTBOX_CRITICAL_DEPTH = 100_000  # ten times the watchdog's outbox_depth warning: the drain is far behind


@dataclass(frozen=True)
class IngestConfig:
    max_outbox_depth: int = OUTBOX_CRITICAL_DEPTH
    depth_check_seconds: float = 1.0
    connections: int = 8
    retry_after_429: int = 2
    retry_after_503: int = 1
    workers: int = 1  # processes serving the port (python -m ingest); each has its own connections

    @classmethod
    def from_env(cls, env: Any = None) -> IngestConfig:
        env = os.environ if env is None else env

        def number(name: str, default: float, kind: type = int) -> Any:
            raw = env.get(name)
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise SettingsError(f"{name}={raw!r} is not a number") from None
            if value <= 0:
                raise SettingsError(f"{name} must be greater than 0")
            return value

        return cls(
            max_outbox_depth=number("COMPLIANCE_INGEST_MAX_OUTBOX_DEPTH", OUTBOX_CRITICAL_DEPTH),
            depth_check_seconds=number("COMPLIANCE_INGEST_DEPTH_CHECK_SECONDS", 1.0, float),
            connections=number("COMPLIANCE_INGEST_CONNECTIONS", 8),
            workers=number("COMPLIANCE_INGEST_WORKERS", default_workers()),
        )


def default_workers() -> int:
    """One serving process per core (a process validates and encodes on one core at a time), at most four:
    each opens its own COMPLIANCE_INGEST_CONNECTIONS writer connections and its own depth check."""
    return max(1, min(os.cpu_count() or 1, 4))


_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["tenant_id", "occurred_at", "actor_type", "actor_id", "source", "event_type"],
    "additionalProperties": False,
    "properties": {
        "event_id": {
            "type": "string",
            "format": "uuid",
            "description": "UUID v7; assigned when absent. Send one so that a retry is recognised and stored once.",
        },
        "tenant_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
        "occurred_at": {"type": "string", "format": "date-time", "description": "RFC 3339 with offset"},
        "actor_type": {"type": "string", "enum": sorted(ACTOR_TYPES)},
        "actor_id": {"type": "string", "minLength": 1, "maxLength": 256},
        "source": {"type": "string", "minLength": 1, "maxLength": 128},
        "event_type": {"type": "string", "description": "a registered type, e.g. auth.signin.success"},
        "payload": {
            "type": "object",
            "description": f"at most {MAX_PAYLOAD_BYTES} bytes serialized; keys "
            "outside the type's allow-list are dropped, credential-shaped strings scrubbed",
        },
    },
}
_PROBLEM = {
    "content": {
        "application/problem+json": {
            "schema": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "index": {"type": "integer"},
                                "field": {"type": "string"},
                                "reason": {"type": "string"},
                            },
                        },
                    },
                },
            }
        }
    }
}
_OPENAPI_POST: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": f"One event, a JSON array of events, or NDJSON (one event a line); at most "
        f"{MAX_BATCH_EVENTS} events and {MAX_BODY_BYTES} bytes.",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [_EVENT_SCHEMA, {"type": "array", "items": _EVENT_SCHEMA, "maxItems": MAX_BATCH_EVENTS}]
                }
            },
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    },
    "responses": {
        "202": {
            "description": "stored (committed)",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "event_ids": {"type": "array", "items": {"type": "string"}},
                            "stored": {"type": "integer"},
                            "duplicates": {"type": "integer"},
                        },
                    }
                }
            },
        },
        "401": {"description": "missing, unknown or revoked token", **_PROBLEM},
        "403": {"description": "an event outside the token's tenants or event types", **_PROBLEM},
        "413": {"description": "over the body size or event count limit", **_PROBLEM},
        "422": {"description": "events refused (each by index, field, reason); nothing stored", **_PROBLEM},
        "429": {"description": "the outbox is too deep: retry after Retry-After seconds", **_PROBLEM},
        "503": {"description": "the database is unavailable: retry after Retry-After seconds", **_PROBLEM},
    },
}


def _problem(
    status: int,
    kind: str,
    title: str,
    detail: str,
    errors: list[EventProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        problem(status, kind, title, detail, errors or ()),
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def create_app(settings: Settings, config: IngestConfig | None = None, registry: Registry | None = None) -> FastAPI:
    """The service for ``settings``' database. Connections and the depth monitor live as long as the app."""
    config = config or IngestConfig()
    registry = registry or Registry.default()
    pool = WriterPool(settings, size=config.connections)
    monitor = DepthMonitor(settings, config.max_outbox_depth, config.depth_check_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(monitor.check)
        monitor.start()
        try:
            yield
        finally:
            monitor.stop()
            pool.close()

    app = FastAPI(
        title="compliance ledger ingest",
        version="1",
        description="Emit audit events over HTTP with a per-source bearer token. Each event is validated, "
        "redacted and refused exactly as on every other write path of the ledger.",
        lifespan=lifespan,
    )

    app.add_middleware(AccessLog)

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _problem(
            exc.status_code,
            "http",
            str(exc.detail),
            f"{request.method} {request.url.path}: {exc.detail}; see /docs",
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def request_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [EventProblem(0, ".".join(str(x) for x in e.get("loc", ())), str(e.get("msg"))) for e in exc.errors()]
        return _problem(422, "request", "Request refused", "the request does not match the API; see /docs", errors)

    @app.get("/healthz", summary="liveness and database reachability")
    async def healthz() -> JSONResponse:
        def probe() -> bool:
            try:
                with pool.connection() as conn:
                    conn.execute("SELECT 1")
                return True
            except (DatabaseUnavailable, psycopg.Error):
                return False

        ok = await run_in_threadpool(probe)
        body = {
            "status": "ok" if ok else "unavailable",
            "database": "ok" if ok else "unreachable",
            "outbox_deep": monitor.deep,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.post("/v1/events", status_code=202, summary="emit one event or a batch", openapi_extra=_OPENAPI_POST)
    async def post_events(request: Request) -> JSONResponse:
        token = _bearer(request.headers.get("authorization"))
        if token is None:
            return _problem(
                401,
                "unauthorized",
                "Token required",
                "send 'Authorization: Bearer <source token>'; `compliance sources add` makes one",
                headers={"WWW-Authenticate": 'Bearer realm="ingest"'},
            )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > _DISCARD_LIMIT:
            return _problem(
                413,
                "too-large",
                "Body too large",
                f"the body is {declared} bytes; the limit is {MAX_BODY_BYTES}: send smaller batches",
            )
        body = await _read_capped(request)
        if body is None:
            return _problem(
                413, "too-large", "Body too large", f"the body is over {MAX_BODY_BYTES} bytes: send smaller batches"
            )
        if monitor.deep:
            return _problem(
                429,
                "backpressure",
                "Outbox too deep",
                f"more than {config.max_outbox_depth} events wait to be chained; retry later, nothing was stored",
                headers={"Retry-After": str(config.retry_after_429)},
            )
        try:
            outcome = await run_in_threadpool(accept, pool, token, body, request.headers.get("content-type"), registry)
        except ValueError as exc:
            request.state.source = getattr(exc, "source", None)
            return _refusal(exc)
        except TokenRefused as exc:
            return _problem(
                401,
                "unauthorized",
                "Token refused",
                f"{exc}; ask for a new token (`compliance sources rotate NAME`)",
                headers={"WWW-Authenticate": 'Bearer realm="ingest", error="invalid_token"'},
            )
        except DatabaseUnavailable:
            return _problem(
                503,
                "unavailable",
                "Database unavailable",
                "the ledger's database cannot be reached; "
                "nothing of this request was acknowledged: retry later with the same event_ids",
                headers={"Retry-After": str(config.retry_after_503)},
            )
        request.state.source = outcome.source
        request.state.events = len(outcome.event_ids)
        return JSONResponse(
            {"event_ids": outcome.event_ids, "stored": outcome.stored, "duplicates": outcome.duplicates},
            status_code=202,
        )

    return app


class AccessLog:
    """One JSON line per request (ASGI middleware): method, path, status, duration, the source's name and
    its event count; never the query string, a header, a body or a token."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not access_log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})  # request.state in the endpoint writes here
        status = 500

        async def send_and_note(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            client = scope.get("client")
            access_log.info(
                json.dumps(
                    {
                        "request_id": uuid.uuid4().hex[:16],
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_s": round(time.perf_counter() - started, 6),
                        "events": state.get("events"),
                        "source": state.get("source"),
                        "client": client[0] if client else None,
                    }
                )
            )


def _refusal(exc: ValueError) -> JSONResponse:
    """The problem document of a refused request (nothing of it was stored)."""
    if isinstance(exc, TooLarge):
        return _problem(413, "too-large", "Batch too large", str(exc))
    if isinstance(exc, BatchForbidden):
        return _problem(
            403,
            "out-of-scope",
            "Events outside this token's scope",
            f"{len(exc.problems)} event(s) name a tenant or event type this source may not write; nothing was stored",
            exc.problems,
        )
    if isinstance(exc, (BatchRefused, BodyRefused)):
        return _problem(
            422,
            "events-refused",
            "Events refused",
            f"{len(exc.problems)} event(s) refused; "
            "nothing of this request was stored: correct them and send the whole batch again",
            exc.problems,
        )
    raise exc


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


# A body over the limit is still read (and dropped) up to this size, so that the client, still sending, reads
# a clean 413 instead of a reset connection; beyond it the connection is cut.
_DISCARD_LIMIT = 4 * MAX_BODY_BYTES


async def _read_capped(request: Request) -> bytes | None:
    """The body, or None when it is over the limit (whatever Content-Length said)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _DISCARD_LIMIT:
            return None
        if size <= MAX_BODY_BYTES:
            chunks.append(chunk)
    return None if size > MAX_BODY_BYTES else b"".join(chunks)


def check_database(settings: Settings) -> None:
    """Fail at start, naming the setting, when the database or its migration is missing."""
    with connect(settings, "compliance_writer", autocommit=True) as conn:
        conn.execute("SELECT 1 FROM compliance.ingest_source(%s)", (b"\0" * 32,))
