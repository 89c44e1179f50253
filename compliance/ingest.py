"""The HTTP ingest contract, pure: request bodies, source tokens and their scopes, problem documents.

    >>> events = parse_body(b'[{"tenant_id": "acme"}, {"tenant_id": "globex"}]', "application/json")
    >>> [e["tenant_id"] for e in events]
    ['acme', 'globex']
    >>> Scope(tenants=frozenset({"acme"}), event_types=None).refusal("globex", "auth.signout")
    ('tenant_id', "this source's token may not write tenant 'globex'")

A body is one JSON event, a JSON array of events, or NDJSON (one event per
line); at most :data:`MAX_BATCH_EVENTS` events and :data:`MAX_BODY_BYTES`
bytes. Every event is then checked by :func:`compliance.events.prepare_event`,
the same rules as every other write path; this module adds only what is
particular to HTTP. Tokens are stored as their SHA-256: a token is 256 random
bits, so no slow hash is needed to make a leaked table useless.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from compliance.events import EVENT_TYPE_RE, EventRefused, PreparedEvent, Registry, prepare_event
from compliance.jcs import loads_strict

__all__ = [
    "MAX_BATCH_EVENTS",
    "MAX_BODY_BYTES",
    "NDJSON_TYPES",
    "BatchForbidden",
    "BatchRefused",
    "BodyRefused",
    "EventProblem",
    "Scope",
    "SourceNameError",
    "TooLarge",
    "check_scope_lists",
    "check_source_name",
    "new_token",
    "out_of_scope",
    "parse_body",
    "prepare_batch",
    "problem",
    "token_digest",
]

MAX_BATCH_EVENTS = 1000
# 1,000 events of typical size fit many times over; one event may carry a 64 KiB payload plus its fields.
MAX_BODY_BYTES = 8 * 1024 * 1024
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})
TOKEN_PREFIX = "clg_"
_NAME_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # a tenant id's alphabet (docs/format.md §1), also a source's
PROBLEM_BASE = "urn:compliance-ledger:problem:"


@dataclass(frozen=True)
class EventProblem:
    """One refused event of a batch: its position (0-based), the field and what to change."""

    index: int
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "reason": self.reason}


class BodyRefused(ValueError):
    """The body is not one event, a JSON array of events or NDJSON; ``problems`` say where."""

    def __init__(self, problems: list[EventProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"[{p.index}] {p.field}: {p.reason}" for p in problems))


class TooLarge(ValueError):
    """The body is over a documented limit (HTTP 413); the message names the limit."""


class SourceNameError(ValueError):
    """A source name that cannot be used; the message says what to change."""


def parse_body(body: bytes, content_type: str | None) -> list[Any]:
    """The events of a request body, in order, as parsed JSON values (each to be checked by prepare_event).

    Raises :class:`TooLarge` over the limits and :class:`BodyRefused` for text that is not JSON; JSON that is
    not an object is returned as it is, so that its refusal names its index like every other refusal."""
    if len(body) > MAX_BODY_BYTES:
        raise TooLarge(f"the body is {len(body)} bytes; the limit is {MAX_BODY_BYTES} ({MAX_BODY_BYTES >> 20} MiB)")
    media = (content_type or "application/json").split(";", 1)[0].strip().lower()
    if media in NDJSON_TYPES:
        lines = [line for line in body.split(b"\n") if line.strip()]
        _check_count(len(lines))
        events, problems = [], []
        for i, line in enumerate(lines):
            try:
                events.append(_loads(line))
            except ValueError as exc:
                problems.append(EventProblem(i, "body", f"line {i + 1} is not JSON: {exc}"))
        if problems:
            raise BodyRefused(problems)
        if not events:
            raise BodyRefused([EventProblem(0, "body", "holds no event; send one JSON object per line")])
        return events
    try:
        value = _loads(body)
    except ValueError as exc:
        raise BodyRefused([EventProblem(0, "body", f"is not JSON ({exc}); send an event object or an array")]) from None
    if isinstance(value, list):
        _check_count(len(value))
        if not value:
            raise BodyRefused([EventProblem(0, "body", "is an empty array; send at least one event")])
        return value
    return [value]


class BatchRefused(ValueError):
    """At least one event of a batch was refused (HTTP 422); ``problems`` names each by index and field."""

    def __init__(self, problems: list[EventProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"[{p.index}] {p.field}: {p.reason}" for p in problems))


class BatchForbidden(BatchRefused):
    """At least one event lies outside the token's scope (HTTP 403); ``problems`` names each."""


def prepare_batch(events: list[Any], registry: Registry, scope: Scope) -> list[PreparedEvent]:
    """Every event validated and redacted by :func:`prepare_event`, and checked against ``scope``; all or none.

    Raises :class:`BatchForbidden` when any event is outside the scope (those are listed), else
    :class:`BatchRefused` listing every refused event; a batch is stored whole or not at all."""
    prepared: list[PreparedEvent] = []
    positions: list[int] = []
    refused: list[EventProblem] = []
    for i, raw in enumerate(events):
        try:
            prepared.append(prepare_event(raw, registry))
            positions.append(i)
        except EventRefused as exc:
            refused.append(EventProblem(i, exc.field, exc.reason))
    forbidden = out_of_scope(prepared, scope, positions)
    if forbidden:
        raise BatchForbidden(forbidden)
    if refused:
        raise BatchRefused(refused)
    return prepared


def out_of_scope(
    events: Sequence[PreparedEvent], scope: Scope, positions: Sequence[int] | None = None
) -> list[EventProblem]:
    """The events outside ``scope``, each named by its position in the request (``positions[i]``, else i)."""
    problems = []
    for i, event in enumerate(events):
        refusal = scope.refusal(event.tenant_id, event.event_type)
        if refusal is not None:
            problems.append(EventProblem(i if positions is None else positions[i], *refusal))
    return problems


def _loads(text: bytes) -> Any:
    try:
        return loads_strict(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _check_count(n: int) -> None:
    if n > MAX_BATCH_EVENTS:
        raise TooLarge(f"the batch holds {n} events; the limit is {MAX_BATCH_EVENTS}: split it")


class Scope(NamedTuple):
    """What a source's token may write: None means every tenant (or every registered type)."""

    tenants: frozenset[str] | None
    event_types: frozenset[str] | None

    def refusal(self, tenant_id: str, event_type: str) -> tuple[str, str] | None:
        """(field, reason) when an event for ``tenant_id`` and ``event_type`` is outside the scope, else None."""
        if self.tenants is not None and tenant_id not in self.tenants:
            return "tenant_id", f"this source's token may not write tenant {tenant_id!r}"
        if self.event_types is not None and event_type not in self.event_types:
            return "event_type", f"this source's token may not write event type {event_type!r}"
        return None


def check_source_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise SourceNameError(f"source name {name!r}: use 1 to 128 characters of A-Z a-z 0-9 . _ : -")
    return name


def check_scope_lists(tenants: Iterable[str] | None, event_types: Iterable[str] | None) -> Scope:
    """A scope from command-line lists, each name checked; None (not given) means all."""
    tenant_set = None if tenants is None else frozenset(tenants)
    type_set = None if event_types is None else frozenset(event_types)
    for t in tenant_set or ():
        if not _NAME_RE.fullmatch(t):
            raise SourceNameError(f"--tenant {t!r}: a tenant id is 1 to 128 characters of A-Z a-z 0-9 . _ : -")
    for e in type_set or ():
        if not EVENT_TYPE_RE.fullmatch(e):
            raise SourceNameError(f"--event-type {e!r}: an event type is dotted lower-case, e.g. auth.signin.success")
    if tenant_set is not None and not tenant_set:
        raise SourceNameError("give at least one --tenant, or --all-tenants")
    return Scope(tenant_set, type_set)


def new_token() -> str:
    """A fresh source token: a recognisable prefix and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def problem(
    status: int, kind: str, title: str, detail: str, errors: Iterable[EventProblem] = (), **extra: Any
) -> dict[str, Any]:
    """An RFC 9457 problem document; ``errors`` lists the refused events by index, field and reason."""
    doc: dict[str, Any] = {"type": PROBLEM_BASE + kind, "title": title, "status": status, "detail": detail}
    listed = [e.as_dict() for e in errors]
    if listed:
        doc["errors"] = listed
    doc.update(extra)
    return doc
