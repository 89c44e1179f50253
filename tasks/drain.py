"""Draining the outbox into the per-tenant hash chains, one transaction per batch.

A batch: lock the outbox shards no other drainer holds (transaction-scoped
advisory locks; a tenant always falls in the same shard, so one tenant's
chain is only ever extended by one drainer at a time, in outbox order), claim
and delete up to ``batch_size`` rows of those shards (``FOR UPDATE SKIP
LOCKED``), lock the tenants' chain heads, chain the rows (SPEC §2), COPY them
into ``compliance.events``, quarantine rows that cannot be chained in
``compliance.outbox_poison``, move the heads, then commit. A crash anywhere
before the commit leaves every row pending; after it, every row is chained
exactly once (or set aside with its reason).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE

from compliance.chain import GENESIS_HASH, chain_copy_rows, group_chainable
from compliance.settings import SHARD_COUNT, Settings
from compliance.timefmt import utc_text
from tasks.db import connect

__all__ = [
    "SHARDS",
    "DrainResult",
    "drain_batch",
    "drain_pending",
]

SHARDS = SHARD_COUNT
_LOCK_CLASS = 0x6472  # advisory lock namespace of the drain shards ("dr")
_COPY_CHUNK_ROWS = 2_000  # COPY text lines sent per write: the server parses while the next lines are built

# Claim and remove in one statement: the rows are locked (SKIP LOCKED) and deleted in this transaction,
# so a crash before commit leaves them in the outbox and a commit leaves them chained (or quarantined).
# The claimed rows go to the DELETE as an array of their tuple ids (the row versions this statement has
# locked; outbox rows are never updated), found by a TID scan: written as `id IN (SELECT ...)` the
# planner hash-joins the subquery against a scan of the whole outbox, so each batch cost grew with the
# backlog (335 ms against 46 ms per 20,000 rows with a million waiting); `id = ANY(ARRAY(...))` walks
# the primary key once per row, which the TID scan skips (about 0.5 us a row of server CPU).
_CLAIM = """
DELETE FROM compliance.outbox
WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM compliance.outbox {where} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
))
RETURNING id, event_id::text, tenant_id, occurred_at, actor_type, actor_id, source, event_type, payload,
          redacted_fields, enqueued_at::text
"""
_EVENT_COLUMNS = (
    "tenant_id, seq, event_id, occurred_at, recorded_at, actor_type, actor_id, source, event_type, "
    "payload, redacted_fields, prev_hash, event_hash"
)


@dataclass
class DrainResult:
    """What one or more batches did."""

    drained: int = 0
    poisoned: int = 0
    duplicates: int = 0
    batches: int = 0
    seconds: float = 0.0
    per_tenant: dict[str, list[int]] = field(default_factory=dict)  # tenant -> [events, first_seq, last_seq]

    def add(self, other: DrainResult) -> None:
        self.drained += other.drained
        self.poisoned += other.poisoned
        self.duplicates += other.duplicates
        self.batches += other.batches
        self.seconds += other.seconds
        for tenant, (n, first, last) in other.per_tenant.items():
            mine = self.per_tenant.get(tenant)
            if mine is None:
                self.per_tenant[tenant] = [n, first, last]
            else:
                mine[0] += n
                mine[1] = min(mine[1], first)
                mine[2] = max(mine[2], last)


def _locked_shards(conn: psycopg.Connection, shards: Sequence[int] | None) -> list[int]:
    wanted = list(range(SHARDS)) if shards is None else list(shards)
    rows = conn.execute(
        "SELECT s FROM unnest(%s::int[]) s WHERE pg_try_advisory_xact_lock(%s, s)", (wanted, _LOCK_CLASS)
    ).fetchall()
    return [r[0] for r in rows]


def drain_batch(conn: psycopg.Connection, batch_size: int = 50_000, shards: Sequence[int] | None = None) -> DrainResult:
    """Chain up to ``batch_size`` pending outbox rows in one transaction (``conn`` acts as the drainer)."""
    started = time.perf_counter()
    result = DrainResult()
    with conn.transaction():
        mine = _locked_shards(conn, shards)
        if not mine:
            return result
        # The claim's RETURNING rows are held by the server until the DELETE finishes; with the default 4 MB
        # work_mem a 50,000-row batch spilled 13 MB to a temporary file and read it back, every batch.
        conn.execute(f"SET LOCAL work_mem = '{_claim_work_mem_mb(batch_size)}MB'")
        if len(mine) == SHARDS:
            rows = conn.execute(_CLAIM.format(where=""), (batch_size,)).fetchall()
        else:
            rows = conn.execute(_CLAIM.format(where="WHERE shard = ANY(%s)"), (mine, batch_size)).fetchall()
        if not rows:
            return result
        rows.sort()  # RETURNING has no order; a tenant's events are chained in outbox order
        recorded_at_dt: datetime = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        recorded_at = utc_text(recorded_at_dt)

        by_tenant, poisoned = group_chainable(rows)

        duplicates = 0
        while True:
            try:
                with conn.transaction():  # savepoint: a duplicate event_id rolls back only this attempt
                    heads = _lock_heads(conn, sorted(by_tenant))
                    new_heads, per_tenant = _chain_and_copy(conn, by_tenant, heads, recorded_at)
                break
            except psycopg.errors.UniqueViolation:
                # An id already chained (two emits of one id racing the drain): never chain it twice.
                all_ids = [r[1] for rs in by_tenant.values() for r in rs]
                dup = {
                    r[0]
                    for r in conn.execute(
                        "SELECT event_id::text FROM compliance.events WHERE event_id = ANY(%s::uuid[])", (all_ids,)
                    )
                }
                if not dup:
                    raise
                for tenant in list(by_tenant):
                    kept = [r for r in by_tenant[tenant] if r[1] not in dup]
                    duplicates += len(by_tenant[tenant]) - len(kept)
                    if kept:
                        by_tenant[tenant] = kept
                    else:
                        del by_tenant[tenant]

        if new_heads:
            conn.execute(
                "UPDATE compliance.tenant_heads h SET last_seq = v.last_seq, head_hash = v.head_hash, "
                "updated_at = %s FROM unnest(%s::text[], %s::bigint[], %s::bytea[]) AS v(tenant_id, last_seq, head_hash) "
                "WHERE h.tenant_id = v.tenant_id",
                (recorded_at_dt, [h[0] for h in new_heads], [h[1] for h in new_heads], [h[2] for h in new_heads]),
            )
        if poisoned:
            with conn.cursor().copy(
                "COPY compliance.outbox_poison (id, event_id, tenant_id, occurred_at, actor_type, actor_id, source, "
                "event_type, payload, redacted_fields, enqueued_at, error) FROM STDIN"
            ) as copy:
                for row, reason in poisoned:
                    copy.write_row((*row, reason))
    result.drained = sum(v[0] for v in per_tenant.values())
    result.poisoned = len(poisoned)
    result.duplicates = duplicates
    result.batches = 1
    result.per_tenant = per_tenant
    result.seconds = time.perf_counter() - started
    return result


def _claim_work_mem_mb(batch_size: int) -> int:
    """Enough for the claimed rows to stay in memory at 1 KiB a row (the bench spilled 13 MB for 50,000 rows);
    bounded so that a huge batch size cannot ask the server for more than 256 MB per drainer."""
    return min(max(4, -(-batch_size // 1024)), 256)


def _lock_heads(conn: psycopg.Connection, tenants: list[str]) -> dict[str, tuple[int, bytes]]:
    if not tenants:
        return {}
    conn.execute(
        "INSERT INTO compliance.tenant_heads (tenant_id, last_seq, head_hash) "
        "SELECT t, 0, %s FROM unnest(%s::text[]) t ON CONFLICT (tenant_id) DO NOTHING",
        (GENESIS_HASH, tenants),
    )
    rows = conn.execute(
        "SELECT tenant_id, last_seq, head_hash FROM compliance.tenant_heads WHERE tenant_id = ANY(%s) "
        "ORDER BY tenant_id FOR UPDATE",
        (tenants,),
    ).fetchall()
    return {t: (s, bytes(h)) for t, s, h in rows}


def _chain_and_copy(
    conn: psycopg.Connection,
    by_tenant: dict[str, list[Any]],
    heads: dict[str, tuple[int, bytes]],
    recorded_at: str,
) -> tuple[list[tuple[str, int, bytes]], dict[str, list[int]]]:
    new_heads: list[tuple[str, int, bytes]] = []
    per_tenant: dict[str, list[int]] = {}
    lines: list[str] = []
    with conn.cursor().copy(f"COPY compliance.events ({_EVENT_COLUMNS}) FROM STDIN") as copy:
        for tenant, rows in by_tenant.items():
            seq, prev = heads[tenant]
            last, head = chain_copy_rows(rows, tenant, seq, prev, recorded_at, lines)
            new_heads.append((tenant, last, head))
            per_tenant[tenant] = [last - seq, seq + 1, last]
            if len(lines) >= _COPY_CHUNK_ROWS:
                copy.write("".join(lines))
                lines.clear()
        if lines:
            copy.write("".join(lines))
    return new_heads, per_tenant


@task(
    name="drain-pending",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=lambda task, run, state: _transient(state),
)
def drain_pending(
    settings: Settings,
    batch_size: int | None = None,
    shards: list[int] | None = None,
    max_batches: int | None = None,
    workers: int | None = None,
) -> DrainResult:
    """Drain batch after batch until the outbox (of the shards this drainer can lock) is empty.

    ``workers`` connections (default ``settings.drain_workers``) drain at once, worker *i* taking the
    shards ``s`` with ``s % workers == i``: tenants never cross workers, so each chain still grows in
    outbox order, and while the server stores one worker's batch the other chains its own (the client's
    hashing and the server's writes overlap). ``max_batches`` bounds each worker.
    """
    wanted = list(range(SHARDS)) if shards is None else sorted(set(shards))
    workers = min(workers or settings.drain_workers, len(wanted)) or 1
    size = batch_size or settings.drain_batch_size
    if workers == 1:
        return _drain_shards(settings, size, shards, max_batches)
    groups = [[s for s in wanted if s % workers == i] for i in range(workers)]
    total = DrainResult()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drain") as pool:
        futures = [pool.submit(_drain_shards, settings, size, group, max_batches) for group in groups]
        for future in futures:
            total.add(future.result())  # the first failure is raised, after every worker has stopped
    return total


def _drain_shards(
    settings: Settings, batch_size: int, shards: list[int] | None, max_batches: int | None
) -> DrainResult:
    total = DrainResult()
    conn = connect(settings, "compliance_drainer")
    try:
        while max_batches is None or total.batches < max_batches:
            one = drain_batch(conn, batch_size, shards)
            if one.batches == 0:
                break
            total.add(one)
    finally:
        conn.close()
    return total


def _transient(state: Any) -> bool:
    """Retry database outages and serialization trouble; a bug is not retried."""
    try:
        state.result()
    except (psycopg.OperationalError, psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
        return True
    except Exception:
        return False
    return False
