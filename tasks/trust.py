"""The deployment's trust file (docs/operator-runbook.md, Operators): what an auditor pins, from the operator's own records.

The keys are every key id the database recorded an anchor under, plus the
current signing key when one is configured; each fingerprint is of the public
key published at ``keys/<key_id>.pem`` and must match the key id, which is
derived from the key itself (``compliance.anchor.key_id_for``).

The lock rule comes from what the ledger recorded writing, never from
today's settings alone. The mode is COMPLIANCE once the deployment is
configured for it or has written any COMPLIANCE anchor; ``governance_until``
is then the last GOVERNANCE anchor's ``anchored_at``, so anchors written
before a GOVERNANCE -> COMPLIANCE move keep verifying. The retention floor
(``min_retention_days``) is what the first anchor was locked for (the
configured retention before any anchor): raising the retention later raises
new anchors' locks, not the floor, and a lowering below the floor is not
absorbed by it, so every anchor locked for less fails with ``retention``
here and for an auditor holding the file.
"""

from __future__ import annotations

import hashlib

import psycopg
from cryptography.hazmat.primitives import serialization
from ledger_verify import Trust
from ledger_verify.anchors import public_key_key
from ledger_verify.store import s3_get_bytes
from ledger_verify.trust import key_fingerprint

from compliance.settings import Settings
from tasks.db import LOCKED_DAYS_SQL, connect, utc_text_sql
from tasks.signing import SigningKey
from tasks.storage import s3_client

__all__ = ["TrustProblem", "deployment_trust"]


class TrustProblem(RuntimeError):
    """The trust file cannot be made as the deployment stands; the message says what is wrong."""


def _fingerprint_of(s3: object, bucket: str, key_id: str) -> str:
    pem = s3_get_bytes(s3, bucket, public_key_key(key_id))
    if pem is None:
        raise TrustProblem(f"key {key_id} signed anchors but keys/{key_id}.pem is not in s3://{bucket}")
    fingerprint = key_fingerprint(pem)
    if key_id.startswith("ed25519-") and not fingerprint.startswith(key_id.removeprefix("ed25519-")):
        raise TrustProblem(f"keys/{key_id}.pem holds key {fingerprint}, which is not the key its id names")
    return fingerprint


def deployment_trust(
    settings: Settings, conn: psycopg.Connection | None = None, signing: SigningKey | None = None
) -> Trust:
    """The trust file for this deployment. ``conn``: a reader connection to use (default: a new one);
    ``signing``: the current signing key, listed even before it has signed an anchor."""
    own = conn is None
    conn = conn or connect(settings, "compliance_reader", autocommit=True)
    try:
        key_ids = [r[0] for r in conn.execute("SELECT DISTINCT key_id FROM compliance.anchors ORDER BY key_id")]
        last_governance = utc_text_sql("(max(anchored_at) FILTER (WHERE lock_mode = 'GOVERNANCE'))")
        governance_until, any_compliance = conn.execute(
            f"SELECT {last_governance}, coalesce(bool_or(lock_mode = 'COMPLIANCE'), false) FROM compliance.anchors"
        ).fetchone()  # type: ignore[misc]
        first_days = conn.execute(
            f"SELECT {LOCKED_DAYS_SQL} FROM compliance.anchors "
            "ORDER BY position LIMIT 1"
        ).fetchone()
    finally:
        if own:
            conn.close()
    s3 = s3_client(settings)
    keys = {k: _fingerprint_of(s3, settings.anchor_bucket, k) for k in key_ids}
    if signing is not None:  # the key that signs from now on, maybe before it has signed an anchor
        raw = signing.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        keys.setdefault(signing.key_id, hashlib.sha256(raw).hexdigest())
    if not keys:
        raise TrustProblem(
            "no anchor has been signed yet and no signing key is configured: run `compliance anchor` first"
        )
    mode = "COMPLIANCE" if settings.lock_mode == "COMPLIANCE" or any_compliance else "GOVERNANCE"
    floor = first_days[0] if first_days is not None else settings.retention_days
    return Trust(settings.anchor_bucket, keys, mode, governance_until if mode == "COMPLIANCE" else None, floor)
