"""Anchors (the anchor stage): the objects' names, tenant records, cadence ids, and checking one anchor.

    checker = AnchorChecker(store, trust)
    anchor = checker.check("4f1c…")          # a VerifiedAnchor, or raises VerificationFailure

Checking an anchor: its object is in RFC 8785 form and signed by a key the
trust file pins; it names its own cadence; its proofs file hashes to
``proofs_sha256`` and every tenant record's ``audit_path`` reaches
``merkle_root``; counts, order and ``cadence_id`` derive from the records; and,
where the store can tell, each of the two objects has one version and an
Object Lock mode and retention the trust file allows.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger_verify.errors import VerificationFailure
from ledger_verify.jcs import canonical
from ledger_verify.merkle import check_inclusion, tree_root_and_paths
from ledger_verify.store import AnchorStore
from ledger_verify.trust import Trust

__all__ = [
    "AnchorChecker",
    "TenantHead",
    "VerifiedAnchor",
    "anchor_key",
    "cadence_id",
    "check_signature",
    "check_tiling",
    "parse_proofs",
    "proofs_key",
    "public_key_key",
    "tenant_record",
    "utf8_order",
]

_RECORD_KEYS = ("tenant_id", "first_seq", "last_seq", "head_hash", "events_root")
_ANCHOR_KEYS = {
    "v",
    "cadence_id",
    "merkle_root",
    "tenant_count",
    "event_count",
    "proofs_sha256",
    "prev_cadence_id",
    "prev_anchor_sha256",
    "anchored_at",
    "signature",
}


class TenantHead(NamedTuple):
    """One tenant's range to anchor: seqs first_seq..last_seq, ending at head_hash."""

    tenant_id: str
    first_seq: int
    last_seq: int
    head_hash: bytes


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


def check_signature(document: Mapping[str, Any], public: Ed25519PublicKey, what: str) -> None:
    """Raises ``bad_signature`` unless ``document["signature"]["sig"]`` (padded standard base64) is the
    Ed25519 signature of the JCS bytes of ``document`` without its ``signature`` member."""
    signature = document.get("signature")
    if not isinstance(signature, dict) or signature.get("alg") != "ed25519":
        raise VerificationFailure("bad_signature", f"{what} has no ed25519 signature member")
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    try:
        public.verify(base64.b64decode(str(signature.get("sig", "")), validate=True), canonical(unsigned))
    except (InvalidSignature, ValueError):
        raise VerificationFailure("bad_signature", f"the signature of {what} does not verify") from None


def parse_proofs(proofs: bytes) -> list[dict[str, Any]]:
    """The proofs file's lines (each must be canonical and end in a newline); raises ``bad_proof``."""
    if proofs and not proofs.endswith(b"\n"):
        raise VerificationFailure("bad_proof", "the proofs file does not end with a newline")
    lines = []
    for n, line in enumerate(proofs.split(b"\n")[:-1] if proofs else [], 1):
        try:
            obj = json.loads(line)
        except ValueError:
            raise VerificationFailure("bad_proof", f"proofs line {n} is not JSON") from None
        if not isinstance(obj, dict) or canonical(obj) != line:
            raise VerificationFailure("bad_proof", f"proofs line {n} is not an object in RFC 8785 canonical form")
        lines.append(obj)
    return lines


def _proven_record(line: Mapping[str, Any], index: int, size: int, merkle_root: bytes) -> dict[str, Any]:
    """The tenant record of one proofs line, after checking its audit path reaches ``merkle_root``."""
    record = _record_fields(line, index)
    tenant = record["tenant_id"]
    try:
        path = [bytes.fromhex(p) for p in line["audit_path"]]
        bytes.fromhex(record["head_hash"])
        bytes.fromhex(record["events_root"])
        check_inclusion(canonical(record), index, size, path, merkle_root)
    except (TypeError, ValueError) as exc:  # InclusionError is a ValueError
        raise VerificationFailure("bad_proof", f"the proof of tenant {tenant!r}: {exc}", tenant_id=tenant) from None
    return record


def _proven_records(lines: list[dict[str, Any]], merkle_root: bytes) -> list[dict[str, Any]]:
    """The tenant records of every proofs line, each line's audit path checked to reach ``merkle_root``. The
    tree of all the records is built once: when its root is ``merkle_root`` and every line's path is its leaf's
    path in that tree (the usual case), that proves them all. Otherwise each line is proven on its own, in
    order, which names the first that fails."""
    try:
        records = [_record_fields(line, i) for i, line in enumerate(lines)]
        for r in records:
            bytes.fromhex(r["head_hash"])
            bytes.fromhex(r["events_root"])
        root, paths = tree_root_and_paths([canonical(r) for r in records])
        if root == merkle_root and all(
            line["audit_path"] == [p.hex() for p in path] for line, path in zip(lines, paths, strict=True)
        ):
            return records
    except (VerificationFailure, TypeError, ValueError):  # CanonicalError is a ValueError
        pass  # named below, at its line
    return [_proven_record(line, i, len(lines), merkle_root) for i, line in enumerate(lines)]


def _record_fields(line: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The tenant record of one proofs line, its fields checked (not its path)."""
    tenant = line.get("tenant_id")
    if set(line) != {*_RECORD_KEYS, "leaf_index", "audit_path"} or line.get("leaf_index") != index:
        raise VerificationFailure(
            "bad_proof", f"proofs line {index + 1} ({tenant!r}) has the wrong fields or leaf_index"
        )
    record = {k: line[k] for k in _RECORD_KEYS}
    if (
        type(tenant) is not str
        or type(record["first_seq"]) is not int
        or type(record["last_seq"]) is not int
        or not 1 <= record["first_seq"] <= record["last_seq"]
    ):
        raise VerificationFailure("bad_proof", f"proofs line {index + 1} holds a malformed tenant record")
    return record


@dataclass
class VerifiedAnchor:
    cadence_id: str
    body: bytes  # the anchor object's bytes
    anchor: dict[str, Any]
    key_id: str
    merkle_root: bytes
    records: list[dict[str, Any]]  # tenant records, in leaf order
    proof_lines: dict[str, dict[str, Any]]  # tenant -> its proofs line
    notes: list[str] = field(default_factory=list)

    def record(self, tenant: str) -> dict[str, Any] | None:
        line = self.proof_lines.get(tenant)
        return None if line is None else {k: line[k] for k in _RECORD_KEYS}


class AnchorChecker:
    """Checks anchors against a store and a trust file, each cadence once. ``now`` decides only whether an
    adequate retention has run out (reported, not failed)."""

    def __init__(self, store: AnchorStore, trust: Trust, *, now: datetime | None = None) -> None:
        self.store, self.trust = store, trust
        self.now = now or datetime.now(UTC)
        self.checked: dict[str, VerifiedAnchor] = {}
        self.storage_checked = True  # False once the store could not tell a lock or versions

    def check(self, cid: str) -> VerifiedAnchor:
        try:
            got = self.checked.get(cid)
            if got is None:
                got = self.checked[cid] = self._check(cid)
            return got
        except VerificationFailure as exc:
            raise VerificationFailure(
                exc.code, exc.detail, tenant_id=exc.tenant_id, seq=exc.seq, row=exc.row, anchor=cid
            ) from None

    def _check(self, cid: str) -> VerifiedAnchor:
        if len(cid) != 32 or any(c not in "0123456789abcdef" for c in cid):
            raise VerificationFailure("anchor_fields", f"{cid[:80]!r} is not a cadence id (32 lower-case hex)")
        body = self.store.get(anchor_key(cid))
        if body is None:
            raise VerificationFailure("missing_anchor", f"{anchor_key(cid)} is not in the bucket")
        try:
            anchor = json.loads(body)
        except ValueError as exc:
            raise VerificationFailure("anchor_fields", f"the anchor object is not JSON: {exc}") from None
        if not isinstance(anchor, dict) or not isinstance(anchor.get("signature"), dict):
            raise VerificationFailure("bad_signature", "the anchor object has no signature member")
        key_id = anchor["signature"].get("key_id")
        public = self.trust.public_key(self.store, key_id, f"anchor {cid}")
        check_signature(anchor, public, f"anchor {cid}")
        if canonical(anchor) != body:
            raise VerificationFailure("anchor_fields", "the anchor object is not in RFC 8785 canonical form")
        if set(anchor) != _ANCHOR_KEYS or anchor["v"] != 1 or anchor["cadence_id"] != cid:
            raise VerificationFailure("anchor_fields", f"the object's fields are not those of the v1 anchor {cid}")
        proofs = self.store.get(proofs_key(cid))
        if proofs is None:
            raise VerificationFailure("missing_anchor", f"{proofs_key(cid)} is not in the bucket")
        if hashlib.sha256(proofs).hexdigest() != anchor["proofs_sha256"]:
            raise VerificationFailure("proofs_sha256", f"{proofs_key(cid)} does not hash to the anchor's proofs_sha256")
        try:
            root = bytes.fromhex(anchor["merkle_root"])
        except (TypeError, ValueError):
            raise VerificationFailure("anchor_fields", "merkle_root is not hex") from None
        lines = parse_proofs(proofs)
        records = _proven_records(lines, root)
        names = [utf8_order(r["tenant_id"]) for r in records]
        if names != sorted(names) or len(set(names)) != len(names):
            raise VerificationFailure("bad_proof", "tenant records are not in ascending UTF-8 order of tenant_id")
        if (
            len(records) != anchor["tenant_count"]
            or sum(r["last_seq"] - r["first_seq"] + 1 for r in records) != anchor["event_count"]
        ):
            raise VerificationFailure("anchor_fields", "tenant_count or event_count does not match the proofs")
        heads = [
            TenantHead(r["tenant_id"], r["first_seq"], r["last_seq"], bytes.fromhex(r["head_hash"])) for r in records
        ]
        if cadence_id(heads) != cid:
            raise VerificationFailure("anchor_fields", "the cadence id does not derive from the anchored heads")
        notes = []
        for key in (anchor_key(cid), proofs_key(cid)):
            note = self._check_storage(key, anchor["anchored_at"])
            if note:
                notes.append(note)
        return VerifiedAnchor(
            cid, body, anchor, key_id, root, records, {line["tenant_id"]: line for line in lines}, notes
        )

    def _check_storage(self, key: str, anchored_at: str) -> str | None:
        versions = self.store.versions(key)
        lock = self.store.lock(key)
        if versions is None or lock is None:
            self.storage_checked = False
            return None
        if versions != 1:
            raise VerificationFailure("versions", f"{key} has {versions} versions; an anchor object is written once")
        return self.trust.check_lock(key, lock[0], lock[1], anchored_at, self.now)


def check_tiling(tenant: str, spans: Iterable[tuple[int, int, str]]) -> None:
    """A tenant's anchored ranges (first_seq, last_seq, cadence) in anchor order must run 1..a, a+1..b, …
    with no gap (``gap``) or overlap (``overlap``)."""
    expected = 1
    for first, last, cid in spans:
        if first != expected:
            raise VerificationFailure(
                "gap" if first > expected else "overlap",
                f"anchored range {first}..{last} should start at {expected}",
                tenant_id=tenant,
                seq=expected,
                anchor=cid,
            )
        expected = last + 1
