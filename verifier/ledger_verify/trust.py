"""The auditor's trust file (pinned trust): which bucket, which keys, which lock mode and retention.

    trust = Trust.load(Path("trust.json"))
    public = trust.public_key(store, "ed25519-0123456789abcdef")    # raises untrusted_key unless pinned

The file is handed over out of band and printed by ``compliance trust show``:
``{"anchor_bucket", "keys": {key_id: SHA-256 hex of the raw 32-byte Ed25519
key}, "lock_mode", "governance_until", "min_retention_days"}``. The verifier
takes the bucket and the keys from it and never from what it verifies.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger_verify.errors import VerificationFailure
from ledger_verify.store import AnchorStore
from ledger_verify.timefmt import parse_utc_text

__all__ = ["KEY_ID_RE", "LOCK_MODES", "Trust", "TrustError", "key_fingerprint"]

KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
_FIELDS = {"anchor_bucket", "keys", "lock_mode", "governance_until", "min_retention_days"}
_HEX64 = re.compile(r"[0-9a-f]{64}")
_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


class TrustError(ValueError):
    """The trust file cannot be used; the message says which field to change."""


def key_fingerprint(pem: bytes) -> str:
    """SHA-256 hex of the raw 32-byte Ed25519 key inside a PEM SubjectPublicKeyInfo."""
    public = serialization.load_pem_public_key(pem)
    if not isinstance(public, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return hashlib.sha256(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).hexdigest()


@dataclass(frozen=True)
class Trust:
    anchor_bucket: str
    keys: dict[str, str]
    lock_mode: str
    governance_until: str | None
    min_retention_days: int

    @classmethod
    def load(cls, path: Path) -> Trust:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise TrustError(f"cannot read the trust file {path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TrustError(f"the trust file {path} is not JSON: {exc}") from None
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: Any) -> Trust:
        if not isinstance(data, dict):
            raise TrustError("the trust file must be a JSON object")
        if set(data) != _FIELDS:
            missing, extra = sorted(_FIELDS - set(data)), sorted(set(data) - _FIELDS)
            raise TrustError(f"the trust file needs exactly {sorted(_FIELDS)}; missing {missing}, unknown {extra}")
        bucket = data["anchor_bucket"]
        if type(bucket) is not str or not bucket:
            raise TrustError('"anchor_bucket" must be the anchor bucket\'s name')
        keys = data["keys"]
        if type(keys) is not dict or not keys:
            raise TrustError('"keys" must map at least one key id to the SHA-256 hex of its raw Ed25519 key')
        for key_id, digest in keys.items():
            if KEY_ID_RE.fullmatch(key_id) is None:
                raise TrustError(f"key id {key_id[:80]!r} is not 1-64 characters of A-Z a-z 0-9 . _ -")
            if type(digest) is not str or _HEX64.fullmatch(digest) is None:
                raise TrustError(f"the fingerprint of {key_id!r} must be 64 lower-case hex digits")
        mode = data["lock_mode"]
        if mode not in LOCK_MODES:
            raise TrustError(f'"lock_mode" must be GOVERNANCE or COMPLIANCE, not {mode!r}')
        until = data["governance_until"]
        if until is not None and (type(until) is not str or _INSTANT.fullmatch(until) is None):
            raise TrustError('"governance_until" must be null or a timestamp like 2026-11-22T10:00:00.000000Z')
        if until is not None and mode != "COMPLIANCE":
            raise TrustError('"governance_until" is set only when "lock_mode" is COMPLIANCE')
        days = data["min_retention_days"]
        if type(days) is not int or days < 1:
            raise TrustError('"min_retention_days" must be a positive whole number of days')
        return cls(bucket, dict(keys), mode, until, days)

    def as_json(self) -> dict[str, Any]:
        return {
            "anchor_bucket": self.anchor_bucket,
            "keys": dict(sorted(self.keys.items())),
            "lock_mode": self.lock_mode,
            "governance_until": self.governance_until,
            "min_retention_days": self.min_retention_days,
        }

    def public_key(self, store: AnchorStore, key_id: str, what: str) -> Ed25519PublicKey:
        """The pinned key ``key_id``, read from the store and checked against its fingerprint. ``what``
        names the signed object in the failure."""
        if type(key_id) is not str or key_id not in self.keys:
            raise VerificationFailure(
                "untrusted_key", f"{what} is signed by key {str(key_id)[:80]!r}, which the trust file does not list"
            )
        pem = store.get(f"keys/{key_id}.pem")
        if pem is None:
            raise VerificationFailure("missing_anchor", f"the public key keys/{key_id}.pem is not in the bucket")
        try:
            fingerprint = key_fingerprint(pem)
        except ValueError:
            raise VerificationFailure("untrusted_key", f"keys/{key_id}.pem is not an Ed25519 public key") from None
        if fingerprint != self.keys[key_id]:
            raise VerificationFailure(
                "untrusted_key", f"keys/{key_id}.pem holds key {fingerprint}, the trust file pins {self.keys[key_id]}"
            )
        public = serialization.load_pem_public_key(pem)
        assert isinstance(public, Ed25519PublicKey)
        return public

    def check_lock(
        self, key: str, mode: str | None, until: datetime | None, anchored_at: str, now: datetime
    ) -> str | None:
        """The one retention and lock rule. Raises ``lock_mode`` for a mode the file does not allow at
        ``anchored_at`` (GOVERNANCE only up to ``governance_until`` in a COMPLIANCE deployment), ``retention``
        for no retention or one shorter than ``min_retention_days`` from ``anchored_at``. Returns a note
        when the retention has already run out (reported, not failed), else None."""
        if not mode or until is None:
            raise VerificationFailure("retention", f"{key} has no Object Lock retention")
        allowed = {self.lock_mode}
        if self.governance_until is not None and parse_utc_text(anchored_at) <= parse_utc_text(self.governance_until):
            allowed.add("GOVERNANCE")
        if mode not in allowed:
            raise VerificationFailure(
                "lock_mode",
                f"{key} is locked in {mode} mode; the trust file allows {' or '.join(sorted(allowed))} for an anchor of {anchored_at}",
            )
        needed = parse_utc_text(anchored_at) + timedelta(days=self.min_retention_days) - timedelta(seconds=1)
        if until < needed:
            raise VerificationFailure(
                "retention",
                f"{key} is retained until {until.isoformat()}, shorter than the trust file's "
                f"{self.min_retention_days} days from {anchored_at}",
            )
        if until < now:
            return f"{key}: its retention ran out at {until.isoformat()} (it was long enough; the object may now be deleted)"
        return None
