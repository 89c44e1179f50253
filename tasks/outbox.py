"""Emitting events into the transactional outbox, inside the caller's own transaction.

    from tasks.outbox import emit
    with psycopg.connect(url) as conn:          # or a SQLAlchemy Connection
        with conn.transaction():
            ...                                 # the caller's own writes
            result = emit(conn, {"tenant_id": "acme", "event_type": "auth.signout", ...})
        # roll back, and the event is gone with the caller's writes

Nothing here commits: the event becomes visible to the drainer exactly when
the caller's transaction commits. Every event of a batch is validated before
anything is written, so a refused event leaves the transaction untouched.
Idempotent on ``event_id``, forever: a second emit of an id that is waiting in
the outbox or already chained is not stored again and is reported as a
duplicate. (Two transactions emitting the same new id at the same moment are
settled by the outbox's unique index; the drainer, too, never chains an id twice.)
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from compliance.events import PreparedEvent, Registry, prepare_event

__all__ = ["BatchResult", "EmitResult", "batch_insert", "batch_params", "emit", "emit_batch", "insert_prepared"]

_COLUMNS = "event_id, tenant_id, occurred_at, actor_type, actor_id, source, event_type, payload, redacted_fields"
# An id already in the outbox conflicts on its unique index; one already chained (and so perhaps purged from
# the outbox) is caught by compliance.event_chained(), or for a batch by one anti-join against
# compliance.events_chained(ids), asked once. Either way the row is not stored and the caller is told.
_INSERT_ONE = (
    f"INSERT INTO compliance.outbox ({_COLUMNS}) "
    "SELECT %s::uuid, %s, %s, %s, %s, %s, %s, %s, %s "
    "WHERE NOT compliance.event_chained(%s::uuid) ON CONFLICT DO NOTHING"
)
_NAMES = _COLUMNS.split(", ")


def batch_insert(condition: str = "TRUE", returning: str = "") -> str:
    """The batch insert of :func:`batch_params`' columns, storing rows only where ``condition`` holds (SQL
    that may name a row's columns as ``e.<column>``), ``returning`` what it says."""
    return (
        f"INSERT INTO compliance.outbox ({_COLUMNS}) "
        "SELECT * FROM unnest(%(event_id)s::uuid[], "
        + ", ".join(f"%({name})s::text[]" for name in _NAMES[1:])
        + f") AS e({_COLUMNS}) "
        f"WHERE ({condition}) AND NOT EXISTS (SELECT FROM compliance.events_chained(%(event_id)s::uuid[]) "
        f"AS c(event_id) WHERE c.event_id = e.event_id) ON CONFLICT DO NOTHING {returning}"
    ).rstrip()


_INSERT_MANY = batch_insert()


class _TextColumn(list[str]):
    """One column of a batch, sent to psycopg as a binary text[] (see _TextColumnDumper)."""


_TEXT_OID, _TEXT_ARRAY_OID = 25, 1009
_ARRAY_HEADER = struct.Struct("!iiIii")  # dimensions, has nulls, element type, length, lower bound


class _TextColumnDumper(Dumper):
    """A text[] in PostgreSQL's binary array format, built in one join. The server reads it without parsing
    each element's quoting (the JSON payloads are full of it), and it is cheaper to build than psycopg's
    general list dumper; the values are the same."""

    format = Format.BINARY
    oid = _TEXT_ARRAY_OID

    def dump(self, obj: list[str]) -> bytes:
        if not obj:
            return _ARRAY_HEADER.pack(0, 0, _TEXT_OID, 0, 0)[:12]
        parts = [_ARRAY_HEADER.pack(1, 0, _TEXT_OID, len(obj), 1)]
        for value in obj:
            data = value.encode()
            parts.append(len(data).to_bytes(4, "big"))
            parts.append(data)
        return b"".join(parts)


psycopg.adapters.register_dumper(_TextColumn, _TextColumnDumper)

_registry: Registry | None = None


def _default_registry() -> Registry:
    global _registry
    if _registry is None:
        _registry = Registry.default()
    return _registry


class EmitResult(NamedTuple):
    event_id: str
    stored: bool  # False: an event with this id is already in the outbox or chained

    @property
    def duplicate(self) -> bool:
        return not self.stored


class BatchResult(NamedTuple):
    event_ids: list[str]
    stored: int
    duplicates: int


def _row(e: PreparedEvent) -> tuple[str, ...]:
    return (
        e.event_id,
        e.tenant_id,
        e.occurred_at,
        e.actor_type,
        e.actor_id,
        e.source,
        e.event_type,
        e.payload_jcs,
        e.redacted_fields_jcs,
    )


def _execute(conn: Any, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> int:
    """Run one statement on a psycopg or SQLAlchemy connection without committing; the row count."""
    if hasattr(conn, "exec_driver_sql"):  # SQLAlchemy Connection
        return int(conn.exec_driver_sql(sql, params if isinstance(params, Mapping) else tuple(params)).rowcount)
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return int(cur.rowcount)


def emit(conn: Any, event: Mapping[str, Any], *, registry: Registry | None = None, ledger: bool = False) -> EmitResult:
    """Validate, redact and add one event to the outbox in ``conn``'s current transaction.

    ``ledger=True`` is the ledger's own way to write the tenant ``ledger:platform`` and the types
    ``admin.*`` (refused otherwise, at once). The outbox records the role that inserted the row, and the
    drain chains such an event only when that role is the ledger's (the schema owner or the exporter);
    from any other role it is set aside in compliance.outbox_poison, never chained."""
    prepared = prepare_event(event, registry or _default_registry(), ledger)
    row = _row(prepared)
    stored = _execute(conn, _INSERT_ONE, (*row, row[0])) == 1
    return EmitResult(prepared.event_id, stored)


def emit_batch(
    conn: Any, events: Iterable[Mapping[str, Any]], *, registry: Registry | None = None, ledger: bool = False
) -> BatchResult:
    """Validate every event first (the first refusal raises, nothing written), then add them in one statement.
    ``ledger`` as for :func:`emit`."""
    reg = registry or _default_registry()
    prepared = [prepare_event(e, reg, ledger) for e in events]
    return insert_prepared(conn, prepared)


def insert_prepared(conn: Any, prepared: Sequence[PreparedEvent]) -> BatchResult:
    if not prepared:
        return BatchResult([], 0, 0)
    stored = _execute(conn, _INSERT_MANY, batch_params(prepared))
    return BatchResult([e.event_id for e in prepared], stored, len(prepared) - stored)


def batch_params(prepared: Sequence[PreparedEvent]) -> dict[str, Any]:
    """The parameters of :func:`batch_insert`: one array per column, named by it."""
    return {name: _TextColumn(col) for name, col in zip(_NAMES, zip(*(_row(e) for e in prepared)))}
