"""Per-tenant hash chains (SPEC §2): the drain's side. The hashed bytes are defined once, in
``ledger_verify.chain`` (the auditor's package), and used here as they are.

    >>> body = canonical_body(seq=1, event_id="019a8b2c-0000-7001-8000-000000000001",
    ...     tenant_id="t", occurred_at="2026-11-22T00:00:00.000000Z",
    ...     recorded_at="2026-11-22T00:00:01.000000Z", actor_type="user", actor_id="u",
    ...     source="web", event_type="auth.signout", payload_jcs="{}", redacted_fields_jcs="[]")
    >>> event_hash(GENESIS_HASH, body).hex()[:16]
    '0af0916133618ae7'

"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import orjson
from ledger_verify.chain import GENESIS_HASH, canonical_body, event_hash, stored_body

from compliance.events import EVENT_TYPE_RE, Registry, stored_event_problem
from compliance.jcs import canonical_problem, canonical_value
from compliance.timefmt import is_utc_instant

__all__ = [
    "GENESIS_HASH",
    "ServerRules",
    "canonical_body",
    "chain_copy_rows",
    "copy_text",
    "event_hash",
    "group_chainable",
    "stored_body",
    "unchainable",
]
_sha256 = hashlib.sha256

_type_names_seen: set[str] = set()  # event types already found well-formed (a few dozen in practice)


def unchainable(event_type: str, payload: str, redacted_fields: str, occurred_at: str) -> str | None:
    """Why a stored (outbox) event cannot be chained, or None. Rows written by emit always pass; a row
    inserted by hand may carry a non-canonical payload, whose hash nobody could recompute, or a timestamp
    of the outbox's shape that names no instant (month 13, second 60), which PostgreSQL would refuse (and
    fail the whole batch) or store as another instant than the one hashed."""
    return _stored_form(event_type, payload, redacted_fields, occurred_at)[1]


def _stored_form(event_type: str, payload: str, redacted_fields: str, occurred_at: str) -> tuple[Any, str | None]:
    """:func:`unchainable`'s reason, and the payload parsed when there is none."""
    if not is_utc_instant(occurred_at):
        return None, f"occurred_at {occurred_at[:40]!r} is not a real instant in the SPEC §2 form"
    if event_type not in _type_names_seen:
        if EVENT_TYPE_RE.fullmatch(event_type) is None:
            return None, f"event_type {event_type[:80]!r} is not a dotted lower-case type name"
        if len(_type_names_seen) >= 4096:
            _type_names_seen.clear()
        _type_names_seen.add(event_type)
    parsed, reason = canonical_value(payload, dict)
    if reason is not None:
        return None, f"payload is {reason}"
    if redacted_fields != "[]":
        reason = canonical_problem(redacted_fields, list)
        if reason is not None:
            return None, f"redacted_fields is {reason}"
        fields = orjson.loads(redacted_fields)
        if any(type(f) is not str for f in fields) or fields != sorted(fields):
            return None, "redacted_fields is not a sorted list of strings"
    return parsed, None


class ServerRules(NamedTuple):
    """What the drain holds a row to besides its form (SPEC §1, on the server side): the database's own
    registry (``compliance.event_types``) and the roles that are the ledger itself."""

    registry: Registry
    ledger_roles: frozenset[str]


def group_chainable(
    rows: list[tuple[Any, ...]], rules: ServerRules | None = None
) -> tuple[dict[str, list[tuple[Any, ...]]], list[tuple[Any, str]]]:
    """Outbox rows ``(id, event_id, tenant_id, occurred_at, actor_type, actor_id, source, event_type, payload,
    redacted_fields, written_by, ...)`` in outbox order, grouped by tenant (order kept), and those that cannot
    be chained with the reason (:func:`unchainable`; and, with ``rules``, for a row that records its writer,
    :func:`~compliance.events.stored_event_problem`). A row without a writer (``written_by`` NULL) was
    enqueued before the outbox recorded writers, and is chained as the rules of its time allowed."""
    by_tenant: dict[str, list[tuple[Any, ...]]] = {}
    poisoned: list[tuple[Any, str]] = []
    for row in rows:
        parsed, reason = _stored_form(row[7], row[8], row[9], row[3])
        if reason is None and rules is not None and row[10] is not None:
            event_type: str = row[7]
            reason = stored_event_problem(
                row[2],
                row[5],
                row[6],
                event_type,
                parsed,
                rules.registry.rule(event_type),
                row[10] in rules.ledger_roles,
            )
        if reason is None:
            tenant: str = row[2]
            group = by_tenant.get(tenant)
            if group is None:
                by_tenant[tenant] = [row]
            else:
                group.append(row)
        else:
            poisoned.append((row, reason))
    return by_tenant, poisoned


def copy_text(value: str) -> str:
    """``value`` as a field of PostgreSQL's COPY text format (backslash, tab, newline, CR escaped)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _copy_json(value: str) -> str:
    """:func:`copy_text` of an RFC 8785 text that passed :func:`unchainable`: RFC 8785 escapes every control
    character, so only backslashes can need escaping."""
    return value.replace("\\", "\\\\") if "\\" in value else value


def chain_copy_rows(
    rows: list[tuple[Any, ...]], tenant_id: str, seq: int, prev_hash: bytes, recorded_at: str, out: list[str]
) -> tuple[int, bytes]:
    """Chain one tenant's outbox rows after (``seq``, ``prev_hash``) and append each as a COPY text line.

    ``rows`` are outbox rows ``(id, event_id, tenant_id, occurred_at, actor_type, actor_id, source,
    event_type, payload, redacted_fields, ...)`` that passed :func:`unchainable`, in outbox order. The
    lines hold the columns ``tenant_id, seq, event_id, occurred_at, recorded_at, actor_type, actor_id,
    source, event_type, payload, redacted_fields, prev_hash, event_hash``. Returns the new head.
    """
    sha256 = _sha256
    prev_hex = prev_hash.hex()
    for row in rows:
        event_id: str = row[1]
        occurred_at: str = row[3]
        actor_type: str = row[4]
        actor_id: str = row[5]
        source: str = row[6]
        event_type: str = row[7]
        payload: str = row[8]
        redacted: str = row[9]
        seq += 1
        body = canonical_body(
            seq=seq,
            event_id=event_id,
            tenant_id=tenant_id,
            occurred_at=occurred_at,
            recorded_at=recorded_at,
            actor_type=actor_type,
            actor_id=actor_id,
            source=source,
            event_type=event_type,
            payload_jcs=payload,
            redacted_fields_jcs=redacted,
        )
        prev_hash = sha256(prev_hash + body).digest()
        digest_hex = prev_hash.hex()
        out.append(
            f"{tenant_id}\t{seq}\t{event_id}\t{occurred_at}\t{recorded_at}\t{actor_type}\t{copy_text(actor_id)}\t"
            f"{copy_text(source)}\t{event_type}\t{_copy_json(payload)}\t{_copy_json(redacted)}\t"
            f"\\\\x{prev_hex}\t\\\\x{digest_hex}\n"
        )
        prev_hex = digest_hex
    return seq, prev_hash
