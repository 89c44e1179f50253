"""The read side (`compliance events list/show`, the events-query flow), for an authenticated operator.

Both reads go through the database functions ``compliance.operator_events`` and ``compliance.operator_event``
as the ``compliance_operator`` role: the code check, the grants, the 7-day default window and the audit of
cross-tenant reads and payload views live there, so a command-line user holding only that role meets the
same rules. A refusal raises :class:`compliance.operators.OperatorRefused` (nothing read).
"""

from __future__ import annotations

from typing import Any

import psycopg

from compliance.operators import OperatorRefused, normalise_address
from compliance.settings import Settings
from compliance.timefmt import parse_utc_text
from tasks.db import connect

__all__ = ["list_events", "show_event"]


def _answer(answer: dict[str, Any]) -> dict[str, Any]:
    if "refused" in answer:
        raise OperatorRefused(answer["refused"], answer["message"])
    return answer


def list_events(
    settings: Settings,
    *,
    operator: str | None,
    code: str | None,
    tenant: str | None,
    since: str | None = None,
    until: str | None = None,
    event_types: list[str] | None = None,
    actor_types: list[str] | None = None,
    limit: int = 100,
    prefect_user: str | None = None,
) -> dict[str, Any]:
    """``{"since", "until", "events"}``: the newest ``limit`` events matching, newest first; the window
    defaults to the 7 days before ``until`` (before now). ``tenant=None`` is a cross-tenant read (audited)."""
    with connect(settings, "compliance_operator", autocommit=True) as conn:
        answer = conn.execute(
            "SELECT compliance.operator_events(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                normalise_address(operator),
                (code or "").strip(),
                tenant or None,
                parse_utc_text(since) if since else None,
                parse_utc_text(until) if until else None,
                event_types or None,
                actor_types or None,
                max(1, min(limit, 10_000)),
                prefect_user,
            ),
        ).fetchone()[0]  # type: ignore[index]
    return _answer(answer)


def show_event(
    settings: Settings,
    *,
    operator: str | None,
    code: str | None,
    event_id: str | None = None,
    tenant: str | None = None,
    seq: int | None = None,
    prev: bool = False,
    payload: bool = False,
    prefect_user: str | None = None,
) -> dict[str, Any]:
    """One event (by ``event_id``, or ``tenant`` and ``seq``; with ``prev`` the one before it in its chain):
    ``found``, its fields, ``prev_hash``/``event_hash``, anchor status, and for an anchored event its audit path.
    The payload only with ``payload=True`` (audited as ``data.payload_viewed``)."""
    if event_id is None and (tenant is None or seq is None):
        raise ValueError("name the event: an event id, or a tenant and a seq")
    if event_id is not None and not _is_uuid(event_id):
        raise ValueError(f"event id {event_id!r} is not a UUID; copy it from `compliance events list`")
    if seq is not None and seq < 1:
        raise ValueError(f"seq {seq}: a chain starts at seq 1")
    with connect(settings, "compliance_operator", autocommit=True) as conn:
        answer = conn.execute(
            "SELECT compliance.operator_event(%s, %s, %s::uuid, %s, %s, %s, %s, %s)",
            (
                normalise_address(operator),
                (code or "").strip(),
                event_id.strip().lower() if event_id else None,
                tenant or None,
                seq,
                prev,
                payload,
                prefect_user,
            ),
        ).fetchone()[0]  # type: ignore[index]
    detail = _answer(answer)
    if "event_index" in detail:
        detail["event_path"] = _audit_path(settings, detail)
    return detail


def _is_uuid(text: str) -> bool:
    import uuid

    try:
        uuid.UUID(text.strip())
    except ValueError:
        return False
    return True


def _audit_path(settings: Settings, detail: dict[str, Any]) -> list[str] | str:
    """The event's audit path to its range's events_root (the anchor's proof, step one). It needs the event
    hashes of the whole range, which only the reader role reads; without it, say where the path is checked."""
    from ledger_verify.merkle import audit_path

    from tasks.anchoring import range_leaves

    try:
        with connect(settings, "compliance_reader", autocommit=True) as conn:
            leaves = range_leaves(conn, detail["tenant_id"], detail["range_first_seq"], detail["range_last_seq"])
    except psycopg.errors.InsufficientPrivilege:
        return "not shown: computing it needs the reader role; `compliance verify export` checks every path"
    return [p.hex() for p in audit_path(detail["event_index"], leaves)]
