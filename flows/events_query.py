"""events-query: the read side in the Prefect UI (the same rules as `compliance events list/show`).

Runbook paragraph: started from the UI with a form. Given an event_id it
leaves a markdown artifact of that event: metadata, its chain position (its
and its predecessor's hashes), its anchor and audit path. Otherwise it leaves a
table artifact of the newest 500 events matching a tenant (or, for an operator
on the allow-list, every tenant), a window, event types and actor types.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, Field

from compliance.settings import Settings
from tasks.reads import list_events, show_event


class EventsQuery(BaseModel):
    """Which events to show."""

    tenant_id: str | None = Field(
        default=None, description="The tenant to read. Leave empty for every tenant (operators only: fill in operator)."
    )
    operator: str | None = Field(
        default=None,
        description="Your e-mail, if you are an operator reading across "
        "tenants; it must be on COMPLIANCE_OPERATOR_EMAILS.",
    )
    since: str | None = Field(default=None, description="Only events that occurred at or after (RFC 3339)")
    until: str | None = Field(default=None, description="Only events that occurred before (RFC 3339)")
    event_types: list[str] | None = Field(default=None, description="Only these event types")
    actor_types: list[str] | None = Field(default=None, description="Only these actor types")
    event_id: str | None = Field(default=None, description="Show this one event in detail instead of a list")


class NotAllowed(PermissionError):
    """A cross-tenant read by someone who is not an operator."""


@flow(name="events-query")
def events_query(query: EventsQuery) -> dict[str, Any]:
    """List matching events (newest 500) or show one event's chain position and anchor."""
    settings = Settings.from_env()
    tenant = query.tenant_id or None
    if tenant is None and not settings.is_operator(query.operator):
        raise NotAllowed("OPERATOR_NOT_ALLOWED: give tenant_id, or an operator e-mail on COMPLIANCE_OPERATOR_EMAILS")
    if query.event_id:
        detail = show_event(settings, query.event_id, tenant=tenant)
        if detail is None:
            create_markdown_artifact(key="event-detail", markdown=f"# Event {query.event_id}\n\nNot found.")
            return {"found": False}
        create_markdown_artifact(key="event-detail", markdown=_detail_markdown(detail))
        return {"found": True, "anchor": detail.get("anchor")}
    rows = list_events(
        settings,
        tenant=tenant,
        since=query.since,
        until=query.until,
        event_types=query.event_types,
        actor_types=query.actor_types,
        limit=500,
    )
    create_table_artifact(
        key="events-query",
        table=rows or [{"result": "no matching events"}],
        description=f"{len(rows)} newest matching events",
    )
    return {"events": len(rows)}


def _detail_markdown(d: dict[str, Any]) -> str:
    lines = [f"# Event `{d['event_id']}`", "", "| field | value |", "|---|---|"]
    for key in (
        "tenant_id",
        "seq",
        "occurred_at",
        "recorded_at",
        "actor_type",
        "actor_id",
        "source",
        "event_type",
        "payload",
        "redacted_fields",
        "prev_hash",
        "event_hash",
        "anchor",
        "event_index",
        "status",
    ):
        if key in d:
            lines.append(f"| {key} | `{d[key]}` |")
    if d.get("event_path"):
        lines += ["", "## Audit path to the tenant's events_root", ""]
        lines += [f"{i}. `{h}`" for i, h in enumerate(d["event_path"])]
    return "\n".join(lines)
