"""Anchors (SPEC §3): tenant records, the Merkle root over them, cadence ids, proofs files, signed anchor objects.

    >>> heads = [TenantHead("acme", 1, 2, bytes(32))]
    >>> plan = plan_anchor(heads, {"acme": bytes(32)})
    >>> plan.cadence_id == cadence_id(heads)
    True

Everything here is deterministic: the same chain heads give the same cadence
id, the same proofs bytes and, with the same ``anchored_at`` and key (Ed25519
signatures are deterministic), the same anchor bytes. The storage side writes
what this module returns; an auditor's verifier checks it with the functions
at the bottom and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from compliance.jcs import canonical
from compliance.merkle import root_from_path, tree_root_and_paths

__all__ = [
    "AnchorError",
    "AnchorPlan",
    "TenantHead",
    "anchor_key",
    "cadence_id",
    "check_proof_line",
    "key_id_for",
    "load_private_key",
    "parse_proofs",
    "plan_anchor",
    "proofs_key",
    "public_key_key",
    "public_key_pem",
    "sign_anchor",
    "utf8_order",
    "verify_anchor_signature",
]


class AnchorError(ValueError):
    """An anchor or proofs object does not verify; the message says what failed."""


class TenantHead(NamedTuple):
    """One tenant's range to anchor: seqs first_seq..last_seq, ending at head_hash."""

    tenant_id: str
    first_seq: int
    last_seq: int
    head_hash: bytes


class AnchorPlan(NamedTuple):
    cadence_id: str
    records: list[dict[str, Any]]  # tenant records, in leaf order
    merkle_root: bytes
    proofs: bytes  # the proofs/<cadence_id>.ndjson bytes
    event_count: int


def utf8_order(tenant_id: str) -> bytes:
    return tenant_id.encode("utf-8")


def proofs_key(cid: str) -> str:
    return f"proofs/{cid}.ndjson"


def anchor_key(cid: str) -> str:
    return f"anchors/{cid}.json"


def public_key_key(key_id: str) -> str:
    return f"keys/{key_id}.pem"


def cadence_id(heads: Iterable[TenantHead]) -> str:
    """First 32 hex of SHA-256(JCS({"heads": [[tenant_id, last_seq, head_hash], ...]})), tenants in UTF-8 order."""
    ordered = sorted(heads, key=lambda h: utf8_order(h.tenant_id))
    doc = {"heads": [[h.tenant_id, h.last_seq, h.head_hash.hex()] for h in ordered]}
    return hashlib.sha256(canonical(doc)).hexdigest()[:32]


def tenant_record(head: TenantHead, events_root: bytes) -> dict[str, Any]:
    return {
        "tenant_id": head.tenant_id,
        "first_seq": head.first_seq,
        "last_seq": head.last_seq,
        "head_hash": head.head_hash.hex(),
        "events_root": events_root.hex(),
    }


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


def sign_anchor(unsigned: Mapping[str, Any], key: Ed25519PrivateKey, key_id: str) -> bytes:
    """The JCS bytes of the anchor object with its Ed25519 signature over the JCS of the rest."""
    if "signature" in unsigned:
        raise ValueError("the object to sign already has a signature member")
    sig = key.sign(canonical(dict(unsigned)))
    signed = {**unsigned, "signature": {"alg": "ed25519", "key_id": key_id, "sig": base64.b64encode(sig).decode()}}
    return canonical(signed)


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


def verify_anchor_signature(anchor_bytes: bytes, pem: bytes) -> dict[str, Any]:
    """Parse an anchor object, check it is canonical and its signature verifies with ``pem``; returns it."""
    import json

    try:
        anchor = json.loads(anchor_bytes)
    except ValueError as exc:
        raise AnchorError(f"the anchor object is not JSON: {exc}") from None
    if not isinstance(anchor, dict) or not isinstance(anchor.get("signature"), dict):
        raise AnchorError("the anchor object has no signature member")
    if canonical(anchor) != anchor_bytes:
        raise AnchorError("the anchor object is not in RFC 8785 canonical form")
    signature = anchor["signature"]
    if signature.get("alg") != "ed25519":
        raise AnchorError(f"unsupported signature algorithm {signature.get('alg')!r}")
    public = serialization.load_pem_public_key(pem)
    if not isinstance(public, Ed25519PublicKey):
        raise AnchorError("the published key is not an Ed25519 key")
    unsigned = {k: v for k, v in anchor.items() if k != "signature"}
    try:
        public.verify(base64.b64decode(signature.get("sig", ""), validate=True), canonical(unsigned))
    except (InvalidSignature, ValueError):
        raise AnchorError(f"bad signature by key {signature.get('key_id')!r}") from None
    return anchor


def parse_proofs(proofs: bytes) -> list[dict[str, Any]]:
    """The proofs file's lines (each must be canonical and end in a newline)."""
    import json

    if proofs and not proofs.endswith(b"\n"):
        raise AnchorError("the proofs file does not end with a newline")
    lines = []
    for n, line in enumerate(proofs.split(b"\n")[:-1] if proofs else [], 1):
        try:
            obj = json.loads(line)
        except ValueError:
            raise AnchorError(f"proofs line {n} is not JSON") from None
        if canonical(obj) != line:
            raise AnchorError(f"proofs line {n} is not in RFC 8785 canonical form")
        lines.append(obj)
    return lines


_RECORD_KEYS = ("tenant_id", "first_seq", "last_seq", "head_hash", "events_root")


def check_proof_line(line: Mapping[str, Any], size: int, merkle_root: bytes) -> dict[str, Any]:
    """The tenant record of one proofs line, after checking its audit path reaches ``merkle_root``."""
    if set(line) != {*_RECORD_KEYS, "leaf_index", "audit_path"}:
        raise AnchorError(f"proofs line for {line.get('tenant_id')!r} has fields {sorted(line)}")
    record = {k: line[k] for k in _RECORD_KEYS}
    try:
        path = [bytes.fromhex(p) for p in line["audit_path"]]
    except (TypeError, ValueError):
        raise AnchorError(f"the audit path of {record['tenant_id']!r} is not hex") from None
    if root_from_path(canonical(record), line["leaf_index"], size, path) != merkle_root:
        raise AnchorError(f"the proof of tenant {record['tenant_id']!r} does not reach the merkle_root")
    return record
