"""The anchor half of `compliance verify chain`: the bucket's anchors against themselves and the database.

The bucket is the source of truth: every anchor object found there must be
recorded, signed by a published key, linked to its predecessor, locked for at
least the configured retention, and its proofs file must hash to
``proofs_sha256`` with every tenant record proving to ``merkle_root``. Then
each tenant record must match the database (range, ``head_hash``, recomputed
``events_root``), and each tenant's anchored ranges must tile its chain from
seq 1 with no gap or overlap.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import psycopg

from compliance.anchor import (
    AnchorError,
    TenantHead,
    anchor_key,
    cadence_id,
    check_proof_line,
    parse_proofs,
    proofs_key,
    public_key_key,
    utf8_order,
    verify_anchor_signature,
)
from compliance.merkle import merkle_tree_hash
from compliance.settings import Settings
from compliance.timefmt import parse_utc_text
from compliance.verify import Failure
from tasks.anchoring import range_hashes
from tasks.storage import get_bytes, s3_client

__all__ = ["verify_anchors"]


def _list(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def verify_anchors(
    settings: Settings, conn: psycopg.Connection, tenant: str | None = None
) -> tuple[int, Failure | None]:
    """(anchors checked, first failure or None). ``conn`` acts as the reader inside a read-only snapshot."""
    s3 = s3_client(settings)
    bucket = settings.anchor_bucket
    recorded = conn.execute(
        "SELECT cadence_id, anchor_sha256, key_id FROM compliance.anchors ORDER BY position"
    ).fetchall()
    open_runs = {r[0] for r in conn.execute("SELECT cadence_id FROM compliance.anchor_runs WHERE completed_at IS NULL")}
    in_bucket = {k[len("anchors/") : -len(".json")] for k in _list(s3, bucket, "anchors/") if k.endswith(".json")}
    in_db = {r[0] for r in recorded}
    for cid in sorted(in_bucket - in_db - open_runs):
        return 0, Failure(
            None, None, "unrecorded_anchor", "the bucket holds an anchor the database never recorded", cid
        )
    for cid in [r[0] for r in recorded if r[0] not in in_bucket]:
        return 0, Failure(None, None, "missing_anchor", f"s3://{bucket}/{anchor_key(cid)} is gone", cid)

    ranges: dict[str, list[tuple[int, int, str]]] = {}
    for t, a, b, cid in conn.execute(
        "SELECT r.tenant_id, r.first_seq, r.last_seq, r.cadence_id FROM compliance.anchor_ranges r "
        "JOIN compliance.anchors x USING (cadence_id) ORDER BY r.tenant_id, x.position"
    ):
        ranges.setdefault(t, []).append((a, b, cid))

    prev_cid: str | None = None
    prev_sha: str | None = None
    keys: dict[str, bytes] = {}
    for checked, (cid, sha, key_id) in enumerate(recorded):
        failure = _check_one(s3, conn, settings, cid, sha, key_id, prev_cid, prev_sha, keys, tenant)
        if failure is not None:
            return checked, failure
        prev_cid, prev_sha = cid, sha

    # Tiling: each tenant's ranges run 1..a, a+1..b, ... with no gap or overlap.
    for t, spans in ranges.items():
        if tenant and t != tenant:
            continue
        expected = 1
        for a, b, cid in spans:
            if a != expected:
                what = "anchor_gap" if a > expected else "anchor_overlap"
                return len(recorded), Failure(
                    t, expected, what, f"anchored range {a}..{b} should start at {expected}", cid
                )
            expected = b + 1
    return len(recorded), None


def _check_one(
    s3: Any,
    conn: psycopg.Connection,
    settings: Settings,
    cid: str,
    sha: str,
    key_id: str,
    prev_cid: str | None,
    prev_sha: str | None,
    keys: dict[str, bytes],
    tenant: str | None,
) -> Failure | None:
    bucket = settings.anchor_bucket
    body = get_bytes(s3, bucket, anchor_key(cid))
    if body is None:
        return Failure(None, None, "missing_anchor", f"s3://{bucket}/{anchor_key(cid)} is gone", cid)
    if hashlib.sha256(body).hexdigest() != sha:
        return Failure(
            None,
            None,
            "anchor_replaced",
            "the anchor object's bytes differ from those recorded when it was written",
            cid,
        )
    if key_id not in keys:
        pem = get_bytes(s3, bucket, public_key_key(key_id))
        if pem is None:
            return Failure(None, None, "missing_key", f"public key {public_key_key(key_id)} is not published", cid)
        keys[key_id] = pem
    try:
        anchor = verify_anchor_signature(body, keys[key_id])
    except AnchorError as exc:
        return Failure(None, None, "bad_signature", str(exc), cid)
    if anchor.get("cadence_id") != cid or anchor.get("v") != 1:
        return Failure(None, None, "anchor_fields", f"the object names cadence {anchor.get('cadence_id')!r}", cid)
    if anchor.get("prev_cadence_id") != prev_cid or anchor.get("prev_anchor_sha256") != prev_sha:
        return Failure(
            None,
            None,
            "broken_anchor_link",
            f"prev is {anchor.get('prev_cadence_id')!r}/{anchor.get('prev_anchor_sha256')!r}, "
            f"expected {prev_cid!r}/{prev_sha!r}",
            cid,
        )
    retention = _retention_problem(s3, bucket, anchor_key(cid), anchor["anchored_at"], settings)
    if retention:
        return Failure(None, None, "retention", retention, cid)
    proofs = get_bytes(s3, bucket, proofs_key(cid))
    if proofs is None:
        return Failure(None, None, "missing_proofs", f"s3://{bucket}/{proofs_key(cid)} is gone", cid)
    if hashlib.sha256(proofs).hexdigest() != anchor["proofs_sha256"]:
        return Failure(None, None, "proofs_sha256", "the proofs file does not hash to the anchor's proofs_sha256", cid)
    retention = _retention_problem(s3, bucket, proofs_key(cid), anchor["anchored_at"], settings)
    if retention:
        return Failure(None, None, "retention", retention, cid)
    try:
        lines = parse_proofs(proofs)
        root = bytes.fromhex(anchor["merkle_root"])
        records = []
        for i, line in enumerate(lines):
            if line.get("leaf_index") != i:
                raise AnchorError(f"proofs line {i + 1} has leaf_index {line.get('leaf_index')}")
            records.append(check_proof_line(line, len(lines), root))
    except AnchorError as exc:
        return Failure(None, None, "bad_proof", str(exc), cid)
    if (
        len(records) != anchor["tenant_count"]
        or sum(r["last_seq"] - r["first_seq"] + 1 for r in records) != anchor["event_count"]
    ):
        return Failure(None, None, "anchor_counts", "tenant_count or event_count does not match the proofs", cid)
    names = [utf8_order(r["tenant_id"]) for r in records]
    if names != sorted(names) or len(set(names)) != len(names):
        return Failure(None, None, "bad_proof", "tenant records are not in ascending UTF-8 order", cid)
    heads = [TenantHead(r["tenant_id"], r["first_seq"], r["last_seq"], bytes.fromhex(r["head_hash"])) for r in records]
    if cadence_id(heads) != cid:
        return Failure(None, None, "cadence_id", "the cadence id does not derive from the anchored heads", cid)
    db_ranges = {
        t: (a, b, bytes(h), bytes(root_))
        for t, a, b, h, root_ in conn.execute(
            "SELECT tenant_id, first_seq, last_seq, head_hash, events_root FROM compliance.anchor_ranges "
            "WHERE cadence_id = %s",
            (cid,),
        )
    }
    for r in records:
        t = r["tenant_id"]
        if tenant and t != tenant:
            continue
        mine = db_ranges.get(t)
        if (
            mine is None
            or mine[:3] != (r["first_seq"], r["last_seq"], bytes.fromhex(r["head_hash"]))
            or mine[3] != bytes.fromhex(r["events_root"])
        ):
            return Failure(
                t,
                r["first_seq"],
                "anchor_record",
                "the database's record of this range differs from the anchored tenant record",
                cid,
            )
    wanted = [h for h in heads if not tenant or h.tenant_id == tenant]
    if wanted:
        try:
            leaves = range_hashes(conn, wanted)
        except AnchorError as exc:
            t = str(exc).split(":")[0].removeprefix("tenant ")
            return Failure(t, None, "events_root", str(exc), cid)
        for h in wanted:
            if merkle_tree_hash(leaves[h.tenant_id]).hex() != next(
                r["events_root"] for r in records if r["tenant_id"] == h.tenant_id
            ):
                return Failure(
                    h.tenant_id,
                    h.first_seq,
                    "events_root",
                    f"the events {h.first_seq}..{h.last_seq} no longer give the anchored events_root",
                    cid,
                )
    return None


def _retention_problem(s3: Any, bucket: str, key: str, anchored_at: str, settings: Settings) -> str | None:
    """Object Lock as read back from the object (moto answers HTTP 500 to get_object_retention; head_object works)."""
    head = s3.head_object(Bucket=bucket, Key=key)
    mode = head.get("ObjectLockMode")
    until = head.get("ObjectLockRetainUntilDate")
    if not mode or until is None:
        return f"{key} has no Object Lock retention"
    if settings.lock_mode == "COMPLIANCE" and mode != "COMPLIANCE":
        return f"{key} is locked in {mode} mode, not COMPLIANCE"
    needed = parse_utc_text(anchored_at) + timedelta(days=settings.retention_days) - timedelta(seconds=1)
    if until < needed:
        return (
            f"{key} is retained until {until.isoformat()}, shorter than {settings.retention_days} days from anchoring"
        )
    return None
