"""Verifying hash chains from their stored fields (the database half of SPEC §5 `verify chain`).

    verifier = ChainVerifier()
    for row in rows_in_tenant_then_seq_order:      # StoredEvent tuples
        if not verifier.check(row):
            break
    verifier.finish_tenant(head=(last_seq, head_hash))
    print(verifier.failure)                       # None, or the first Failure

Each check recomputes the event's hash from its fields, checks the link to
the previous event and that ``seq`` counts 1, 2, 3 … with no gap. Memory is
constant: only the previous event of the current tenant is kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from compliance.chain import GENESIS_HASH, stored_body

__all__ = ["ChainVerifier", "Failure", "StoredEvent"]


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


class Failure(NamedTuple):
    tenant_id: str | None
    seq: int | None
    what: str  # hash_mismatch, broken_link, gap, head_mismatch, bad_signature, retention, ...
    detail: str
    anchor: str | None = None  # the cadence id, for failures of an anchor

    def __str__(self) -> str:
        parts = []
        if self.anchor:
            parts.append(f"anchor {self.anchor}")
        if self.tenant_id is not None:
            parts.append(f"tenant {self.tenant_id}" + (f" seq {self.seq}" if self.seq is not None else ""))
        return f"{', '.join(parts) or 'ledger'}: {self.what}: {self.detail}"


@dataclass
class ChainVerifier:
    events: int = 0
    tenants: int = 0
    failure: Failure | None = None
    _tenant: str | None = None
    _seq: int = 0
    _prev: bytes = GENESIS_HASH
    _sha256: Any = field(default=hashlib.sha256, repr=False)

    def _fail(self, tenant: str, seq: int | None, what: str, detail: str) -> bool:
        if self.failure is None:
            self.failure = Failure(tenant, seq, what, detail)
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
        body = stored_body(e, seq, e[9], e[10])
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
