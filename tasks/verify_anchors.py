"""The anchor half of `compliance verify chain`: the bucket's anchors against themselves and the database.

The bucket is the source of truth: every anchor object found there must be
recorded, and each recorded one must still be the bytes recorded, pass the
verification core's anchor stage (``ledger_verify.anchors.AnchorChecker``:
signature by a pinned key, proofs, counts, cadence id, versions, lock mode
and retention by the deployment's trust file, whose floor and modes come
from what the ledger recorded writing) and link to its predecessor. Each of
its two objects must also be locked in the mode, and at least until the
date, recorded with it when it was written: a later change of the
configured mode or retention changes neither what an older anchor is held
to nor whether it verifies.
Then each tenant record must match the database (range, ``head_hash``,
recomputed ``events_root``), and each tenant's anchored ranges must tile its
chain from seq 1 with no gap or overlap.
"""

from __future__ import annotations

import hashlib

import psycopg
from ledger_verify import AnchorChecker, S3Store, VerificationFailure
from datetime import datetime

from ledger_verify.anchors import TenantHead, anchor_key, check_tiling, proofs_key
from ledger_verify.merkle import merkle_tree_hash

from compliance.posture import RETAIN_UNTIL_SLACK

from compliance.settings import Settings
from tasks.anchoring import RangeIncomplete, range_hashes
from tasks.storage import s3_client
from tasks.trust import TrustProblem, deployment_trust

__all__ = ["verify_anchors"]


def verify_anchors(
    settings: Settings, conn: psycopg.Connection, tenant: str | None = None
) -> tuple[int, VerificationFailure | None]:
    """(anchors checked, first failure or None). ``conn`` acts as the reader inside a read-only snapshot."""
    store = S3Store(settings.anchor_bucket, s3_client(settings))
    recorded = conn.execute(
        "SELECT cadence_id, anchor_sha256, lock_mode, retain_until FROM compliance.anchors ORDER BY position"
    ).fetchall()
    open_runs = {r[0] for r in conn.execute("SELECT cadence_id FROM compliance.anchor_runs WHERE completed_at IS NULL")}
    in_bucket = {k[len("anchors/") : -len(".json")] for k in store.list("anchors/") if k.endswith(".json")}
    in_db = {r[0] for r in recorded}
    try:
        for cid in sorted(in_bucket - in_db - open_runs):
            raise VerificationFailure(
                "unrecorded_anchor", "the bucket holds an anchor the database never recorded", anchor=cid
            )
        for cid in [r[0] for r in recorded if r[0] not in in_bucket]:
            raise VerificationFailure("missing_anchor", f"s3://{store.bucket}/{anchor_key(cid)} is gone", anchor=cid)
        if not recorded:
            return 0, None
        try:
            trust = deployment_trust(settings, conn)
        except TrustProblem as exc:
            raise VerificationFailure("untrusted_key", str(exc)) from None
        checker = AnchorChecker(store, trust)
        prev_cid: str | None = None
        prev_sha: str | None = None
        for checked, (cid, sha, mode, retain_until) in enumerate(recorded):
            try:
                _check_one(store, checker, conn, cid, sha, prev_cid, prev_sha, tenant)
                _check_recorded_lock(store, cid, mode, retain_until)
            except VerificationFailure as exc:
                return checked, exc
            prev_cid, prev_sha = cid, sha

        spans: dict[str, list[tuple[int, int, str]]] = {}
        for t, a, b, cid in conn.execute(
            "SELECT r.tenant_id, r.first_seq, r.last_seq, r.cadence_id FROM compliance.anchor_ranges r "
            "JOIN compliance.anchors x USING (cadence_id) ORDER BY r.tenant_id, x.position"
        ):
            spans.setdefault(t, []).append((a, b, cid))
        for t, tenant_spans in spans.items():
            if not tenant or t == tenant:
                check_tiling(t, tenant_spans)
    except VerificationFailure as exc:
        return 0 if exc.code in ("unrecorded_anchor", "missing_anchor", "untrusted_key") else len(recorded), exc
    return len(recorded), None


def _check_recorded_lock(store: S3Store, cid: str, mode: str, retain_until: datetime) -> None:
    """The anchor's two objects are locked as the ledger recorded writing them (where the store tells)."""
    for key in (anchor_key(cid), proofs_key(cid)):
        lock = store.lock(key)
        if lock is None:
            continue
        got_mode, got_until = lock
        if got_mode != mode:
            raise VerificationFailure(
                "lock_mode", f"{key} is locked in {got_mode or 'no'} mode; it was written in {mode}", anchor=cid
            )
        if got_until is None or got_until < retain_until - RETAIN_UNTIL_SLACK:
            shown = got_until.isoformat() if got_until else "never"
            raise VerificationFailure(
                "retention",
                f"{key} is retained until {shown}, shorter than the {retain_until.isoformat()} it was written with",
                anchor=cid,
            )


def _check_one(
    store: S3Store,
    checker: AnchorChecker,
    conn: psycopg.Connection,
    cid: str,
    sha: str,
    prev_cid: str | None,
    prev_sha: str | None,
    tenant: str | None,
) -> None:
    body = store.get(anchor_key(cid))
    if body is None:
        raise VerificationFailure("missing_anchor", f"s3://{store.bucket}/{anchor_key(cid)} is gone", anchor=cid)
    if hashlib.sha256(body).hexdigest() != sha:
        raise VerificationFailure(
            "anchor_replaced", "the anchor object's bytes differ from those recorded when it was written", anchor=cid
        )
    verified = checker.check(cid)
    anchor = verified.anchor
    if anchor["prev_cadence_id"] != prev_cid or anchor["prev_anchor_sha256"] != prev_sha:
        raise VerificationFailure(
            "anchor_fields",
            f"the anchor links to {anchor['prev_cadence_id']!r}/{anchor['prev_anchor_sha256']!r}, "
            f"expected {prev_cid!r}/{prev_sha!r}",
            anchor=cid,
        )
    records = verified.records
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
            raise VerificationFailure(
                "anchor_record",
                "the database's record of this range differs from the anchored tenant record",
                tenant_id=t,
                seq=r["first_seq"],
                anchor=cid,
            )
    wanted = [
        TenantHead(r["tenant_id"], r["first_seq"], r["last_seq"], bytes.fromhex(r["head_hash"]))
        for r in records
        if not tenant or r["tenant_id"] == tenant
    ]
    if not wanted:
        return
    try:
        leaves = range_hashes(conn, wanted)
    except RangeIncomplete as exc:
        raise VerificationFailure("events_root", str(exc), tenant_id=exc.tenant_id, anchor=cid) from None
    roots = {r["tenant_id"]: r["events_root"] for r in records}
    for h in wanted:
        if merkle_tree_hash(leaves[h.tenant_id]).hex() != roots[h.tenant_id]:
            raise VerificationFailure(
                "events_root",
                f"the events {h.first_seq}..{h.last_seq} no longer give the anchored events_root",
                tenant_id=h.tenant_id,
                seq=h.first_seq,
                anchor=cid,
            )
