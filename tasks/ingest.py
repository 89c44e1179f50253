"""The ingest service's I/O: its writer connections, the token look-up, storing a batch, the outbox's depth.

    pool = WriterPool(settings, size=8)
    outcome = accept(pool, token, body, content_type, registry)   # raises the typed refusals below

:func:`accept` validates the batch, then reads the token's source and stores the
batch as the writer role with the outbox's own batch insert
(``tasks.outbox.batch_insert``), in one statement and its own transaction: a
batch is stored whole or not at all, only under a live token whose scope holds
it, and an ``event_id`` already stored is not stored again. The caller is
answered only after the commit, so what it was told is stored survives a crash.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import psycopg
from psycopg.pq import TransactionStatus

from compliance.events import PreparedEvent, Registry
from compliance.ingest import BatchForbidden, Scope, out_of_scope, parse_body, prepare_batch, token_digest
from compliance.settings import Settings
from tasks.db import connect
from tasks.drain import pending_at_least
from tasks.outbox import batch_insert, batch_params

__all__ = [
    "Accepted",
    "DatabaseUnavailable",
    "DepthMonitor",
    "Grant",
    "TokenRefused",
    "WriterPool",
    "accept",
    "find_source",
    "store_batch",
]


class Grant(NamedTuple):
    source: str
    scope: Scope
    revoked: bool


class Accepted(NamedTuple):
    source: str
    event_ids: list[str]
    stored: int
    duplicates: int


class TokenRefused(PermissionError):
    """The bearer token is unknown or revoked (HTTP 401)."""


class DatabaseUnavailable(ConnectionError):
    """PostgreSQL could not be reached, or went away during the transaction; nothing was acknowledged."""


# A connection lost mid-request, or one that could not be opened: the database is down (or restarting).
_DOWN = (psycopg.OperationalError, psycopg.InterfaceError)


class WriterPool:
    """Up to ``size`` connections as the writer role, opened when first needed and dropped when broken."""

    def __init__(self, settings: Settings, size: int = 8, wait_seconds: float = 10.0) -> None:
        self.settings = settings
        self.wait_seconds = wait_seconds
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        if not self._slots.acquire(timeout=self.wait_seconds):
            raise DatabaseUnavailable(f"no database connection free within {self.wait_seconds:.0f} s")
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                try:
                    # autocommit: the batch is one INSERT, its own transaction, committed as it returns
                    conn = connect(self.settings, "compliance_writer", autocommit=True)
                except _DOWN as exc:
                    raise DatabaseUnavailable(f"cannot connect: {exc}") from exc
            try:
                yield conn
            finally:
                healthy = not conn.closed and not conn.broken
                if healthy and conn.info.transaction_status == TransactionStatus.IDLE:
                    self._idle.put(conn)
                else:
                    conn.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def find_source(conn: psycopg.Connection, token: str) -> Grant | None:
    row = conn.execute("SELECT * FROM compliance.ingest_source(%s)", (token_digest(token),)).fetchone()
    return None if row is None else _grant(*row)


def _grant(name: str, tenants: list[str] | None, event_types: list[str] | None, revoked: bool) -> Grant:
    scope = Scope(
        None if tenants is None else frozenset(tenants), None if event_types is None else frozenset(event_types)
    )
    return Grant(name, scope, bool(revoked))


# The token's source and the batch in one statement (one round trip, one snapshot): the rows are stored only
# when the token is known, not revoked, and its scope holds every tenant and event type of the batch (the
# containment Scope.refusal checks, event by event, to name the ones outside it).
_STORE = (
    "WITH s AS (SELECT * FROM compliance.ingest_source(%(token_sha256)s)), "
    "allowed AS (SELECT FROM s WHERE NOT s.revoked "
    "AND (s.tenants IS NULL OR s.tenants @> %(tenants)s::text[]) "
    "AND (s.event_types IS NULL OR s.event_types @> %(event_types)s::text[])), "
    f"stored AS ({batch_insert('EXISTS (SELECT FROM allowed)', 'RETURNING 1')}) "
    "SELECT s.name, s.tenants, s.event_types, s.revoked, EXISTS (SELECT FROM allowed), "
    "(SELECT count(*) FROM stored) FROM s"
)


def store_batch(conn: psycopg.Connection, token: str, events: Sequence[PreparedEvent]) -> tuple[Any, ...] | None:
    """Store prepared ``events`` under ``token`` in one statement (its own transaction on an autocommit
    connection): the token's (name, tenants, event_types, revoked, allowed, stored count), or None for an
    unknown token. Nothing is stored unless the token is live and its scope holds the whole batch."""
    params = batch_params(events)
    params["token_sha256"] = token_digest(token)
    params["tenants"] = sorted({e.tenant_id for e in events})
    params["event_types"] = sorted({e.event_type for e in events})
    return conn.execute(_STORE, params).fetchone()


def accept(pool: WriterPool, token: str, body: bytes, content_type: str | None, registry: Registry) -> Accepted:
    """Authenticate, parse, validate and store one request's events; every refusal raises its typed error
    (TokenRefused, compliance.ingest's TooLarge, BodyRefused, BatchForbidden, BatchRefused) with nothing
    stored, and DatabaseUnavailable when the outcome cannot be promised. A bad token is refused before
    anything is said about the body."""
    events = None
    for attempt in (1, 2):
        try:
            with pool.connection() as conn:
                if events is None:
                    # ids are fixed here, so a second attempt after an unclear commit stores nothing twice
                    try:
                        events = prepare_batch(parse_body(body, content_type), registry, Scope(None, None))
                    except ValueError:
                        _refuse_as_the_token_sees_it(conn, token, body, content_type, registry)
                        raise
                row = store_batch(conn, token, events)
            if row is None or row[3]:
                raise TokenRefused("this token was revoked" if row else "unknown token")
            grant = _grant(*row[:4])
            allowed, stored = row[4], int(row[5])
            if not allowed:
                problems = out_of_scope(events, grant.scope)
                if not problems:
                    raise AssertionError("the database refused a scope that the service allows")
                refusal = BatchForbidden(problems)
                refusal.source = grant.source  # type: ignore[attr-defined]
                raise refusal
            return Accepted(grant.source, [e.event_id for e in events], stored, len(events) - stored)
        except _DOWN as exc:
            # An idle connection may have outlived a database restart: one more try on a fresh one.
            if attempt == 2:
                raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc
    raise AssertionError("unreachable")


def _refuse_as_the_token_sees_it(
    conn: psycopg.Connection, token: str, body: bytes, content_type: str | None, registry: Registry
) -> None:
    """A body refused: raise TokenRefused for a bad token, else the refusal under the token's scope (an
    event outside it is named before a refused one), marked with the source for the access log."""
    grant = find_source(conn, token)
    if grant is None or grant.revoked:
        raise TokenRefused("this token was revoked" if grant else "unknown token")
    try:
        prepare_batch(parse_body(body, content_type), registry, grant.scope)
    except ValueError as exc:
        exc.source = grant.source  # type: ignore[attr-defined]
        raise


class DepthMonitor(threading.Thread):
    """Reads every ``interval`` seconds whether the outbox holds ``limit`` or more undrained events, so that
    a request costs no count; ``deep`` is the last answer (False while the database cannot be read)."""

    def __init__(self, settings: Settings, limit: int, interval: float) -> None:
        super().__init__(name="ingest-outbox-depth", daemon=True)
        self.settings, self.limit, self.interval = settings, limit, interval
        self.deep = False
        self._halt = threading.Event()  # not _stop: threading.Thread has a method of that name
        self._conn: psycopg.Connection | None = None

    def check(self) -> bool:
        """Read the depth now (the service does it once before it answers its first request)."""
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = connect(self.settings, "compliance_reader", autocommit=True)
            self.deep = pending_at_least(self._conn, self.limit)
        except psycopg.Error:
            self.deep = False  # writes answer 503 on their own while the database is down
            if self._conn is not None:
                self._conn.close()
            self._conn = None
        return self.deep

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.check()
        if self._conn is not None:
            self._conn.close()

    def stop(self) -> None:
        self._halt.set()
