"""The anchor's I/O: which tenants grew, their events roots, the frozen run, the bucket writes, the record.

Order of a run (docs/format.md §3): freeze the run (heads, anchored_at, previous anchor)
in ``compliance.anchor_runs`` and commit; write ``proofs/<cadence_id>.ndjson``,
then ``anchors/<cadence_id>.json`` (the commit point), both under Object Lock;
then record the anchor and move every tenant's anchor state in one
transaction. A crash anywhere is finished by the next run from the frozen
row, producing the same bytes; a bucket object that already exists is read
back and must equal what would be written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from ledger_verify.merkle import merkle_tree_hash
from prefect import task
from prefect.cache_policies import NO_CACHE

from compliance.anchor import (
    AnchorError,
    AnchorPlan,
    TenantHead,
    anchor_key,
    cadence_id,
    plan_anchor,
    proofs_key,
    public_key_key,
    public_key_pem,
    sign_anchor,
    unsigned_anchor,
)
from compliance.settings import Settings, SettingsError, retention_lowering
from compliance.timefmt import parse_utc_text, utc_text
from tasks.db import LOCKED_DAYS_SQL, connect
from tasks.signing import SigningKey
from tasks.storage import get_bytes, s3_client

__all__ = [
    "ANCHOR_LOCK",
    "AnchorOutcome",
    "AnchorRun",
    "anchor_once",
    "events_roots",
    "freeze_run",
    "open_run",
    "pending_heads",
    "record_anchor",
    "write_objects",
]

ANCHOR_LOCK = 0x616E63686F72  # one anchor run at a time ("anchor")


@dataclass(frozen=True)
class AnchorRun:
    cadence_id: str
    heads: tuple[TenantHead, ...]
    anchored_at: str
    prev_cadence_id: str | None
    prev_anchor_sha256: str | None
    key_id: str


@dataclass(frozen=True)
class AnchorOutcome:
    cadence_id: str
    tenants: int
    events: int
    merkle_root: str
    proofs_key: str
    anchor_key: str
    lock_mode: str
    retain_until: str
    resumed: bool
    anchor_sha256: str


def pending_heads(conn: psycopg.Connection) -> list[TenantHead]:
    """Every tenant whose chain grew since its last anchor, with the range to anchor."""
    rows = conn.execute(
        "SELECT h.tenant_id, coalesce(s.last_anchored_seq, 0) + 1, h.last_seq, h.head_hash "
        "FROM compliance.tenant_heads h LEFT JOIN compliance.tenant_anchor_state s USING (tenant_id) "
        "WHERE h.last_seq > coalesce(s.last_anchored_seq, 0) ORDER BY h.tenant_id"
    ).fetchall()
    return [TenantHead(t, a, b, bytes(h)) for t, a, b, h in rows]


def split_hashes(blob: bytes) -> list[bytes]:
    """The 32-byte event hashes that string_agg(event_hash ORDER BY seq) concatenated."""
    return [bytes(blob[i : i + 32]) for i in range(0, len(blob), 32)]


def range_leaves(conn: psycopg.Connection, tenant: str, first_seq: int, last_seq: int) -> list[bytes]:
    """The event hashes of one tenant's seqs first_seq..last_seq, in seq order."""
    blob = conn.execute(
        "SELECT string_agg(event_hash, ''::bytea ORDER BY seq) FROM compliance.events "
        "WHERE tenant_id = %s AND seq BETWEEN %s AND %s",
        (tenant, first_seq, last_seq),
    ).fetchone()[0]  # type: ignore[index]
    return split_hashes(blob or b"")


class RangeIncomplete(AnchorError):
    """A tenant's range is not stored as anchored (missing, incomplete, or another head); names the tenant."""

    def __init__(self, tenant_id: str, message: str) -> None:
        self.tenant_id = tenant_id
        super().__init__(f"tenant {tenant_id}: {message}")


def range_hashes(conn: psycopg.Connection, heads: Sequence[TenantHead]) -> dict[str, list[bytes]]:
    """The event hashes of each head's range, in seq order (aggregated by the server: one row per tenant)."""
    rows = conn.execute(
        "SELECT e.tenant_id, string_agg(e.event_hash, ''::bytea ORDER BY e.seq), count(*), min(e.seq), max(e.seq) "
        "FROM compliance.events e JOIN unnest(%s::text[], %s::bigint[], %s::bigint[]) AS r(tenant_id, a, b) "
        "ON e.tenant_id = r.tenant_id AND e.seq BETWEEN r.a AND r.b GROUP BY e.tenant_id",
        ([h.tenant_id for h in heads], [h.first_seq for h in heads], [h.last_seq for h in heads]),
    ).fetchall()
    found = {t: (bytes(blob), n, lo, hi) for t, blob, n, lo, hi in rows}
    out: dict[str, list[bytes]] = {}
    for h in heads:
        if h.tenant_id not in found:
            raise RangeIncomplete(h.tenant_id, f"no events stored for seq {h.first_seq}..{h.last_seq}")
        blob, n, lo, hi = found[h.tenant_id]
        if (n, lo, hi) != (h.last_seq - h.first_seq + 1, h.first_seq, h.last_seq):
            raise RangeIncomplete(h.tenant_id, f"seq {h.first_seq}..{h.last_seq} is not complete in the database")
        leaves = split_hashes(blob)
        if leaves[-1] != h.head_hash:
            raise RangeIncomplete(h.tenant_id, f"the event at seq {h.last_seq} is not the recorded head")
        out[h.tenant_id] = leaves
    return out


def events_roots(conn: psycopg.Connection, heads: Sequence[TenantHead]) -> dict[str, bytes]:
    return {t: merkle_tree_hash(leaves) for t, leaves in range_hashes(conn, heads).items()}


def open_run(conn: psycopg.Connection) -> AnchorRun | None:
    row = conn.execute(
        "SELECT cadence_id, heads, anchored_at, prev_cadence_id, prev_anchor_sha256, key_id "
        "FROM compliance.anchor_runs WHERE completed_at IS NULL ORDER BY started_at LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    heads = tuple(TenantHead(t, a, b, bytes.fromhex(h)) for t, a, b, h in row[1])
    return AnchorRun(row[0], heads, row[2], row[3], row[4], row[5])


def freeze_run(conn: psycopg.Connection, heads: Sequence[TenantHead], key_id: str) -> AnchorRun:
    """Record the run's heads, time and predecessor before anything is written to the bucket."""
    prev = conn.execute(
        "SELECT cadence_id, anchor_sha256 FROM compliance.anchors ORDER BY position DESC LIMIT 1"
    ).fetchone()
    now = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    run = AnchorRun(
        cadence_id(heads), tuple(heads), utc_text(now), prev[0] if prev else None, prev[1] if prev else None, key_id
    )
    with conn.transaction():
        conn.execute(
            "INSERT INTO compliance.anchor_runs (cadence_id, heads, anchored_at, prev_cadence_id, prev_anchor_sha256, "
            "key_id) VALUES (%s, %s, %s, %s, %s, %s)",
            (
                run.cadence_id,
                json.dumps([[h.tenant_id, h.first_seq, h.last_seq, h.head_hash.hex()] for h in heads]),
                run.anchored_at,
                run.prev_cadence_id,
                run.prev_anchor_sha256,
                run.key_id,
            ),
        )
    return run


def _put_once(
    s3: Any, bucket: str, key: str, body: bytes, *, mode: str, retain_until: datetime, content_type: str
) -> None:
    """Write a locked object unless the same bytes are already there; different bytes are an error."""
    existing = get_bytes(s3, bucket, key)
    if existing is not None:
        if existing != body:
            raise AnchorError(f"s3://{bucket}/{key} already holds different bytes; refusing to write another version")
        return
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType=content_type,
        ObjectLockMode=mode,
        ObjectLockRetainUntilDate=retain_until,
        ChecksumAlgorithm="SHA256",
    )


def publish_public_key(
    settings: Settings, key: SigningKey, retain_until: datetime | None = None, s3: Any = None
) -> None:
    """Put ``keys/<key_id>.pem`` in the anchor bucket, locked, unless it is already there."""
    _put_once(
        s3 or s3_client(settings),
        settings.anchor_bucket,
        public_key_key(key.key_id),
        public_key_pem(key.key),
        mode=settings.lock_mode,
        retain_until=retain_until or datetime.now(UTC) + timedelta(days=settings.retention_days),
        content_type="application/x-pem-file",
    )


def write_objects(settings: Settings, run: AnchorRun, plan: AnchorPlan, key: SigningKey) -> tuple[bytes, datetime]:
    """The public key (if new), the proofs file, then the anchor object; returns the anchor bytes."""
    if key.key_id != run.key_id:
        raise AnchorError(f"run {run.cadence_id} was frozen for key {run.key_id} but the signing key is {key.key_id}")
    anchor = sign_anchor(
        unsigned_anchor(
            plan,
            anchored_at=run.anchored_at,
            prev_cadence_id=run.prev_cadence_id,
            prev_anchor_sha256=run.prev_anchor_sha256,
        ),
        key.key,
        key.key_id,
    )
    retain_until = parse_utc_text(run.anchored_at) + timedelta(days=settings.retention_days)
    s3 = s3_client(settings)
    bucket = settings.anchor_bucket
    publish_public_key(settings, key, retain_until, s3)
    _put_once(
        s3,
        bucket,
        proofs_key(plan.cadence_id),
        plan.proofs,
        mode=settings.lock_mode,
        retain_until=retain_until,
        content_type="application/x-ndjson",
    )
    _put_once(
        s3,
        bucket,
        anchor_key(plan.cadence_id),
        anchor,
        mode=settings.lock_mode,
        retain_until=retain_until,
        content_type="application/json",
    )
    return anchor, retain_until


def record_anchor(
    conn: psycopg.Connection,
    settings: Settings,
    run: AnchorRun,
    plan: AnchorPlan,
    anchor: bytes,
    retain_until: datetime,
) -> None:
    """Record the anchor and its ranges and move each tenant's anchor state, in one transaction."""
    with conn.transaction():
        if conn.execute("SELECT 1 FROM compliance.anchors WHERE cadence_id = %s", (run.cadence_id,)).fetchone():
            conn.execute(
                "UPDATE compliance.anchor_runs SET completed_at = clock_timestamp() WHERE cadence_id = %s "
                "AND completed_at IS NULL",
                (run.cadence_id,),
            )
            return
        conn.execute(
            "INSERT INTO compliance.anchors (cadence_id, merkle_root, tenant_count, event_count, proofs_sha256, "
            "anchor_sha256, prev_cadence_id, anchored_at, key_id, proofs_key, anchor_key, lock_mode, retain_until) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                run.cadence_id,
                plan.merkle_root,
                len(plan.records),
                plan.event_count,
                hashlib.sha256(plan.proofs).hexdigest(),
                hashlib.sha256(anchor).hexdigest(),
                run.prev_cadence_id,
                parse_utc_text(run.anchored_at),
                run.key_id,
                proofs_key(run.cadence_id),
                anchor_key(run.cadence_id),
                settings.lock_mode,
                retain_until,
            ),
        )
        with conn.cursor().copy(
            "COPY compliance.anchor_ranges (tenant_id, first_seq, last_seq, cadence_id, leaf_index, head_hash, "
            "events_root) FROM STDIN"
        ) as copy:
            for i, r in enumerate(plan.records):
                copy.write_row(
                    (
                        r["tenant_id"],
                        r["first_seq"],
                        r["last_seq"],
                        run.cadence_id,
                        i,
                        bytes.fromhex(r["head_hash"]),
                        bytes.fromhex(r["events_root"]),
                    )
                )
        _move_states(conn, run, plan)
        conn.execute(
            "UPDATE compliance.anchor_runs SET completed_at = clock_timestamp() WHERE cadence_id = %s",
            (run.cadence_id,),
        )


def _move_states(conn: psycopg.Connection, run: AnchorRun, plan: AnchorPlan) -> None:
    """Advance each tenant's anchored seq; refuse a range that does not start right after the last one."""
    tenants = [r["tenant_id"] for r in plan.records]
    current = dict(
        conn.execute(
            "SELECT tenant_id, last_anchored_seq FROM compliance.tenant_anchor_state WHERE tenant_id = ANY(%s) FOR UPDATE",
            (tenants,),
        ).fetchall()
    )
    for r in plan.records:
        expected_first = current.get(r["tenant_id"], 0) + 1
        if r["first_seq"] != expected_first:
            raise AnchorError(
                f"tenant {r['tenant_id']}: range starts at {r['first_seq']}, expected {expected_first} "
                "(a gap or overlap between anchored ranges)"
            )
    conn.execute(
        "INSERT INTO compliance.tenant_anchor_state (tenant_id, last_anchored_seq, last_cadence_id) "
        "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[]) "
        "ON CONFLICT (tenant_id) DO UPDATE SET last_anchored_seq = excluded.last_anchored_seq, "
        "last_cadence_id = excluded.last_cadence_id, updated_at = clock_timestamp()",
        (tenants, [r["last_seq"] for r in plan.records], [run.cadence_id] * len(tenants)),
    )


def complete_run(
    conn: psycopg.Connection, settings: Settings, run: AnchorRun, key: SigningKey, resumed: bool
) -> AnchorOutcome:
    plan = plan_anchor(run.heads, events_roots(conn, run.heads))
    if plan.cadence_id != run.cadence_id:
        raise AnchorError(f"run {run.cadence_id}: its heads now give cadence {plan.cadence_id}")
    anchor, retain_until = write_objects(settings, run, plan, key)
    record_anchor(conn, settings, run, plan, anchor, retain_until)
    return AnchorOutcome(
        run.cadence_id,
        len(plan.records),
        plan.event_count,
        plan.merkle_root.hex(),
        proofs_key(run.cadence_id),
        anchor_key(run.cadence_id),
        settings.lock_mode,
        utc_text(retain_until),
        resumed,
        hashlib.sha256(anchor).hexdigest(),
    )


def last_retention_days(conn: psycopg.Connection) -> int | None:
    """The whole days the last recorded anchor was locked for (None: no anchor yet)."""
    row = conn.execute(
        f"SELECT {LOCKED_DAYS_SQL} FROM compliance.anchors "
        "ORDER BY position DESC LIMIT 1"
    ).fetchone()
    return None if row is None else row[0]


def check_retention(conn: psycopg.Connection, settings: Settings) -> None:
    """Before anything is locked: a retention below the last anchor's is refused in prod unless allowed
    (:func:`compliance.settings.retention_lowering`), and where it goes ahead it is recorded first, as the
    ledger event ``admin.retention_lowered`` (through the one definer function the anchorer may call)."""
    if retention_lowering(settings, last_retention_days(conn)):
        from tasks.sources import default_actor

        conn.execute(
            "SELECT compliance.record_retention_lowered(%s, %s, %s, %s)",
            (settings.retention_days, settings.stage, settings.anchor_bucket, default_actor()),
        )


def anchor_once(settings: Settings, key: SigningKey) -> list[AnchorOutcome]:
    """Finish an interrupted run if there is one, then anchor every tenant that grew (if any)."""
    outcomes: list[AnchorOutcome] = []
    with connect(settings, "compliance_anchorer", autocommit=True) as conn:
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (ANCHOR_LOCK,)).fetchone()[0]:  # type: ignore[index]
            return outcomes  # another anchor run holds the lock; it will do the work
        try:
            interrupted = open_run(conn)
            if interrupted is not None or pending_heads(conn):
                check_retention(conn, settings)
            if interrupted is not None:
                outcomes.append(complete_run(conn, settings, interrupted, key, resumed=True))
            heads = pending_heads(conn)
            if heads:
                run = freeze_run(conn, heads, key.key_id)
                outcomes.append(complete_run(conn, settings, run, key, resumed=False))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ANCHOR_LOCK,))
    return outcomes


def _retry_unless_refused(task: Any, task_run: Any, state: Any) -> bool:
    """Retry what may pass next time (S3 or the database away), never a refused setting."""
    try:
        state.result()
    except SettingsError:
        return False
    except Exception:
        return True
    return True


anchor_task = task(
    name="anchor-heads",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[5, 30, 120],
    retry_condition_fn=_retry_unless_refused,
)(anchor_once)
