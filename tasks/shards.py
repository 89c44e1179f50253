"""Shard leases: which drainer owns which outbox shards, when several flow runs drain at once.

Every drainer connection is a *member*: it holds a session-level advisory lock on one member slot
(:data:`MEMBER_CLASS`). At each poll it counts the live members of its database (``pg_locks``), takes its
rank among them, and wants the rank's contiguous run of the 64 shards (:func:`tasks.drain.worker_shards`).
It releases the shards it holds and no longer wants, and locks the ones it wants and does not hold, with
session-level advisory locks in the drain's own shard namespace. Those are the lease:

- *Disjoint.* A shard's lock is held by one session at most, so no shard is ever drained by two runs at
  once; a wanted shard still held by its previous owner is taken at a later poll, once that owner has let
  it go. Drainers without a lease (``compliance drain``, a flow given explicit ``shards``) take the same
  locks per batch (transaction-scoped), so they skip leased shards and a member skips theirs.
- *Fenced.* A member drains on the very connection that holds its locks: a batch can only commit while
  that session lives, and the locks live exactly as long as the session. A drainer that lost its lease
  cannot commit anything afterwards, however late it wakes up.
- *Survived by a crash.* The locks die with the session. A SIGKILLed process's sockets are closed by its
  kernel, so its backend ends and its locks go at once; a host that vanishes is found by the server's TCP
  keepalives (:data:`KEEPALIVE_SECONDS`), a process that hangs between batches by ``idle_session_timeout``
  (:data:`LEASE_SECONDS`). The survivors count one member fewer at their next poll and take its shards.
- *Rebalanced with no manual step.* Start a run or stop one and the member count changes; every member
  moves to its new share at its next poll.

A lease table with expiry times would need fencing tokens checked inside every batch to give the same
guarantee against a paused drainer; the session locks give it by construction, and nothing to clean up.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import psycopg
from prefect import task

from compliance.chain import ServerRules
from compliance.settings import SHARD_COUNT, Settings
from tasks.db import connect
from tasks.drain import DRAIN_RETRIES, SHARD_LOCK_CLASS, DrainResult, drain_batch, server_rules, worker_shards

__all__ = [
    "KEEPALIVE_SECONDS",
    "LEASE_SECONDS",
    "MEMBER_CLASS",
    "ShardLease",
    "drain_leased",
    "leased_shards",
    "live_members",
    "renew_all",
]

MEMBER_CLASS = 0x646D  # advisory lock namespace of the drainer members ("dm"); the shards' is the drain's
MEMBER_SLOTS = 4096
LEASE_SECONDS = 30  # a member silent this long (no statement, not in a transaction) is ended by the server
KEEPALIVE = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}
KEEPALIVE_SECONDS = 10 + 5 * 3  # when the server gives up on a peer that stopped answering

_THIS_DATABASE = "database = (SELECT oid FROM pg_database WHERE datname = current_database())"
# An advisory lock on two int4 keys shows in pg_locks as classid = key1, objid = key2, objsubid = 2.
_HELD = (
    "SELECT objid::int FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND classid = %s "
    f"AND granted AND {_THIS_DATABASE} ORDER BY 1"
)
_SESSION = (
    "SELECT set_config('idle_session_timeout', %s, false), set_config('tcp_keepalives_idle', %s, false), "
    "set_config('tcp_keepalives_interval', %s, false), set_config('tcp_keepalives_count', %s, false)"
)


def live_members(conn: psycopg.Connection) -> list[int]:
    """The member slots held in this database, in order."""
    return [r[0] for r in conn.execute(_HELD, (MEMBER_CLASS,))]


def leased_shards(conn: psycopg.Connection) -> list[int]:
    """The shards held in this database by session-level locks (the leases), in order; a shard held twice
    would show twice."""
    return [r[0] for r in conn.execute(_HELD, (SHARD_LOCK_CLASS,))]


class ShardLease:
    """One drainer member: a connection (acting as the drainer) that holds a member slot and its share of
    the shards. :meth:`renew` at every poll; the connection is reopened, and the member joins again, when
    it was lost."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn: psycopg.Connection | None = None
        self.member: int | None = None
        self.rank = -1  # among the live members, once joined
        self.members = 0
        self.held: set[int] = set()
        self.rules: ServerRules | None = None

    def _join(self) -> None:
        self.close()
        conn = connect(self.settings, "compliance_drainer", autocommit=True)
        try:
            conn.execute(_SESSION, (f"{LEASE_SECONDS}s", *(str(v) for v in KEEPALIVE.values())))
            self.rules = server_rules(conn)
            while self.member is None:
                taken = set(live_members(conn))
                free = next((s for s in range(MEMBER_SLOTS) if s not in taken), None)
                if free is None:
                    raise RuntimeError(f"all {MEMBER_SLOTS} drainer member slots are taken")
                if conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (MEMBER_CLASS, free)).fetchone()[0]:  # type: ignore[index]
                    self.member = free
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def renew(self) -> list[int]:
        """Move to this member's current share: release what it should no longer hold, lock what it should
        and can. Returns the shards held now."""
        if self.conn is None or self.conn.closed or self.conn.broken:
            self._join()
        assert self.conn is not None and self.member is not None
        members = live_members(self.conn)
        self.members, self.rank = len(members), members.index(self.member)
        wanted = set(worker_shards(range(SHARD_COUNT), self.members)[self.rank])
        for shard in sorted(self.held - wanted):
            self.conn.execute("SELECT pg_advisory_unlock(%s, %s)", (SHARD_LOCK_CLASS, shard))
            self.held.discard(shard)
        missing = sorted(wanted - self.held)
        if missing:
            got = self.conn.execute(
                "SELECT s FROM unnest(%s::int[]) s WHERE pg_try_advisory_lock(%s, s)", (missing, SHARD_LOCK_CLASS)
            ).fetchall()
            self.held.update(r[0] for r in got)
        return sorted(self.held)

    def drain(self, batch_size: int, max_batches: int | None = None) -> DrainResult:
        """Drain the held shards batch by batch until they are empty, on the lease's own connection."""
        total = DrainResult()
        if not self.held or self.conn is None:
            return total
        shards = sorted(self.held)
        while max_batches is None or total.batches < max_batches:
            one = drain_batch(self.conn, batch_size, shards, self.rules)
            if one.batches == 0:
                break
            total.add(one)
        return total

    def close(self) -> None:
        """Leave: the session ends, and with it the member slot and every shard lock."""
        if self.conn is not None:
            self.conn.close()
        self.conn, self.member, self.held, self.rank = None, None, set(), -1


@task(name="drain-leased", **DRAIN_RETRIES)
def drain_leased(leases: Sequence[ShardLease], batch_size: int) -> DrainResult:
    """Renew every lease and drain its shards until they are empty, the leases' connections at once (each
    its own shards, so tenants never cross connections). A lost connection is retried: the lease joins
    again on a new one and takes its share anew."""
    total = DrainResult()
    renew_all(leases)  # one after the other: a lease lets go of a share before the next one wants it
    if len(leases) == 1:
        total.add(leases[0].drain(batch_size))
        return total
    with ThreadPoolExecutor(max_workers=len(leases), thread_name_prefix="drain") as pool:
        for result in [pool.submit(lease.drain, batch_size) for lease in leases]:
            total.add(result.result())  # the first failure is raised, after every lease has stopped
    return total


def renew_all(leases: Sequence[ShardLease]) -> list[int]:
    """Renew every lease, twice over: a lease that joined after the others has its share let go by them in
    the second pass, and takes it. The shards these leases hold, in order."""
    for _ in range(2):
        held = sorted(shard for lease in leases for shard in lease.renew())
    return held

