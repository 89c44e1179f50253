"""The hash chains (the chain stage): the hashed bytes of an event, and checking stored or exported events.

    verifier = ChainVerifier()
    for row in rows_in_tenant_then_seq_order:      # StoredEvent tuples
        if not verifier.check(row):
            break
    verifier.finish_tenant(tenant, head=(last_seq, head_hash))
    print(verifier.failure)                       # None, or the first VerificationFailure

``canonical_body`` assembles the RFC 8785 bytes of the hashed object from
parts that are already canonical (the payload and the redacted-field list are
stored in their RFC 8785 form), so hashing costs a string join and one
SHA-256, not a JSON serialization. Each check recomputes the event's hash
from its fields, checks the link to the previous event and that ``seq`` counts
1, 2, 3 … with no gap. Memory is constant: only the previous event of the
current tenant is kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ledger_verify.errors import VerificationFailure
from ledger_verify.jcs import canonical, encode_string, loads_as_doubles, unescaped

__all__ = [
    "GENESIS_HASH",
    "ChainVerifier",
    "UNESCAPED_FIELDS",
    "StoredEvent",
    "canonical_body",
    "chain_hashes",
    "event_hash",
    "hashable_as_given",
    "is_canonical_json",
    "quoted_field",
    "stored_body",
]

GENESIS_HASH = bytes(32)
_sha256 = hashlib.sha256


def canonical_body(
    *,
    seq: int,
    event_id: str,
    tenant_id: str,
    occurred_at: str,
    recorded_at: str,
    actor_type: str,
    actor_id: str,
    source: str,
    event_type: str,
    payload_jcs: str,
    redacted_fields_jcs: str,
) -> bytes:
    """The RFC 8785 bytes of the v1 event object. Keys appear in RFC 8785 order.

    ``tenant_id``, ``event_type``, ``actor_type``, ``event_id`` and the timestamps
    must already be valid (SPEC §1): their character sets never need escaping,
    so they are written as they are; the free-text ``actor_id`` and ``source``
    are escaped, and ``payload_jcs`` and ``redacted_fields_jcs`` are written as
    given. A verifier that builds these bytes from fields it was handed must
    first rule out what :func:`quoted_field` names: otherwise one event's bytes,
    and so its hash, could be split into other field values.
    """
    return (
        f'{{"actor":{{"id":"{_escaped(actor_id)}","type":"{actor_type}"}},"event_id":"{event_id}",'
        f'"event_type":"{event_type}","occurred_at":"{occurred_at}","payload":{payload_jcs},'
        f'"recorded_at":"{recorded_at}","redacted_fields":{redacted_fields_jcs},"seq":{seq},'
        f'"source":"{_escaped(source)}","tenant_id":"{tenant_id}","v":1}}'
    ).encode()


def stored_body(r: Sequence[Any], seq: int, payload_jcs: str, redacted_fields_jcs: str) -> bytes:
    """:func:`canonical_body` of a stored or exported event ``r``, whose first columns are ``tenant_id, seq,
    event_id, occurred_at, recorded_at, actor_type, actor_id, source, event_type`` (timestamps in the
    SPEC §2 text form); ``seq`` and the two JSON texts are given as the caller has checked them."""
    return canonical_body(
        seq=seq,
        event_id=r[2],
        tenant_id=r[0],
        occurred_at=r[3],
        recorded_at=r[4],
        actor_type=r[5],
        actor_id=r[6],
        source=r[7],
        event_type=r[8],
        payload_jcs=payload_jcs,
        redacted_fields_jcs=redacted_fields_jcs,
    )


def chain_hashes(
    rows: Sequence[Sequence[Any]], tenant_id: str, seq: int, prev_hash: bytes, recorded_at: str
) -> list[bytes]:
    """The event hashes of ``rows``, a tenant's next events chained after (``seq``, ``prev_hash``), all recorded
    at ``recorded_at``: what the ledger's drain stores for each batch. A row holds ``event_id`` at position 1
    and ``occurred_at, actor_type, actor_id, source, event_type, payload_jcs, redacted_fields_jcs`` at 3 to 9
    (the ledger's outbox row; position 2 is its tenant). The drain calls this once a tenant, so that each
    event's bytes are :func:`canonical_body`'s, built here, without a call between the two compiled packages
    per event."""
    sha256 = _sha256
    hashes: list[bytes] = []
    for r in rows:
        seq += 1
        body = canonical_body(
            seq=seq,
            event_id=r[1],
            tenant_id=tenant_id,
            occurred_at=r[3],
            recorded_at=recorded_at,
            actor_type=r[4],
            actor_id=r[5],
            source=r[6],
            event_type=r[7],
            payload_jcs=r[8],
            redacted_fields_jcs=r[9],
        )
        h = sha256(prev_hash)
        h.update(body)
        prev_hash = h.digest()
        hashes.append(prev_hash)
    return hashes


# Why a row's fields, as given, might not be the only ones its hashed bytes can be read back into. The bytes
# name each field by a fixed key between the values, and three kinds of value are written without being
# escaped: the six below (whose SPEC §1 forms hold no quote), the payload and the redacted-field list. A value
# holding a quote could hold such a key: moving the boundaries, e.g. a payload cut short before a nested
# ``,"recorded_at":"``, a recorded_at taken from inside it and a redacted-field list carrying the rest, keeps
# the bytes (and the hash) of the original event. Refusing a quote in the six, and taking a redacted-field
# list that holds ``":`` only in its RFC 8785 form (or else reading both texts as JSON), pins every boundary;
# the payload then can only be the original one.
UNESCAPED_FIELDS = ("tenant_id", "event_id", "occurred_at", "recorded_at", "actor_type", "event_type")


def quoted_field(
    tenant_id: str, event_id: str, occurred_at: str, recorded_at: str, actor_type: str, event_type: str
) -> str | None:
    """The name of the first of :data:`UNESCAPED_FIELDS` (given in that order) that holds a quote, or None.
    A row with one must fail whatever its hash: the quote is how it would pass as another event."""
    if '"' in tenant_id:
        return "tenant_id"
    if '"' in event_id:
        return "event_id"
    if '"' in occurred_at:
        return "occurred_at"
    if '"' in recorded_at:
        return "recorded_at"
    if '"' in actor_type:
        return "actor_type"
    if '"' in event_type:
        return "event_type"
    return None


def hashable_as_given(redacted_fields_jcs: str) -> bool:
    """Whether the payload and redacted-field texts may be hashed as given (see :func:`quoted_field`): the
    redacted-field list holds no ``":``, or is JSON in its RFC 8785 form, whose extent is then fixed. An honest
    list holds ``":`` only when a redacted name does (names come from payload keys)."""
    return '":' not in redacted_fields_jcs or is_canonical_json(redacted_fields_jcs)


def is_canonical_json(text: str) -> bool:
    """Whether ``text`` is JSON in its RFC 8785 form."""
    try:
        return canonical(loads_as_doubles(text)).decode("utf-8") == text
    except (ValueError, RecursionError):  # CanonicalError is a ValueError
        return False


def _escaped(text: str) -> str:
    """The RFC 8785 string form of ``text`` without its quotes: ``text`` itself, not a copy, when nothing in it
    is escaped."""
    return text if unescaped(text) else encode_string(text)[1:-1]


def event_hash(prev_hash: bytes, body: bytes) -> bytes:
    """SHA-256(prev_hash || body), 32 raw bytes."""
    return _sha256(prev_hash + body).digest()


class StoredEvent(NamedTuple):
    tenant_id: str
    seq: int
    event_id: str
    occurred_at: str
    recorded_at: str
    actor_type: str
    actor_id: str
    source: str
    event_type: str
    payload: str
    redacted_fields: str
    prev_hash: bytes
    event_hash: bytes


@dataclass
class ChainVerifier:
    events: int = 0
    tenants: int = 0
    failure: VerificationFailure | None = None
    _tenant: str | None = None
    _seq: int = 0
    _prev: bytes = GENESIS_HASH
    _sha256: Any = field(default=hashlib.sha256, repr=False)

    def _fail(self, tenant: str, seq: int | None, what: str, detail: str) -> bool:
        if self.failure is None:
            self.failure = VerificationFailure(what, detail, tenant_id=tenant, seq=seq)
        return False

    def start_tenant(self, tenant: str) -> None:
        self._tenant, self._seq, self._prev = tenant, 0, GENESIS_HASH
        self.tenants += 1

    def resume(self, tenant: str, seq: int, prev_hash: bytes) -> None:
        """Continue a tenant's chain after ``seq`` (whose hash is ``prev_hash``), to check only its tail."""
        self.start_tenant(tenant)
        self._seq, self._prev = seq, prev_hash

    def check(self, e: Sequence[Any]) -> bool:
        """Check the next stored event, a row in :class:`StoredEvent`'s order (a StoredEvent, or the plain
        tuple a query of those columns returns); tenants in order, seq ascending. False at the first failure."""
        tenant: str = e[0]
        seq: int = e[1]
        if tenant != self._tenant:
            self.start_tenant(tenant)
        expected_seq = self._seq + 1
        if seq != expected_seq:
            return self._fail(tenant, expected_seq, "gap", f"seq {expected_seq} is missing (next stored seq is {seq})")
        prev_hash = bytes(e[11])
        if prev_hash != self._prev:
            return self._fail(
                tenant,
                seq,
                "broken_link",
                f"prev_hash {prev_hash.hex()} is not the previous event_hash {self._prev.hex()}",
            )
        quoted = quoted_field(e[0], e[2], e[3], e[4], e[5], e[8])
        if quoted is not None:
            return self._fail(tenant, seq, "hash_mismatch", f"{quoted} holds a quote, which its form never does")
        redacted: str = e[10]
        if not hashable_as_given(redacted):
            return self._fail(tenant, seq, "hash_mismatch", "redacted_fields is not JSON in RFC 8785 form")
        body = stored_body(e, seq, e[9], redacted)
        digest: bytes = self._sha256(prev_hash + body).digest()
        stored = bytes(e[12])
        if digest != stored:
            return self._fail(
                tenant,
                seq,
                "hash_mismatch",
                f"recomputed {digest.hex()} but stored {stored.hex()} (a field was changed)",
            )
        self._seq, self._prev = seq, digest
        self.events += 1
        return True

    def finish_tenant(self, tenant: str, head: tuple[int, bytes] | None) -> bool:
        """Compare the end of a tenant's chain with its recorded head (catches a deleted tail)."""
        if self.failure is not None:
            return False
        if self._tenant != tenant:
            self.start_tenant(tenant)
        if head is None:
            return True
        last_seq, head_hash = head[0], bytes(head[1])
        if last_seq != self._seq:
            return self._fail(
                tenant,
                self._seq + 1 if last_seq > self._seq else last_seq,
                "head_mismatch",
                f"the head says last_seq {last_seq}, the stored chain ends at {self._seq}",
            )
        if head_hash != self._prev:
            return self._fail(
                tenant,
                last_seq,
                "head_mismatch",
                f"the head hash {head_hash.hex()} is not the last event_hash {self._prev.hex()}",
            )
        return True
