"""The shard lease: members split the shards between them, never share one, and take up a leaver's."""

from __future__ import annotations

from compliance.settings import SHARD_COUNT, Settings
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.shards import ShardLease, drain_leased, leased_shards, live_members
from tests.test_drain import chain_facts, emit_many


def held_by(leases: list[ShardLease]) -> list[list[int]]:
    return [lease.renew() for lease in leases]


def test_members_split_the_shards_and_take_up_a_leavers_share(settings: Settings) -> None:
    leases = [ShardLease(settings) for _ in range(3)]
    try:
        held_by(leases)  # the first to renew took everything; each releases what is no longer its share
        shares = held_by(leases)
        shares = held_by(leases)
        assert sorted(s for share in shares for s in share) == list(range(SHARD_COUNT))
        assert sorted(len(share) for share in shares) == [21, 21, 22]
        assert all(share == list(range(share[0], share[-1] + 1)) for share in shares)  # contiguous runs
        leases[1].close()
        rest = [leases[0], leases[2]]
        held_by(rest)
        shares = held_by(rest)
        assert sorted(s for share in shares for s in share) == list(range(SHARD_COUNT))
        with connect(settings, None, autocommit=True) as conn:
            assert len(live_members(conn)) == 2
            assert leased_shards(conn) == list(range(SHARD_COUNT))  # each shard locked once
    finally:
        for lease in leases:
            lease.close()


def test_a_drainer_without_a_lease_skips_leased_shards_and_members_drain_theirs(settings: Settings) -> None:
    emit_many(settings, 3000, tenants=200)
    leases = [ShardLease(settings), ShardLease(settings)]
    try:
        held_by(leases)
        held_by(leases)
        assert drain_pending.fn(settings).drained == 0  # every shard is leased
        assert drain_leased.fn(leases, 500).drained == 3000
    finally:
        for lease in leases:
            lease.close()
    facts = chain_facts(settings)
    assert facts == {"events": 3000, "distinct_ids": 3000, "pending": 0, "gapless": True, "in_emission_order": True}
