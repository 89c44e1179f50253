"""Draining the outbox into the per-tenant hash chains, one transaction per batch.

A batch: lock the outbox shards no other drainer holds (transaction-scoped
advisory locks, skipping the locked ones; a tenant always falls in the same
shard, so one tenant's chain is only ever extended by one drainer at a time),
read up to ``batch_size`` rows of those shards that their cursors say are not
drained yet, lock the tenants' chain heads, chain the rows (docs/format.md §1), COPY
them into ``compliance.events``, quarantine rows that cannot be chained in
``compliance.outbox_poison``, move the heads and the shards' cursors, then
commit. A crash anywhere before the commit leaves every row pending; after
it, every row is chained exactly once (or set aside with its reason).

The outbox is never written by the drain: a shard's cursor
(``compliance.outbox_cursor``, see ``sql/0007_outbox_cursor.sql`` and
:mod:`compliance.snapshot`) is a pair of PostgreSQL snapshots and a position,
so marking 50,000 rows drained is one small UPDATE, and drained rows are
purged in bulk after ``COMPLIANCE_OUTBOX_RETENTION_SECONDS``
(:func:`purge_drained`).
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

from compliance.chain import (
    COPY_BINARY_HEADER,
    COPY_BINARY_TRAILER,
    GENESIS_HASH,
    ServerRules,
    chain_copy_rows,
    group_chainable,
)
from compliance.events import Registry, kept_payload_text
from compliance.settings import SHARD_COUNT, Settings
from compliance.snapshot import NOTHING_FINISHED, Snapshot
from compliance.timefmt import utc_text
from tasks.db import connect

__all__ = [
    "DRAIN_RETRIES",
    "SHARDS",
    "SHARD_LOCK_CLASS",
    "DrainError",
    "DrainResult",
    "drain_batch",
    "drain_pending",
    "has_pending",
    "outbox_pending",
    "pending_at_least",
    "purge_drained",
    "purge_outbox",
    "server_rules",
    "transient",
    "worker_shards",
]

SHARDS = SHARD_COUNT
SHARD_LOCK_CLASS = 0x6472  # advisory lock namespace of the drain shards ("dr")
# The retry policy of a task that drains (drain-pending, drain-leased): outages and serialization trouble
# are retried (:func:`transient`), a bug is not.
DRAIN_RETRIES: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "retries": 3,
    "retry_delay_seconds": [1, 5, 15],
    "retry_condition_fn": lambda task, run, state: transient(state),
}
_COPY_CHUNK_ROWS = 2_000  # COPY rows sent per write: the server stores them while the next rows are built
_MIN_BIGINT = -(2**63)

_CURSORS = (
    "SELECT shard, lo::text, hi::text, pos_txid::text, pos_id FROM compliance.outbox_cursor "
    "WHERE shard = ANY(%s) ORDER BY shard"
)
# Read in binary (the texts come as they are; event_id also as its 16 bytes, the binary COPY's form of it).
_ROW = (
    "id, event_id::text, tenant_id, occurred_at, actor_type, actor_id, source, event_type, payload, redacted_fields, "
    "written_by, uuid_send(event_id)"
)
# A delta (rows whose transaction `hi` sees finished and `lo` does not) is read in (txid, id) order, in two
# parts that follow each other in that order: the rows of transactions `lo` saw running (txid in its
# in-progress list, all below lo's xmax), then the rows of transactions that started after `lo`
# (lo's xmax <= txid < hi's xmax). Both walk the outbox_order index from the position reached, so a batch
# costs the same however many drained rows wait for the purge or pending rows wait behind it.
_CLAIM_LATE = (
    f"SELECT {_ROW} FROM compliance.outbox "
    "WHERE txid = ANY(%(late)s::text[]::xid8[]) AND (txid, id) > (%(after_txid)s::text::xid8, %(after_id)s) "
    "AND pg_visible_in_snapshot(txid, %(hi)s::pg_snapshot){shards} ORDER BY txid, id LIMIT %(limit)s"
)
_CLAIM_NEW = (
    f"SELECT {_ROW} FROM compliance.outbox "
    "WHERE (txid, id) > (%(after_txid)s::text::xid8, %(after_id)s) AND txid < %(hi_xmax)s::text::xid8 "
    "AND pg_visible_in_snapshot(txid, %(hi)s::pg_snapshot){shards} ORDER BY txid, id LIMIT %(limit)s"
)
# The planner, seeing a range that covers most of the table, prefers a scan and a sort of all of it (an
# external sort of the whole backlog, every batch); the claims run with both switched off, so the only
# plan left is the ordered index range that stops after `limit` rows.
_INDEX_ORDER_ONLY = "SELECT set_config('enable_seqscan', %(on)s, true), set_config('enable_sort', %(on)s, true)"
_EVENT_COLUMNS = (
    "tenant_id, seq, event_id, occurred_at, recorded_at, actor_type, actor_id, source, event_type, "
    "payload, redacted_fields, prev_hash, event_hash"
)
# Drained rows are purged, and cursors moved, only through the SECURITY DEFINER functions of
# sql/0009_server_rules.sql: the drainer has no DELETE on the outbox and no UPDATE on the cursors, so it can
# neither drop a row that was never chained nor move a cursor back (or past the present).
_PURGE = "SELECT compliance.purge_drained(%s::float8, %s::int)"
_ADVANCE = "SELECT compliance.advance_cursors(%s::int[], %s::pg_snapshot, %s::pg_snapshot, %s::text::xid8, %s::bigint)"
# The roles that are the ledger itself, besides the schema's owner: they alone may write the tenant
# ledger:platform and the types admin.* (the exporter audits cross-tenant reads there).
LEDGER_ROLES = frozenset({"compliance_exporter"})
_SERVER_RULES = (
    "SELECT (SELECT tableowner::text FROM pg_tables WHERE schemaname = 'compliance' AND tablename = 'outbox'), "
    "(SELECT coalesce(json_object_agg(event_type, json_build_object('keep', keep, 'caps', caps, 'urls', urls)), "
    "'{}') FROM compliance.event_types)"
)


# What is pending, read through compliance.outbox_pending with the view's two index ranges given as values:
# planned with a subquery's unknown result, the view's ranges were estimated at a third of the table and
# scanned all of it, every drained row kept for the retention (docs/benchmarks.md has the difference).
_PENDING_RANGES = (
    "SELECT min(pg_snapshot_xmax(lo))::text, "
    "ARRAY(SELECT DISTINCT pg_snapshot_xip(lo)::text FROM compliance.outbox_cursor) FROM compliance.outbox_cursor"
)
_IN_PENDING_RANGES = "(txid >= %s::text::xid8 OR txid = ANY(%s::text[]::xid8[]))"


class DrainError(RuntimeError):
    """The drain cannot run as the database is set up; the message says what to change."""


@dataclass
class DrainResult:
    """What one or more batches did."""

    drained: int = 0
    poisoned: int = 0
    duplicates: int = 0
    batches: int = 0
    seconds: float = 0.0  # time spent inside batches, summed over the workers (so not wall time)
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
        "SELECT s FROM unnest(%s::int[]) s WHERE pg_try_advisory_xact_lock(%s, s)", (wanted, SHARD_LOCK_CLASS)
    ).fetchall()
    return [r[0] for r in rows]


@dataclass
class _Cursor:
    """Where the drain of some shards stands (shards drained together share one cursor value)."""

    shards: list[int]
    lo: str
    hi: str | None
    pos: tuple[int, int] | None  # (txid, id) of the last row drained in the delta (lo, hi]


def _cursors(conn: psycopg.Connection, shards: list[int]) -> list[_Cursor]:
    found = conn.execute(_CURSORS, (shards,)).fetchall()
    if len(found) != len(shards):
        missing = sorted(set(shards) - {r[0] for r in found})
        raise DrainError(f"compliance.outbox_cursor has no row for shards {missing}: run `compliance migrate`")
    groups: dict[tuple[Any, ...], _Cursor] = {}
    for shard, lo, hi, pos_txid, pos_id in found:
        key = (lo, hi, pos_txid, pos_id)
        if key in groups:
            groups[key].shards.append(shard)
        else:
            groups[key] = _Cursor([shard], lo, hi, None if pos_txid is None else (int(pos_txid), pos_id))
    return list(groups.values())


def _shard_filter(shards: list[int]) -> tuple[str, dict[str, Any]]:
    if len(shards) == SHARDS:
        return "", {}
    # shard is the index's last key column: a range is checked inside the index, an exact set after it.
    where = " AND shard BETWEEN %(first)s AND %(last)s"
    params: dict[str, Any] = {"first": shards[0], "last": shards[-1]}
    if shards[-1] - shards[0] + 1 != len(shards):
        where += " AND shard = ANY(%(shards)s)"
        params["shards"] = shards
    return where, params


def _claim(
    conn: psycopg.Connection, shards: list[int], lo_text: str, hi: str, pos: tuple[int, int] | None, limit: int
) -> list[tuple[Any, ...]]:
    """The next ``limit`` rows of ``shards`` in the delta (finished by ``hi``, not by ``lo``) after ``pos``,
    in (txid, id) order."""
    lo, hi_xmax = Snapshot.parse(lo_text), Snapshot.parse(hi).xmax
    where, params = _shard_filter(sorted(shards))
    params.update(hi=hi, limit=limit)
    rows: list[tuple[Any, ...]] = []
    late = [x for x in lo.xip if pos is None or x >= pos[0]]
    if late:
        after = pos or (0, _MIN_BIGINT)
        params.update(late=[str(x) for x in late], after_txid=str(after[0]), after_id=after[1])
        rows = conn.execute(_CLAIM_LATE.format(shards=where), params, binary=True).fetchall()
    if len(rows) < limit:
        after = pos if pos is not None and pos[0] >= lo.xmax else (lo.xmax, _MIN_BIGINT)
        params.update(after_txid=str(after[0]), after_id=after[1], hi_xmax=str(hi_xmax), limit=limit - len(rows))
        rows += conn.execute(_CLAIM_NEW.format(shards=where), params, binary=True).fetchall()
    return rows


def _claim_batch(conn: psycopg.Connection, shards: list[int], batch_size: int) -> list[tuple[Any, ...]]:
    """Up to ``batch_size`` undrained rows of ``shards`` (locked by this transaction), each shard's in
    (txid, id) order, and their cursors moved past them (in this transaction). Fewer rows than
    ``batch_size`` means that nothing else of these shards had committed when the batch began."""
    rows: list[tuple[Any, ...]] = []
    now: str | None = None
    conn.execute(_INDEX_ORDER_ONLY, {"on": "off"})
    for cursor in _cursors(conn, shards):
        lo, hi, pos = cursor.lo, cursor.hi, cursor.pos
        while len(rows) < batch_size:
            room = batch_size - len(rows)
            fresh = hi is None
            if hi is None:  # a new delta: every transaction finished by now and not by lo
                if now is None:
                    now = conn.execute("SELECT pg_current_snapshot()::text").fetchone()[0]  # type: ignore[index]
                _refuse_ids_behind(Snapshot.parse(now), Snapshot.parse(lo))
                hi = now
            got = _claim(conn, cursor.shards, lo, hi, pos, room)
            rows += got
            if len(got) == room:  # the batch is full: the delta goes on from its last row
                last = conn.execute("SELECT txid::text FROM compliance.outbox WHERE id = %s", (got[-1][0],))
                pos = (int(last.fetchone()[0]), got[-1][0])  # type: ignore[index]
                break
            lo, hi, pos = hi, None, None  # the delta is drained: hi becomes the new lo
            if fresh:
                break  # and it was read up to now
        if (lo, hi, pos) != (cursor.lo, cursor.hi, cursor.pos):
            conn.execute(
                _ADVANCE,
                (cursor.shards, lo, hi, None if pos is None else str(pos[0]), None if pos is None else pos[1]),
            )
    conn.execute(_INDEX_ORDER_ONLY, {"on": "on"})
    return rows


_RESET_CURSORS = (
    f"UPDATE compliance.outbox_cursor SET lo = '{NOTHING_FINISHED.text()}', hi = NULL, pos_txid = NULL, pos_id = NULL"
)


def _refuse_ids_behind(now: Snapshot, cursor: Snapshot) -> None:
    """Transaction ids only grow, unless the database was rebuilt from a logical dump (pg_dump keeps the rows
    and the cursors, not the ids): new rows would then look drained, and be purged unchained."""
    if now.xmax < cursor.xmax:
        raise DrainError(
            f"the database's transaction ids ({now.xmax}) are behind the outbox cursors ({cursor.xmax}): was it "
            f"restored from a logical dump? As the owner, run `{_RESET_CURSORS}`; the drain then reads the whole "
            "outbox again and chains only the events not chained yet"
        )


def server_rules(conn: psycopg.Connection) -> ServerRules:
    """The rules the drain holds each row to, read from the database: its registry (``compliance.event_types``,
    synced by `compliance migrate`) and the ledger's roles (the outbox's owner and :data:`LEDGER_ROLES`)."""
    with conn.transaction():  # of its own: a read left open would turn the next batch into a savepoint
        owner, types = conn.execute(_SERVER_RULES).fetchone()  # type: ignore[misc]
    if not types:
        raise DrainError("compliance.event_types is empty: run `compliance migrate`, which syncs the registry")
    return ServerRules(Registry(types), LEDGER_ROLES | {owner})


def drain_batch(
    conn: psycopg.Connection,
    batch_size: int = 50_000,
    shards: Sequence[int] | None = None,
    rules: ServerRules | None = None,
) -> DrainResult:
    """Chain up to ``batch_size`` pending outbox rows in one transaction (``conn`` acts as the drainer); rows
    that break ``rules`` (read from the database when not given) are set aside in compliance.outbox_poison."""
    started = time.perf_counter()
    result = DrainResult()
    if rules is None:
        rules = server_rules(conn)
    with conn.transaction():
        mine = _locked_shards(conn, shards)
        if not mine:
            return result
        rows = _claim_batch(conn, mine, batch_size)
        if not rows:
            return result  # the cursors still moved: what the outbox holds is drained up to now
        recorded_at_dt: datetime = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        recorded_at = utc_text(recorded_at_dt)

        by_tenant, poisoned = group_chainable(rows, rules)

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
            # The rows stay in the outbox, drained (purged after the retention); this copy of them says why they
            # were not chained, and keeps of each payload only what redaction keeps (it was written past emit).
            conn.execute(
                "INSERT INTO compliance.outbox_poison (id, event_id, tenant_id, occurred_at, actor_type, actor_id, "
                "source, event_type, payload, redacted_fields, enqueued_at, written_by, error) "
                "SELECT o.id, o.event_id, o.tenant_id, o.occurred_at, o.actor_type, o.actor_id, o.source, "
                "o.event_type, v.payload, o.redacted_fields, o.enqueued_at, o.written_by, v.error "
                "FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS v(id, error, payload) "
                "JOIN compliance.outbox o ON o.id = v.id",
                (
                    [row[0] for row, _ in poisoned],
                    [reason for _, reason in poisoned],
                    [kept_payload_text(row[8], rules.registry.rule(row[7])) for row, _ in poisoned],
                ),
            )
    result.drained = sum(v[0] for v in per_tenant.values())
    result.poisoned = len(poisoned)
    result.duplicates = duplicates
    result.batches = 1
    result.per_tenant = per_tenant
    result.seconds = time.perf_counter() - started
    return result


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
    with conn.cursor().copy(f"COPY compliance.events ({_EVENT_COLUMNS}) FROM STDIN (FORMAT binary)") as copy:
        copy.write(COPY_BINARY_HEADER)
        for tenant, rows in by_tenant.items():
            seq, prev = heads[tenant]
            last, head = chain_copy_rows(rows, tenant, seq, prev, recorded_at, lines)
            new_heads.append((tenant, last, head))
            per_tenant[tenant] = [last - seq, seq + 1, last]
            if len(lines) >= _COPY_CHUNK_ROWS:
                copy.write("".join(lines).encode("latin-1"))
                lines.clear()
        if lines:
            copy.write("".join(lines).encode("latin-1"))
        copy.write(COPY_BINARY_TRAILER)
    return new_heads, per_tenant


@task(name="drain-pending", **DRAIN_RETRIES)
def drain_pending(
    settings: Settings,
    batch_size: int | None = None,
    shards: list[int] | None = None,
    max_batches: int | None = None,
    workers: int | None = None,
) -> DrainResult:
    """Drain batch after batch until the outbox (of the shards this drainer can lock) is empty.

    ``workers`` connections (default ``settings.drain_workers``) drain at once, each taking a contiguous
    run of the shards (:func:`worker_shards`): tenants never cross workers, so each chain still grows in
    outbox order, and while the server stores one worker's batch the other chains its own (the client's
    hashing and the server's writes overlap). ``max_batches`` bounds each worker.
    """
    wanted = list(range(SHARDS)) if shards is None else sorted(set(shards))
    workers = min(workers or settings.drain_workers, len(wanted)) or 1
    size = batch_size or settings.drain_batch_size
    if workers == 1:
        return _drain_shards(settings, size, shards, max_batches)
    groups = worker_shards(wanted, workers)
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
        rules = server_rules(conn)
        while max_batches is None or total.batches < max_batches:
            one = drain_batch(conn, batch_size, shards, rules)
            if one.batches == 0:
                break
            total.add(one)
    finally:
        conn.close()
    return total


def _read_pending(conn: psycopg.Connection, select: str) -> tuple[Any, ...]:
    ranges = conn.execute(_PENDING_RANGES).fetchone()
    # prepare=False: planned with these values every time, never as a generic plan
    return conn.execute(select.format(where=_IN_PENDING_RANGES), ranges, prepare=False).fetchone()  # type: ignore[return-value]


def outbox_pending(conn: psycopg.Connection) -> tuple[int, datetime | None]:
    """How many outbox rows wait to be drained, and when the oldest of them was enqueued."""
    count, oldest = _read_pending(
        conn, "SELECT count(*), min(enqueued_at) FROM compliance.outbox_pending WHERE {where}"
    )
    return int(count), oldest


def has_pending(conn: psycopg.Connection) -> bool:
    """Whether any outbox row waits to be drained (stops at the first one)."""
    return bool(_read_pending(conn, "SELECT EXISTS (SELECT 1 FROM compliance.outbox_pending WHERE {where})")[0])


def worker_shards(shards: Sequence[int], workers: int) -> list[list[int]]:
    """``shards`` split into ``workers`` contiguous runs of near-equal length (a run is a range inside the
    outbox_order index, so a worker skips the other workers' rows without reading them)."""
    ordered = sorted(shards)
    cuts = [len(ordered) * i // workers for i in range(workers + 1)]
    return [ordered[cuts[i] : cuts[i + 1]] for i in range(workers)]


def purge_drained(
    conn: psycopg.Connection, retention_seconds: float, batch_size: int = 50_000, max_batches: int | None = None
) -> int:
    """Delete drained outbox rows enqueued more than ``retention_seconds`` ago, ``batch_size`` rows per
    transaction (``conn`` in autocommit acts as the drainer); the number deleted. Never touches a row that is
    not drained and chained (or set aside): ``compliance.purge_drained`` checks both on the server."""
    with conn.transaction():
        now, furthest = conn.execute(
            "SELECT pg_current_snapshot()::text, (SELECT lo::text FROM compliance.outbox_cursor "
            "ORDER BY pg_snapshot_xmax(lo) DESC LIMIT 1)"
        ).fetchone()  # type: ignore[misc]
        _refuse_ids_behind(Snapshot.parse(now), Snapshot.parse(furthest))
    purged = batches = 0
    while max_batches is None or batches < max_batches:
        n = conn.execute(_PURGE, (float(retention_seconds), batch_size)).fetchone()[0]  # type: ignore[index]
        purged += n
        batches += 1
        if n < batch_size:
            break
    return purged


@task(
    name="purge-outbox",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=lambda task, run, state: transient(state),
)
def purge_outbox(settings: Settings, max_batches: int | None = None) -> int:
    """Purge drained outbox rows older than ``settings.outbox_retention_seconds``; the number deleted."""
    with connect(settings, "compliance_drainer", autocommit=True) as conn:
        return purge_drained(conn, settings.outbox_retention_seconds, settings.drain_batch_size, max_batches)


def transient(state: Any) -> bool:
    """Retry database outages and serialization trouble; a bug is not retried."""
    try:
        state.result()
    except (psycopg.OperationalError, psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
        return True
    except Exception:
        return False
    return False


def pending_at_least(conn: psycopg.Connection, n: int) -> bool:
    """Whether at least ``n`` outbox rows wait to be drained (reads no further than the n-th)."""
    select = "SELECT count(*) FROM (SELECT 1 FROM compliance.outbox_pending WHERE {where} LIMIT " + str(int(n)) + ") p"
    return int(_read_pending(conn, select)[0]) >= n
