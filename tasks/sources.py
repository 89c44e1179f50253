"""The ingest service's sources and their API tokens: add, rotate, revoke, list.

    token = add_source(settings, "billing-worker", Scope(frozenset({"acme"}), None), by="ops@example.com")

A token is shown once, when it is made, and stored only as its SHA-256. Each
change is recorded in the ledger itself, in the same transaction as the
change: an ``admin.source_changed`` event for tenant ``ledger:platform``
(never the token, nor its digest). A revoked token is refused by the very next
request: the service reads the table on every request, it keeps no cache.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg

from compliance.ingest import Scope, check_source_name, new_token, token_digest
from compliance.settings import Settings
from compliance.timefmt import utc_text
from tasks.db import connect
from tasks.outbox import emit

__all__ = [
    "LEDGER_TENANT",
    "Source",
    "SourceError",
    "add_source",
    "list_sources",
    "revoke_source",
    "rotate_source",
]

LEDGER_TENANT = "ledger:platform"
CHANGE_EVENT_TYPE = "admin.source_changed"


class SourceError(ValueError):
    """A source change that cannot be made; the message says what to do instead."""


class Source(NamedTuple):
    name: str
    tenants: list[str] | None  # None: every tenant
    event_types: list[str] | None  # None: every registered type
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None


def default_actor() -> str:
    """Who made a change from this shell (recorded with it)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _record_change(conn: psycopg.Connection, name: str, change: str, scope: Scope | None, by: str) -> None:
    """The change as a ledger event, in ``conn``'s transaction (rolled back with the change)."""
    payload: dict[str, Any] = {"source": name, "change": change, "by": by}
    if scope is not None:
        payload["tenants"] = "*" if scope.tenants is None else sorted(scope.tenants)
        payload["eventTypes"] = "*" if scope.event_types is None else sorted(scope.event_types)
    emit(
        conn,
        {
            "tenant_id": LEDGER_TENANT,
            "event_type": CHANGE_EVENT_TYPE,
            "actor_type": "system",
            "actor_id": by[:256],
            "source": "compliance-cli",
            "occurred_at": utc_text(datetime.now(UTC)),
            "payload": payload,
        },
        ledger=True,
    )


def add_source(settings: Settings, name: str, scope: Scope, *, by: str | None = None) -> str:
    """Create source ``name`` with ``scope``; returns its token (shown once, never stored)."""
    check_source_name(name)
    token = new_token()
    with connect(settings, None) as conn, conn.transaction():
        inserted = conn.execute(
            "INSERT INTO compliance.ingest_sources (name, token_sha256, tenants, event_types) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
            (
                name,
                token_digest(token),
                None if scope.tenants is None else sorted(scope.tenants),
                None if scope.event_types is None else sorted(scope.event_types),
            ),
        ).rowcount
        if inserted != 1:
            raise SourceError(f"a source named {name!r} exists; `compliance sources rotate {name}` gives a new token")
        _record_change(conn, name, "added", scope, by or default_actor())
    return token


def rotate_source(settings: Settings, name: str, *, by: str | None = None) -> str:
    """A new token for ``name``; the old one is refused from the moment this returns."""
    token = new_token()
    with connect(settings, None) as conn, conn.transaction():
        row = conn.execute(
            "UPDATE compliance.ingest_sources SET token_sha256 = %s, rotated_at = clock_timestamp() "
            "WHERE name = %s AND revoked_at IS NULL RETURNING tenants, event_types",
            (token_digest(token), name),
        ).fetchone()
        if row is None:
            raise SourceError(_missing(conn, name))
        scope = Scope(_set(row[0]), _set(row[1]))
        _record_change(conn, name, "rotated", scope, by or default_actor())
    return token


def revoke_source(settings: Settings, name: str, *, by: str | None = None) -> None:
    """Refuse ``name``'s token from now on (the source stays listed, as revoked)."""
    with connect(settings, None) as conn, conn.transaction():
        row = conn.execute(
            "UPDATE compliance.ingest_sources SET revoked_at = clock_timestamp() "
            "WHERE name = %s AND revoked_at IS NULL RETURNING tenants, event_types",
            (name,),
        ).fetchone()
        if row is None:
            raise SourceError(_missing(conn, name))
        _record_change(conn, name, "revoked", Scope(_set(row[0]), _set(row[1])), by or default_actor())


def list_sources(settings: Settings) -> list[Source]:
    with connect(settings, None, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name, tenants, event_types, created_at, rotated_at, revoked_at "
            "FROM compliance.ingest_sources ORDER BY name"
        ).fetchall()
    return [Source(*r) for r in rows]


def _set(values: list[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _missing(conn: psycopg.Connection, name: str) -> str:
    revoked = conn.execute(
        "SELECT revoked_at IS NOT NULL FROM compliance.ingest_sources WHERE name = %s", (name,)
    ).fetchone()
    if revoked is None:
        return f"no source named {name!r}; `compliance sources list` shows them"
    return f"source {name!r} is revoked; add a new source with its own name"
