"""Anchors (docs/format.md §3): tenant records, the Merkle root over them, cadence ids, proofs files, signed anchor objects.

    >>> heads = [TenantHead("acme", 1, 2, bytes(32))]
    >>> plan = plan_anchor(heads, {"acme": bytes(32)})
    >>> plan.cadence_id == cadence_id(heads)
    True

Everything here is deterministic: the same chain heads give the same cadence
id, the same proofs bytes and, with the same ``anchored_at`` and key (Ed25519
signatures are deterministic), the same anchor bytes. The storage side writes
what this module returns; an auditor's verifier checks it with the
``ledger_verify`` package (whose names for the objects and records this module uses).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from ledger_verify.anchors import (
    TenantHead,
    anchor_key,
    cadence_id,
    parse_proofs,
    proofs_key,
    public_key_key,
    tenant_record,
    utf8_order,
)
from ledger_verify.merkle import root_from_path, tree_root_and_paths

from compliance.jcs import canonical

__all__ = [
    "AnchorError",
    "AnchorPlan",
    "TenantHead",
    "anchor_key",
    "cadence_id",
    "key_id_for",
    "load_private_key",
    "parse_proofs",
    "plan_anchor",
    "proofs_key",
    "public_key_key",
    "public_key_pem",
    "sign_anchor",
    "utf8_order",
    "signed",
]


class AnchorError(ValueError):
    """An anchor or proofs object does not verify; the message says what failed."""


class AnchorPlan(NamedTuple):
    cadence_id: str
    records: list[dict[str, Any]]  # tenant records, in leaf order
    merkle_root: bytes
    proofs: bytes  # the proofs/<cadence_id>.ndjson bytes
    event_count: int


def plan_anchor(heads: Sequence[TenantHead], events_roots: Mapping[str, bytes]) -> AnchorPlan:
    """Tenant records, their Merkle root and the proofs file for the given heads (at least one)."""
    if not heads:
        raise ValueError("no tenant grew: there is nothing to anchor")
    ordered = sorted(heads, key=lambda h: utf8_order(h.tenant_id))
    records = [tenant_record(h, events_roots[h.tenant_id]) for h in ordered]
    root, paths = tree_root_and_paths([canonical(r) for r in records])
    lines = [
        canonical({**r, "leaf_index": i, "audit_path": [p.hex() for p in path]}) + b"\n"
        for i, (r, path) in enumerate(zip(records, paths))
    ]
    # Re-verify our own root before anything is written.
    for i, (r, path) in enumerate(zip(records, paths)):
        if root_from_path(canonical(r), i, len(records), path) != root:
            raise AnchorError(f"internal error: the proof of {r['tenant_id']} does not reach the root")
    events = sum(h.last_seq - h.first_seq + 1 for h in ordered)
    return AnchorPlan(cadence_id(ordered), records, root, b"".join(lines), events)


def unsigned_anchor(
    plan: AnchorPlan, *, anchored_at: str, prev_cadence_id: str | None, prev_anchor_sha256: str | None
) -> dict[str, Any]:
    return {
        "v": 1,
        "cadence_id": plan.cadence_id,
        "merkle_root": plan.merkle_root.hex(),
        "tenant_count": len(plan.records),
        "event_count": plan.event_count,
        "proofs_sha256": hashlib.sha256(plan.proofs).hexdigest(),
        "prev_cadence_id": prev_cadence_id,
        "prev_anchor_sha256": prev_anchor_sha256,
        "anchored_at": anchored_at,
    }


def signed(unsigned: Mapping[str, Any], key: Ed25519PrivateKey, key_id: str) -> dict[str, Any]:
    """``unsigned`` with a ``signature`` member: the Ed25519 signature over the JCS bytes of the rest (an
    anchor object, or an export manifest, docs/format.md §3 and §4)."""
    if "signature" in unsigned:
        raise ValueError("the object to sign already has a signature member")
    sig = key.sign(canonical(dict(unsigned)))
    return {**unsigned, "signature": {"alg": "ed25519", "key_id": key_id, "sig": base64.b64encode(sig).decode()}}


def sign_anchor(unsigned: Mapping[str, Any], key: Ed25519PrivateKey, key_id: str) -> bytes:
    """The JCS bytes of the anchor object with its Ed25519 signature over the JCS of the rest."""
    return canonical(signed(unsigned, key, key_id))


def load_private_key(hex_or_pem: str) -> Ed25519PrivateKey:
    text = hex_or_pem.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the signing key is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id_for(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """A key id derived from the public key: 'ed25519-' and the first 16 hex of SHA-256 of its raw bytes."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519-" + hashlib.sha256(raw).hexdigest()[:16]
