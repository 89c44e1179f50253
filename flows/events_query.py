"""events-query: the read side in the Prefect UI (the same rules as `compliance events list/show`).

Runbook paragraph: started from the UI with a form that carries the
operator's address and one-time code, checked when the run starts, before
anything is read; only tenants the operator is granted are read (an empty
tenant needs a cross-tenant grant, and that read is audited). With an event
id, or a tenant and a seq, it leaves a table artifact of that one event: its
fields, chain position (its and its predecessor's hashes), anchor and audit
path; "previous" steps back one event along the chain, and the payload is
shown only when asked for (that view is audited). Otherwise it leaves a table
artifact of the newest 500 matching events, by default of the last 7 days.
Every value shown is escaped and control characters are made visible.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from compliance.display import safe_cell, safe_row
from compliance.exports import EXPORT_COLUMNS
from tasks.config import load_settings
from flows.forms import (
    ActorType,
    EventType,
    actor_types_field,
    code_field,
    event_types_field,
    form_field,
    operator_field,
    prefect_user,
    window_field,
    window_text,
)
from tasks.reads import list_events, show_event

# The export's columns (the payload last, shown only on request), then what only a detail view has.
_DETAIL_FIELDS = (
    *(c for c in EXPORT_COLUMNS if c not in ("payload", "cadence_id", "event_index", "event_path")),
    "anchor",
    "event_index",
    "event_path",
    "status",
    "payload",
)


@flow(
    name="events-query",
    description="Read the ledger as an operator: list the events of a window (by default the last 7 days), or "
    "show one event (by id, or tenant and seq) with its chain position and anchor, stepping back along the chain "
    "with 'Previous'. Give your operator address and its current one-time code.",
)
def events_query(
    tenant_id: str = form_field(
        "",
        "Tenant",
        "The tenant to read. Leave empty for every tenant: that needs a cross-tenant grant.",
    ),
    since: str = window_field("Since", "List events that occurred at or after this (UTC). Empty: 7 days before until."),
    until: str = window_field("Until", "List events that occurred before this (UTC). Empty: now."),
    event_types: list[EventType] = event_types_field(),
    actor_types: list[ActorType] = actor_types_field(),
    event_id: str = form_field(
        "",
        "Show one event: id",
        "Show this one event in detail instead of a list (copy an id from a list).",
    ),
    seq: int = form_field(
        0,
        "Show one event: seq",
        "Or show the event at this position of the tenant's chain (with Tenant); 0 means a list.",
        minimum=0,
    ),
    previous: bool = form_field(
        False,
        "Show one event: previous",
        "Show the event before the chosen one in its tenant's chain instead (walks the chain back).",
    ),
    show_payload: bool = form_field(
        False,
        "Show one event: payload",
        "Also show the chosen event's payload; each such view is recorded in the ledger.",
    ),
    operator: str = operator_field(),
    code: str = code_field(),
) -> dict[str, Any]:
    """List matching events (newest 500) or show one event's chain position and anchor."""
    settings = load_settings()
    tenant = tenant_id.strip() or None
    user = prefect_user()
    if event_id.strip() or seq:
        detail = show_event(
            settings,
            operator=operator,
            code=code,
            event_id=event_id.strip() or None,
            tenant=tenant,
            seq=seq or None,
            prev=previous,
            payload=show_payload,
            prefect_user=user,
        )
        rows = [{"field": k, "value": safe_cell(detail[k])} for k in _DETAIL_FIELDS if k in detail]
        if not detail.get("found"):
            rows = [{"field": "result", "value": safe_cell(detail.get("reason", "not found"))}]
        create_table_artifact(key="event-detail", table=rows, description="one event, its chain position and anchor")
        return {"found": bool(detail.get("found")), "anchor": detail.get("anchor"), "seq": detail.get("seq")}
    listed = list_events(
        settings,
        operator=operator,
        code=code,
        tenant=tenant,
        since=window_text(since, "since"),
        until=window_text(until, "until"),
        event_types=list(event_types),
        actor_types=list(actor_types),
        limit=500,
        prefect_user=user,
    )
    rows = [safe_row(r) for r in listed["events"]]
    create_table_artifact(
        key="events-query",
        table=rows or [{"result": "no matching events"}],
        description=f"{len(rows)} newest matching events from {listed['since']} to {listed['until']}",
    )
    return {"events": len(rows), "since": listed["since"], "until": listed["until"]}
