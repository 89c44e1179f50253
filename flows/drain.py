"""drain-outbox: move emitted events from the outbox into their tenants' hash chains.

Runbook paragraph: every scheduled run lives for about five minutes
(``run_seconds``). While it lives it looks at the outbox every
``poll_seconds`` and, whenever anything is pending, drains it batch by batch
until the outbox is empty, so an event waits at most about one poll interval
plus one batch before it is chained, while the Prefect UI sees one flow run per
five minutes (12 an hour). Each batch is one transaction: a crash leaves the
batch's events in the outbox, never half-chained; a chained event is marked
drained (its shard's cursor moves past it) in the same transaction. Every few
seconds it also purges drained outbox rows older than the retention
(COMPLIANCE_OUTBOX_RETENTION_SECONDS), a few batches at a time so that chaining
never waits long behind it. It leaves a table artifact of what it chained per
tenant.

Scale-out: the deployment runs several drain runs at once (one schedule per
drainer, a concurrency limit of as many), on whichever workers of the pool pick
them up. Each run's connections are members of a lease (:mod:`tasks.shards`):
the live members split the 64 shards between them, each a contiguous run of
its own, and the shards of a run that dies are taken by the others at their
next poll. The lowest member alone purges.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from tasks.config import load_settings
from tasks.db import connect
from tasks.drain import DrainResult, drain_pending, has_pending, purge_outbox
from tasks.shards import ShardLease, drain_leased, renew_all

ARTIFACT_ROWS = 200
PURGE_EVERY_SECONDS = 5.0
PURGE_MAX_BATCHES = 4  # per purge: 200,000 rows at the default batch size, a short pause between polls


@flow(name="drain-outbox", log_prints=False)
def drain_outbox(
    run_seconds: float = 290,
    poll_seconds: float = 0.5,
    batch_size: int | None = None,
    shards: list[int] | None = None,
) -> dict[str, Any]:
    """Drain the outbox for ``run_seconds`` (0: until it is empty once), ``batch_size`` events per
    transaction (default: COMPLIANCE_DRAIN_BATCH_SIZE, 50,000).

    By default the run's connections (COMPLIANCE_DRAIN_WORKERS) join the shard
    lease and drain the share of the shards that falls to them, however many
    other drain runs are live (:mod:`tasks.shards`). ``shards`` (0–63) instead
    pins this drainer to part of the tenants: it takes those of them no other
    drainer holds, batch by batch.
    """
    logger = get_run_logger()
    settings = load_settings()
    total = DrainResult()
    deadline = time.monotonic() + run_seconds
    watcher = connect(settings, "compliance_reader", autocommit=True)
    leases = [] if shards is not None else [ShardLease(settings) for _ in range(settings.drain_workers)]
    size = batch_size or settings.drain_batch_size
    purged = 0
    next_purge = time.monotonic()
    try:
        while True:
            if not leases:
                if has_pending(watcher):
                    total.add(drain_pending(settings, batch_size, shards))
            elif _renewed(leases, logger) and has_pending(watcher):
                total.add(drain_leased(leases, size))
            if time.monotonic() >= next_purge and (not leases or any(lease.rank == 0 for lease in leases)):
                purged += purge_outbox(settings, PURGE_MAX_BATCHES)
                next_purge = time.monotonic() + PURGE_EVERY_SECONDS
            if time.monotonic() >= deadline:
                break
            time.sleep(poll_seconds)
    finally:
        watcher.close()
        for lease in leases:
            lease.close()
    logger.info(
        "drained %d events (%d poisoned, %d duplicates) in %d batches; purged %d drained outbox rows",
        total.drained,
        total.poisoned,
        total.duplicates,
        total.batches,
        purged,
    )
    top = sorted(total.per_tenant.items(), key=lambda kv: -kv[1][0])[:ARTIFACT_ROWS]
    create_table_artifact(
        key="drain-outbox",
        table=[{"tenant_id": t, "events": n, "first_seq": a, "last_seq": b} for t, (n, a, b) in top]
        or [{"tenant_id": "-", "events": 0, "first_seq": None, "last_seq": None}],
        description=(
            f"Chained {total.drained} events of {len(total.per_tenant)} tenants in {total.batches} batches; "
            f"{total.poisoned} poisoned (set aside in compliance.outbox_poison), {total.duplicates} duplicates."
            + (f" Showing the {ARTIFACT_ROWS} busiest tenants." if len(total.per_tenant) > ARTIFACT_ROWS else "")
        ),
    )
    return {
        "drained": total.drained,
        "poisoned": total.poisoned,
        "duplicates": total.duplicates,
        "batches": total.batches,
        "tenants": len(total.per_tenant),
        "purged": purged,
    }


def _renewed(leases: list[ShardLease], logger: Any) -> bool:
    """Renew every lease (a poll keeps the lease alive and takes up shards left by drainers gone); False,
    logged, when the database cannot be reached this time."""
    try:
        held = renew_all(leases)
    except psycopg.OperationalError as exc:
        logger.warning("the shard lease could not be renewed (%s); joining again at the next poll", exc)
        for lease in leases:
            lease.close()
        return False
    if held:
        logger.debug("holding %d shards %s-%s of %d members", len(held), held[0], held[-1], leases[0].members)
    return True
