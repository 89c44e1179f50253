"""The read side (`compliance events list/show`, the events-query flow), as compliance_reader.

``tenant=None`` means a cross-tenant read; callers decide who may make one
(only operators on COMPLIANCE_OPERATOR_EMAILS).
"""

from __future__ import annotations

from typing import Any

from compliance.settings import Settings
from compliance.timefmt import parse_utc_text, utc_text
from tasks.db import connect

__all__ = ["list_events", "show_event"]

_ANCHOR = """
(SELECT 'ANCHORED ' || r.cadence_id FROM compliance.anchor_ranges r
  WHERE r.tenant_id = e.tenant_id AND r.first_seq <= e.seq AND r.last_seq >= e.seq)
"""


def list_events(
    settings: Settings,
    *,
    tenant: str | None,
    since: str | None = None,
    until: str | None = None,
    event_types: list[str] | None = None,
    actor_types: list[str] | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest ``limit`` events matching, newest first."""
    clauses, params = [], []
    if tenant:
        clauses.append("e.tenant_id = %s")
        params.append(tenant)
    if since:
        clauses.append("e.occurred_at >= %s")
        params.append(parse_utc_text(since))
    if until:
        clauses.append("e.occurred_at < %s")
        params.append(parse_utc_text(until))
    if event_types:
        clauses.append("e.event_type = ANY(%s)")
        params.append(event_types)
    if actor_types:
        clauses.append("e.actor_type = ANY(%s)")
        params.append(actor_types)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    sql = (
        "SELECT e.tenant_id, e.seq, e.event_id::text, e.occurred_at, e.recorded_at, e.actor_type, e.actor_id, "
        f"e.source, e.event_type, e.event_hash, coalesce({_ANCHOR}, 'PENDING') "
        f"FROM compliance.events e {where} ORDER BY e.recorded_at DESC, e.tenant_id, e.seq DESC LIMIT %s"
    )
    with connect(settings, "compliance_reader", autocommit=True) as conn:
        rows = conn.execute(sql, [*params, max(1, min(limit, 10_000))]).fetchall()
    return [
        {
            "tenant_id": r[0],
            "seq": r[1],
            "event_id": r[2],
            "occurred_at": utc_text(r[3]),
            "recorded_at": utc_text(r[4]),
            "actor_type": r[5],
            "actor_id": r[6],
            "source": r[7],
            "event_type": r[8],
            "event_hash": bytes(r[9]).hex(),
            "anchor": r[10],
        }
        for r in rows
    ]


def show_event(settings: Settings, event_id: str, *, tenant: str | None) -> dict[str, Any] | None:
    """One event's fields, chain position and anchor status; None when absent (or another tenant's)."""
    sql = (
        "SELECT e.tenant_id, e.seq, e.event_id::text, e.occurred_at, e.recorded_at, e.actor_type, e.actor_id, "
        f"e.source, e.event_type, e.payload, e.redacted_fields, e.prev_hash, e.event_hash, coalesce({_ANCHOR}, 'PENDING') "
        "FROM compliance.events e WHERE e.event_id = %s::uuid" + (" AND e.tenant_id = %s" if tenant else "")
    )
    try:
        params: list[Any] = [event_id.lower()] + ([tenant] if tenant else [])
        with connect(settings, "compliance_reader", autocommit=True) as conn:
            r = conn.execute(sql, params).fetchone()
            if r is None:
                pending = conn.execute(
                    "SELECT tenant_id, NULL FROM compliance.outbox_pending WHERE event_id = %s::uuid"
                    + (" AND tenant_id = %s" if tenant else "")
                    + " UNION ALL SELECT tenant_id, error FROM compliance.outbox_poison WHERE event_id = %s::uuid"
                    + (" AND tenant_id = %s" if tenant else ""),
                    params + params,
                ).fetchone()
                if pending is not None:
                    status = f"POISONED: {pending[1]}" if pending[1] else "IN OUTBOX (not chained yet)"
                    return {
                        "event_id": event_id.lower(),
                        "tenant_id": pending[0],
                        "status": status,
                        "anchor": "PENDING",
                    }
                return None
    except Exception as exc:  # a malformed id is "not found", not a crash
        if "invalid input syntax for type uuid" in str(exc):
            return None
        raise
    detail = {
        "tenant_id": r[0],
        "seq": r[1],
        "event_id": r[2],
        "occurred_at": utc_text(r[3]),
        "recorded_at": utc_text(r[4]),
        "actor_type": r[5],
        "actor_id": r[6],
        "source": r[7],
        "event_type": r[8],
        "payload": r[9],
        "redacted_fields": r[10],
        "prev_hash": bytes(r[11]).hex(),
        "event_hash": bytes(r[12]).hex(),
        "anchor": r[13],
    }
    if r[13] != "PENDING":
        detail.update(_audit_path(settings, r[0], r[1]))
    return detail


def _audit_path(settings: Settings, tenant: str, seq: int) -> dict[str, Any]:
    """The event's index in its anchored range and its audit path to that range's events_root."""
    from ledger_verify.merkle import audit_path

    from tasks.anchoring import range_leaves

    with connect(settings, "compliance_reader", autocommit=True) as conn:
        first, last = conn.execute(
            "SELECT first_seq, last_seq FROM compliance.anchor_ranges WHERE tenant_id = %s AND first_seq <= %s "
            "AND last_seq >= %s",
            (tenant, seq, seq),
        ).fetchone()  # type: ignore[misc]
        leaves = range_leaves(conn, tenant, first, last)
    return {"event_index": seq - first, "event_path": [p.hex() for p in audit_path(seq - first, leaves)]}
