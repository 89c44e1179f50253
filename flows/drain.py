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
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from tasks.config import load_settings
from tasks.db import connect
from tasks.drain import DrainResult, drain_pending, has_pending, purge_outbox

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

    ``shards`` (0–63) restricts this drainer to part of the tenants, so several
    drainers can share the work; by default it takes every shard no other
    drainer holds.
    """
    logger = get_run_logger()
    settings = load_settings()
    total = DrainResult()
    deadline = time.monotonic() + run_seconds
    watcher = connect(settings, "compliance_reader", autocommit=True)
    purged = 0
    next_purge = time.monotonic()
    try:
        while True:
            if has_pending(watcher):
                total.add(drain_pending(settings, batch_size, shards))
            if time.monotonic() >= next_purge:
                purged += purge_outbox(settings, PURGE_MAX_BATCHES)
                next_purge = time.monotonic() + PURGE_EVERY_SECONDS
            if time.monotonic() >= deadline:
                break
            time.sleep(poll_seconds)
    finally:
        watcher.close()
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
