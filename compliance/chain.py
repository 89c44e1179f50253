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

import struct
from typing import Any, NamedTuple

import orjson
from ledger_verify.chain import GENESIS_HASH, canonical_body, chain_hashes, event_hash, stored_body

from compliance.events import (
    EVENT_TYPE_RE,
    LEDGER_TENANT,
    LEDGER_TYPE_PREFIX,
    NOT_PLAIN,
    PLAIN_WITH_FLOATS,
    Registry,
    TypeRule,
    plainness,
    stored_event_problem,
)
from compliance.jcs import canonical_problem, canonical_value, numbers_print_alike
from compliance.timefmt import is_utc_instant, pg_timestamp

__all__ = [
    "COPY_BINARY_HEADER",
    "COPY_BINARY_TRAILER",
    "GENESIS_HASH",
    "ServerRules",
    "canonical_body",
    "chain_copy_rows",
    "event_hash",
    "group_chainable",
    "stored_body",
    "unchainable",
]
_SORT_KEYS = orjson.OPT_SORT_KEYS

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
    enqueued before the outbox recorded writers, and is chained as the rules of its time allowed.

    A row that every check surely passes (:func:`_surely_chainable`) is found so in one pass over its fields;
    any other row goes through the checks themselves, which name the reason if there is one."""
    by_tenant: dict[str, list[tuple[Any, ...]]] = {}
    poisoned: list[tuple[Any, str]] = []
    registry: Registry | None = None
    ledger_roles: frozenset[str] = frozenset()
    if rules is not None:
        registry = rules.registry
        ledger_roles = rules.ledger_roles
    for row in rows:
        written_by = row[10]
        reason: str | None = None
        if registry is not None and written_by is not None:
            event_type: str = row[7]
            rule = registry.rule(event_type)
            ledger = written_by in ledger_roles
            if rule is None or not _surely_chainable(row, rule, ledger):
                parsed, reason = _stored_form(event_type, row[8], row[9], row[3])
                if reason is None:
                    reason = stored_event_problem(row[2], row[5], row[6], event_type, parsed, rule, ledger)
        else:
            reason = _stored_form(row[7], row[8], row[9], row[3])[1]
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


def _surely_chainable(row: tuple[Any, ...], rule: TypeRule, ledger: bool) -> bool:
    """True when an outbox row of a registered type (``rule``) surely passes :func:`_stored_form` and
    :func:`~compliance.events.stored_event_problem`, found in one pass over its fields: a real instant,
    neither the ledger's tenant nor its types from another writer, printable ASCII actor and source, an ASCII
    payload object already in its RFC 8785 form which redaction keeps as it is, and a sorted list of ASCII
    field names. A registered type's name is well-formed (:class:`~compliance.events.Registry` refuses
    others). False decides nothing: the row then goes through those checks, which name the reason if any."""
    tenant_id: str = row[2]
    actor_id: str = row[5]
    source: str = row[6]
    event_type: str = row[7]
    payload: str = row[8]
    redacted: str = row[9]
    if not is_utc_instant(row[3]):
        return False
    if not ledger and (tenant_id == LEDGER_TENANT or event_type.startswith(LEDGER_TYPE_PREFIX)):
        return False
    if not (actor_id.isascii() and actor_id.isprintable() and source.isascii() and source.isprintable()):
        return False
    if not payload.isascii():
        return False
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    if type(parsed) is not dict:
        return False
    plain = plainness(parsed, rule)
    if plain == NOT_PLAIN or orjson.dumps(parsed, option=_SORT_KEYS) != payload.encode():
        return False
    if plain == PLAIN_WITH_FLOATS and not numbers_print_alike(parsed, payload):
        return False  # a plain payload's integers print alike; its floats may not
    return redacted == "[]" or _plain_field_list(redacted)


def _plain_field_list(text: str) -> bool:
    """True when ``text`` surely is the RFC 8785 form of a sorted list of strings (ASCII, no number)."""
    if not text.isascii():
        return False
    try:
        fields = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    if type(fields) is not list:
        return False
    for f in fields:
        if type(f) is not str:
            return False
    return fields == sorted(fields) and orjson.dumps(fields) == text.encode()


# PostgreSQL's binary COPY format: a header, then per row the number of fields (int16) and each field as its
# length (int32) and its bytes in the type's binary form, then a trailer. The drain builds each row as a str
# whose characters are those bytes (latin-1), so that a row is one f-string and a chunk of rows one encode.
COPY_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
COPY_BINARY_TRAILER = b"\xff\xff"
_FIELDS_13 = "\x00\x0d"
_LENGTHS = [n.to_bytes(4, "big").decode("latin-1") for n in range(4096)]
_PACK_SEQ_ID_AT = struct.Struct("!iqi16siq").pack  # seq (int8), event_id (uuid), occurred_at (timestamptz)


def _length(n: int) -> str:
    return _LENGTHS[n] if n < 4096 else n.to_bytes(4, "big").decode("latin-1")


def _utf8(text: str) -> str:
    """``text``'s UTF-8 bytes as latin-1 characters (ASCII is its own)."""
    return text if text.isascii() else text.encode("utf-8").decode("latin-1")


def _binary_timestamp(text: str) -> str:
    """A ``timestamptz`` field of a binary COPY row (as latin-1 text) for a SPEC §2 timestamp text."""
    return "\x00\x00\x00\x08" + pg_timestamp(text).to_bytes(8, "big", signed=True).decode("latin-1")


def chain_copy_rows(
    rows: list[tuple[Any, ...]], tenant_id: str, seq: int, prev_hash: bytes, recorded_at: str, out: list[str]
) -> tuple[int, bytes]:
    """Chain one tenant's outbox rows after (``seq``, ``prev_hash``) and append each as a row of PostgreSQL's
    binary COPY format, a str of latin-1 characters (encode a run of them with ``"latin-1"``, after
    :data:`COPY_BINARY_HEADER` and before :data:`COPY_BINARY_TRAILER`). Returns the new head.

    ``rows`` are outbox rows ``(id, event_id, tenant_id, occurred_at, actor_type, actor_id, source,
    event_type, payload, redacted_fields, written_by, event_id's 16 bytes)`` that passed :func:`unchainable`,
    in outbox order; the hashes are :func:`~ledger_verify.chain.chain_hashes`'. The COPY rows hold the columns
    ``tenant_id, seq, event_id, occurred_at, recorded_at, actor_type, actor_id, source, event_type, payload,
    redacted_fields, prev_hash, event_hash``.
    """
    hashes = chain_hashes(rows, tenant_id, seq, prev_hash, recorded_at)
    tenant_bin = _utf8(tenant_id)
    head = _FIELDS_13 + _length(len(tenant_bin)) + tenant_bin
    recorded = _binary_timestamp(recorded_at)
    prev_bin = prev_hash.decode("latin-1")
    for i in range(len(rows)):
        row = rows[i]
        actor_type: str = row[4]
        actor_bin = _utf8(row[5])
        source_bin = _utf8(row[6])
        event_type: str = row[7]
        payload_bin = _utf8(row[8])
        redacted_bin = _utf8(row[9])
        seq += 1
        fixed = _PACK_SEQ_ID_AT(8, seq, 16, row[11], 8, pg_timestamp(row[3]))
        digest_bin = hashes[i].decode("latin-1")
        out.append(
            f"{head}{fixed.decode('latin-1')}{recorded}{_length(len(actor_type))}{actor_type}"
            f"{_length(len(actor_bin))}{actor_bin}{_length(len(source_bin))}{source_bin}"
            f"{_length(len(event_type))}{event_type}{_length(len(payload_bin))}{payload_bin}"
            f"{_length(len(redacted_bin))}{redacted_bin}\x00\x00\x00\x20{prev_bin}\x00\x00\x00\x20{digest_bin}"
        )
        prev_bin = digest_bin
    return seq, hashes[-1] if hashes else prev_hash
