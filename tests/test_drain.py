"""The drain: exactly once, in order, no fork under races or crashes; verify chain catches tampering."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compliance.settings import Settings
from compliance.snapshot import NOTHING_FINISHED, Snapshot
from tasks.db import connect, utc_text_sql
from tasks.drain import (
    _CLAIM_LATE,
    _CLAIM_NEW,
    _IN_PENDING_RANGES,
    _INDEX_ORDER_ONLY,
    _PENDING_RANGES,
    _RESET_CURSORS,
    DrainError,
    _shard_filter,
    drain_batch,
    drain_pending,
    has_pending,
    outbox_pending,
    purge_drained,
)
from tasks.outbox import emit, emit_batch
from tasks.verify import verify_chain
from tests.conftest import REPO, run_cli, sample_event


def emit_many(settings: Settings, n: int, tenants: int, start: int = 0) -> None:
    """Events ``start`` .. ``start + n - 1`` (sample i carries userId u-i, so emission order can be checked)."""
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(conn, [sample_event(i, tenant=f"tenant-{i % tenants:03d}") for i in range(start, start + n)])


def chain_facts(settings: Settings) -> dict[str, object]:
    with connect(settings, None, autocommit=True) as conn:
        return {
            "events": conn.execute("SELECT count(*) FROM compliance.events").fetchone()[0],
            "distinct_ids": conn.execute("SELECT count(DISTINCT event_id) FROM compliance.events").fetchone()[0],
            "pending": conn.execute("SELECT count(*) FROM compliance.outbox_pending").fetchone()[0],
            # per tenant: seq 1..n with no gap, and chained in emission order (sample i carries userId u-i)
            "gapless": conn.execute(
                "SELECT bool_and(n = max_seq) FROM (SELECT count(*) n, max(seq) max_seq FROM compliance.events "
                "GROUP BY tenant_id) t"
            ).fetchone()[0],
            "in_emission_order": conn.execute(
                "SELECT bool_and(ok) FROM (SELECT i > lag(i, 1, -1) OVER (PARTITION BY tenant_id ORDER BY seq) AS ok "
                "FROM (SELECT tenant_id, seq, substr(payload::jsonb->>'userId', 3)::int AS i FROM compliance.events) e) x"
            ).fetchone()[0],
        }


def test_many_tenants_in_one_batch_land_in_order_with_gapless_seq(settings: Settings) -> None:
    emit_many(settings, 3000, tenants=97)
    with connect(settings, "compliance_drainer") as conn:
        result = drain_batch(conn, 10_000)
    assert (result.drained, result.batches, len(result.per_tenant)) == (3000, 1, 97)
    assert chain_facts(settings) == {
        "events": 3000,
        "distinct_ids": 3000,
        "pending": 0,
        "gapless": True,
        "in_emission_order": True,
    }
    report = verify_chain(settings)
    assert report.ok and report.events == 3000 and report.tenants == 97


def test_text_that_copy_must_escape_is_stored_and_hashed_exactly(settings: Settings) -> None:
    """The drain writes its COPY rows itself (binary, each text as its UTF-8 bytes): backslashes and what COPY's
    text format would read as \\N survive in the text columns, tabs, newlines and CRs in the payload too, and
    characters outside ASCII and the BMP (actor_id and source refuse control characters; rows enqueued before
    that rule keep theirs, see test_server_rules)."""
    awkward = 'a\\b\tc\nd\re "q" \\N é 𝄞'
    printable = 'a\\b "q" \\N é 𝄞 \\t'
    event = sample_event(1, actor_id=printable, source=printable)
    event["payload"]["userAgent"] = awkward
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit(conn, event)
    assert drain_pending.fn(settings).drained == 1
    with connect(settings, None, autocommit=True) as conn:
        actor_id, source, payload = conn.execute(
            "SELECT actor_id, source, payload::jsonb->>'userAgent' FROM compliance.events"
        ).fetchone()
    assert actor_id == source == printable and payload == awkward
    assert verify_chain(settings).ok


def test_parallel_workers_split_tenants_and_keep_each_chain_in_order(settings: Settings) -> None:
    emit_many(settings, 6000, tenants=40)
    result = drain_pending.fn(settings, batch_size=500, workers=3)
    assert (result.drained, len(result.per_tenant)) == (6000, 40)
    assert result.batches >= 3  # every worker took a share
    assert chain_facts(settings) == {
        "events": 6000,
        "distinct_ids": 6000,
        "pending": 0,
        "gapless": True,
        "in_emission_order": True,
    }
    assert verify_chain(settings).ok


@pytest.mark.parametrize(
    "shards",
    [list(range(64)), list(range(32, 64)), list(range(0, 64, 2))],
    ids=["all shards", "a contiguous run", "a scattered set"],
)
def test_a_claim_walks_the_outbox_order_index_from_its_position(settings: Settings, shards: list[int]) -> None:
    # Each batch must cost the same with a million events waiting (or drained and kept for the retention)
    # as with a thousand: an ordered index range from the cursor's position, no scan, no sort.
    emit_many(settings, 20_000, 100)
    where, params = _shard_filter(shards)
    # A delta that holds the whole outbox, and a batch larger than it: the case a planner left alone would
    # answer with a scan and a sort of everything.
    params.update(late=["3"], after_txid="3", after_id=-1, hi="3:99999999:", hi_xmax="99999999", limit=50_000)
    with connect(settings, None) as conn, conn.transaction():
        conn.execute("ANALYZE compliance.outbox")
        conn.execute(_INDEX_ORDER_ONLY, {"on": "off"})
        for claim in (_CLAIM_NEW, _CLAIM_LATE):
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + claim.format(shards=where), params))
            assert "Index Scan using outbox_order" in plan, plan
            assert "Seq Scan" not in plan and "Sort" not in plan, plan
            if len(shards) < 64:
                assert "shard >=" in plan.split("Filter")[0], plan  # the run is checked inside the index


def test_a_full_batch_is_claimed_without_a_temporary_file(settings: Settings) -> None:
    # A claim whose rows the server holds until it ends (DELETE ... RETURNING) spills a 20,000-row batch
    # to a temporary file and back with the default work_mem, every batch.
    emit_many(settings, 20_000, 100)

    def temp_files() -> int:
        with connect(settings, None, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            return int(
                conn.execute("SELECT temp_files FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]
            )

    before = temp_files()
    with connect(settings, None) as conn:
        result = drain_batch(conn, 20_000)
        conn.execute("SELECT pg_stat_force_next_flush()")  # this backend's counters, at its next commit
        conn.commit()
    assert result.drained == 20_000
    assert temp_files() == before


def test_two_drainer_processes_racing_produce_no_fork_gap_or_duplicate(settings: Settings) -> None:
    emit_many(settings, 20_000, tenants=50)
    cmd = [sys.executable, "-m", "tests.helpers.drainer", settings.database_url or "", "400"]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    counts = [int(p.communicate(timeout=240)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(counts) == 20_000
    assert chain_facts(settings) == {
        "events": 20_000,
        "distinct_ids": 20_000,
        "pending": 0,
        "gapless": True,
        "in_emission_order": True,
    }
    assert verify_chain(settings).ok


def test_a_drainer_killed_mid_batch_loses_and_duplicates_nothing(settings: Settings, tmp_path: Path) -> None:
    emit_many(settings, 5000, tenants=20)
    marker = tmp_path / "copied"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.drainer", settings.database_url or "", "2000", "--hang", str(marker)],
        cwd=REPO,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the drainer never reached the middle of a batch"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The killed batch's transaction is rolled back by the server once it notices the dead client.
    deadline = time.monotonic() + 30
    while chain_facts(settings)["events"] != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert chain_facts(settings)["events"] == 0
    assert chain_facts(settings)["pending"] == 5000
    with connect(settings, "compliance_drainer") as conn:
        while drain_batch(conn, 2000).batches:
            pass
    assert chain_facts(settings) == {
        "events": 5000,
        "distinct_ids": 5000,
        "pending": 0,
        "gapless": True,
        "in_emission_order": True,
    }
    assert verify_chain(settings).ok


def test_a_poison_row_is_quarantined_and_the_rest_drain(settings: Settings) -> None:
    emit_many(settings, 10, tenants=2)
    with connect(settings, "compliance_writer", autocommit=True) as w:
        # Another runtime wrote a row that bypassed validation: its payload is not canonical JSON.
        w.execute(
            "INSERT INTO compliance.outbox (event_id, tenant_id, occurred_at, actor_type, actor_id, source, "
            "event_type, payload) VALUES ('019a8b2c-0000-7001-8000-0000000000ff', 'tenant-000', "
            "'2026-11-22T10:00:00.000000Z', 'user', 'u', "
            "'s', 'auth.signout', '{\"b\": 1, \"a\": 2}')"
        )
    emit_many(settings, 10, tenants=2)
    result = drain_pending.fn(settings)
    assert (result.drained, result.poisoned) == (20, 1)
    with connect(settings, None, autocommit=True) as conn:
        poison = conn.execute("SELECT event_id::text, error FROM compliance.outbox_poison").fetchall()
    assert poison == [("019a8b2c-0000-7001-8000-0000000000ff", "payload is not in RFC 8785 canonical form")]
    assert verify_chain(settings).ok


def insert_raw_outbox_rows(settings: Settings, occurred: list[str]) -> list[str]:
    """Rows another runtime wrote straight into the outbox (canonical payload), one per ``occurred_at``."""
    ids = [f"019a8b2c-0000-7001-8000-{i:012x}" for i in range(0xA00, 0xA00 + len(occurred))]
    with connect(settings, "compliance_writer", autocommit=True) as w:
        for event_id, at in zip(ids, occurred, strict=True):
            w.execute(
                "INSERT INTO compliance.outbox (event_id, tenant_id, occurred_at, actor_type, actor_id, source, "
                "event_type, payload) VALUES (%s, 'tenant-raw', %s, 'user', 'u', 's', 'auth.signout', '{}')",
                (event_id, at),
            )
    return ids


def test_timestamps_are_stored_as_the_instant_they_hash(settings: Settings) -> None:
    """Before and after 2000 (PostgreSQL's epoch), at a leap day and at the last microsecond of a year and of
    year 9999, the stored timestamptz prints back as the text that was hashed."""
    occurred = [
        "1970-01-01T00:00:00.000001Z",
        "1999-12-31T23:59:59.999999Z",
        "2000-01-01T00:00:00.000000Z",
        "2024-02-29T12:34:56.789012Z",
        "2026-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59.999999Z",
    ]
    insert_raw_outbox_rows(settings, occurred)
    emit_many(settings, 5, tenants=2)
    result = drain_pending.fn(settings)
    assert (result.drained, result.poisoned) == (11, 0)
    with connect(settings, None, autocommit=True) as conn:
        stored = conn.execute(
            f"SELECT {utc_text_sql('occurred_at')} FROM compliance.events WHERE tenant_id = 'tenant-raw' ORDER BY seq"
        ).fetchall()
    assert [r[0] for r in stored] == occurred
    assert verify_chain(settings).ok


def test_a_timestamp_of_the_right_shape_that_names_no_instant_is_quarantined(settings: Settings) -> None:
    """The outbox's CHECK only holds the shape: month 13 or second 60 would otherwise fail the whole batch
    (or store another instant than the one hashed)."""
    bad = insert_raw_outbox_rows(settings, ["2026-13-01T00:00:00.000000Z", "2026-11-22T23:59:60.000000Z"])
    emit_many(settings, 10, tenants=2)
    result = drain_pending.fn(settings)
    assert (result.drained, result.poisoned) == (10, 2)
    with connect(settings, None, autocommit=True) as conn:
        poison = conn.execute("SELECT event_id::text, error FROM compliance.outbox_poison ORDER BY id").fetchall()
    assert [p[0] for p in poison] == bad
    assert all(p[1].startswith("occurred_at '2026-1") and "not a real instant" in p[1] for p in poison)
    assert verify_chain(settings).ok


def test_an_event_id_emitted_again_after_it_was_chained_is_a_duplicate(settings: Settings) -> None:
    with connect(settings, "compliance_writer", autocommit=True) as w:
        first = emit(w, sample_event(1))
    drain_pending.fn(settings)
    with connect(settings, "compliance_writer", autocommit=True) as w:
        assert emit(w, sample_event(1, event_id=first.event_id)).duplicate
        batch = emit_batch(w, [sample_event(1, event_id=first.event_id), sample_event(2)])
    assert (batch.stored, batch.duplicates) == (1, 1)


def test_an_event_id_chained_and_purged_from_the_outbox_is_still_a_duplicate(settings: Settings) -> None:
    with connect(settings, "compliance_writer", autocommit=True) as w:
        first = emit_batch(w, [sample_event(i) for i in range(3)])
    drain_pending.fn(settings)
    with connect(settings, None, autocommit=True) as owner:
        assert purge_drained(owner, 0) == 3
    with connect(settings, "compliance_writer", autocommit=True) as w:
        assert emit(w, sample_event(0, event_id=first.event_ids[0])).duplicate
        again = emit_batch(w, [sample_event(i, event_id=first.event_ids[i]) for i in range(3)] + [sample_event(3)])
    assert (again.stored, again.duplicates) == (1, 3)
    with connect(settings, None, autocommit=True) as owner:
        assert owner.execute("SELECT count(*) FROM compliance.outbox").fetchone()[0] == 1


def test_a_duplicate_that_slipped_into_the_outbox_is_never_chained_twice(settings: Settings) -> None:
    with connect(settings, "compliance_writer", autocommit=True) as w:
        first = emit(w, sample_event(1))
    drain_pending.fn(settings)
    # Two emits of one id racing the drain can both pass the emit-time check; simulate the loser, written
    # once the first row has been purged from the outbox (until then the outbox's unique index refuses it).
    with connect(settings, None, autocommit=True) as owner:
        assert purge_drained(owner, 0) == 1
        owner.execute(
            "INSERT INTO compliance.outbox (event_id, tenant_id, occurred_at, actor_type, actor_id, source, event_type, "
            'payload) SELECT event_id, tenant_id, to_char(occurred_at, \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\'), '
            "actor_type, actor_id, source, event_type, payload "
            "FROM compliance.events WHERE event_id = %s",
            (first.event_id,),
        )
    with connect(settings, "compliance_writer", autocommit=True) as w:
        emit(w, sample_event(2))
    result = drain_pending.fn(settings)
    assert (result.drained, result.duplicates) == (1, 1)
    assert chain_facts(settings)["events"] == 2 and chain_facts(settings)["pending"] == 0
    assert verify_chain(settings).ok


def _tamper(settings: Settings, statement: str) -> None:
    with connect(settings, None, autocommit=True) as conn:
        conn.execute("ALTER TABLE compliance.events DISABLE TRIGGER events_immutable")
        conn.execute(statement)
        conn.execute("ALTER TABLE compliance.events ENABLE TRIGGER events_immutable")


@pytest.mark.parametrize(
    "statement, what, seq",
    [
        (
            "UPDATE compliance.events SET payload = '{\"userId\":\"someone-else\"}' WHERE tenant_id = 'tenant-001' AND seq = 4",
            "hash_mismatch",
            4,
        ),
        (
            "UPDATE compliance.events SET occurred_at = occurred_at + interval '1 microsecond' "
            "WHERE tenant_id = 'tenant-001' AND seq = 2",
            "hash_mismatch",
            2,
        ),
        ("DELETE FROM compliance.events WHERE tenant_id = 'tenant-001' AND seq = 3", "gap", 3),
        ("DELETE FROM compliance.events WHERE tenant_id = 'tenant-001' AND seq = 5", "head_mismatch", 5),
    ],
)
def test_verify_chain_names_the_tenant_and_seq_of_tampering(
    settings: Settings, env_for, statement: str, what: str, seq: int
) -> None:
    emit_many(settings, 15, tenants=3)
    drain_pending.fn(settings)
    assert verify_chain(settings).ok
    _tamper(settings, statement)
    report = verify_chain(settings)
    assert not report.ok and report.failure is not None
    assert (report.failure.tenant_id, report.failure.seq, report.failure.code) == ("tenant-001", seq, what)
    cli = run_cli(["verify", "chain"], env_for(settings))
    assert cli.returncode == 1
    assert f"tenant tenant-001 seq {seq}: {what}" in cli.stdout
    assert verify_chain(settings, tenant="tenant-002").ok


def test_an_event_committed_after_later_ones_were_drained_is_still_drained_once(settings: Settings) -> None:
    """Outbox ids do not commit in order: a transaction that took its id first and commits last must not
    be skipped by a cursor that has already moved past later ids, nor hold anybody up while it is open."""
    slow = connect(settings, "compliance_writer")
    try:
        emit(slow, sample_event(0, tenant="tenant-000"))  # open: its transaction is running
        emit_many(settings, 10, tenants=1, start=1)  # committed after it started
        with connect(settings, "compliance_drainer") as conn:
            assert drain_batch(conn, 4).drained == 4  # a delta read in several batches
            while drain_batch(conn, 4).batches:
                pass
        assert chain_facts(settings)["events"] == 10
        slow.commit()  # now the first event exists, behind the ten the cursors have passed
    finally:
        slow.close()
    with connect(settings, "compliance_reader", autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM compliance.outbox_pending").fetchone()[0] == 1
        assert outbox_pending(conn)[0] == 1 and has_pending(conn)  # found through lo's in-progress list
    assert drain_pending.fn(settings, batch_size=4).drained == 1
    with connect(settings, "compliance_reader", autocommit=True) as conn:
        assert outbox_pending(conn) == (0, None) and not has_pending(conn)
    facts = chain_facts(settings)
    assert (facts["events"], facts["distinct_ids"], facts["pending"], facts["gapless"]) == (11, 11, 0, True)
    with connect(settings, None, autocommit=True) as conn:
        last = conn.execute("SELECT payload::jsonb->>'userId' FROM compliance.events ORDER BY seq DESC LIMIT 1")
        assert last.fetchone()[0] == "u-0"  # chained when it committed, at the tenant's next seq
    assert verify_chain(settings).ok


def test_a_rolled_back_emit_never_blocks_or_reaches_the_chain(settings: Settings) -> None:
    with connect(settings, "compliance_writer") as w:
        emit(w, sample_event(0))
        w.rollback()
    emit_many(settings, 5, tenants=1, start=1)
    assert drain_pending.fn(settings).drained == 5
    assert chain_facts(settings)["pending"] == 0


def test_drained_rows_are_purged_after_the_retention_and_pending_ones_never(settings: Settings) -> None:
    emit_many(settings, 300, tenants=7)
    assert drain_pending.fn(settings).drained == 300
    emit_many(settings, 50, tenants=7, start=300)  # pending: never purged, whatever their age
    with connect(settings, None, autocommit=True) as owner:
        owner.execute("UPDATE compliance.outbox SET enqueued_at = enqueued_at - interval '1 hour'")
        assert purge_drained(owner, 7200) == 0  # younger than the retention
        assert purge_drained(owner, 600, batch_size=100) == 300  # in batches of 100
        assert owner.execute("SELECT count(*) FROM compliance.outbox").fetchone()[0] == 50
        assert owner.execute("SELECT count(*) FROM compliance.outbox_pending").fetchone()[0] == 50
    assert drain_pending.fn(settings).drained == 50
    facts = chain_facts(settings)
    assert (facts["events"], facts["distinct_ids"], facts["pending"], facts["gapless"]) == (350, 350, 0, True)
    assert verify_chain(settings).ok


def test_the_drain_flow_purges_what_outlived_the_retention(settings: Settings, monkeypatch) -> None:
    from flows.drain import drain_outbox

    emit_many(settings, 40, tenants=3)
    monkeypatch.setenv("COMPLIANCE_DATABASE_URL", settings.database_url or "")
    monkeypatch.setenv("COMPLIANCE_OUTBOX_RETENTION_SECONDS", "0")
    summary = drain_outbox(run_seconds=0)
    assert (summary["drained"], summary["purged"]) == (40, 40)
    with connect(settings, None, autocommit=True) as owner:
        assert owner.execute("SELECT count(*) FROM compliance.outbox").fetchone()[0] == 0


def test_the_cursor_snapshot_reads_as_postgresql_decides_visibility(settings: Settings) -> None:
    snap = Snapshot.parse("100:105:101,103")
    with connect(settings, None, autocommit=True) as conn:
        pg = conn.execute(
            "SELECT x, pg_visible_in_snapshot(x::text::xid8, %s::pg_snapshot) FROM generate_series(95, 110) x",
            (snap.text(),),
        ).fetchall()
    assert [(x, snap.sees_finished(x)) for x, _ in pg] == pg
    assert NOTHING_FINISHED.text() == "1:1:" and not any(NOTHING_FINISHED.sees_finished(x) for x in (1, 3, 10**12))
    with pytest.raises(ValueError, match="not a pg_snapshot"):
        Snapshot.parse("105:100:")


def test_a_cursor_ahead_of_the_databases_transaction_ids_stops_the_drain_and_the_purge(settings: Settings) -> None:
    """After a logical restore the ids start again lower: new rows would look drained, then be purged."""
    emit_many(settings, 5, tenants=1)
    with connect(settings, None, autocommit=True) as owner:
        owner.execute("UPDATE compliance.outbox_cursor SET lo = '9000000000:9000000000:'")
        with pytest.raises(DrainError, match="behind the outbox cursors"):
            purge_drained(owner, 0)
    with connect(settings, "compliance_drainer") as conn, pytest.raises(DrainError, match="restored from a logical"):
        drain_batch(conn)
    with connect(settings, None, autocommit=True) as owner:
        owner.execute(_RESET_CURSORS)
        assert owner.execute("SELECT count(*) FROM compliance.outbox").fetchone()[0] == 5
    assert drain_pending.fn(settings).drained == 5


def test_one_drain_call_empties_the_outbox_when_a_delta_ended_exactly_at_a_full_batch(settings: Settings) -> None:
    emit_many(settings, 8, tenants=2)
    with connect(settings, "compliance_drainer") as conn:
        assert [drain_batch(conn, 4).drained for _ in range(2)] == [4, 4]  # the delta is exhausted, not closed
    emit_many(settings, 5, tenants=2, start=8)
    assert drain_pending.fn(settings, batch_size=4, workers=1).drained == 5
    facts = chain_facts(settings)
    assert (facts["events"], facts["pending"], facts["gapless"], facts["in_emission_order"]) == (13, 0, True, True)


def test_a_purge_batch_walks_the_index_from_the_oldest_row(settings: Settings) -> None:
    """The delete of compliance.purge_drained (read from the function itself), planned as it runs it: the
    outbox in index order from its oldest row, and one index probe of the chains per row, never a scan or a
    hash of every event chained (whose cost would grow with the ledger, every batch)."""
    emit_many(settings, 20_000, 100)
    assert drain_pending.fn(settings).drained == 20_000
    with connect(settings, None) as conn, conn.transaction():
        conn.execute("ANALYZE compliance.outbox")
        conn.execute("ANALYZE compliance.events")
        conn.execute(_INDEX_ORDER_ONLY, {"on": "off"})  # the function's own SET options
        conn.execute("SET LOCAL jit = off")
        source = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'purge_drained'").fetchone()[0]
        delete_sql = source[source.index("DELETE FROM") : source.index(";", source.index("DELETE FROM"))]
        sql = delete_sql.replace("bound", "'99999999'::xid8").replace("p_limit", "50000")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql.replace("cutoff", "clock_timestamp()")))
    assert "Index Scan using outbox_order" in plan and "Seq Scan" not in plan, plan
    assert "using events_event_id on events" in plan and "Hash" not in plan, plan
    assert "Sort" not in plan, plan


def test_the_purge_deletes_the_oldest_rows_up_to_the_first_one_still_kept(settings: Settings) -> None:
    emit_many(settings, 300, tenants=7)
    assert drain_pending.fn(settings).drained == 300
    with connect(settings, None, autocommit=True) as owner:
        owner.execute("UPDATE compliance.outbox SET enqueued_at = enqueued_at - interval '1 hour'")
        first_kept = owner.execute(
            "SELECT id FROM compliance.outbox ORDER BY txid, id OFFSET 120 LIMIT 1"
        ).fetchone()[0]
        owner.execute("UPDATE compliance.outbox SET enqueued_at = clock_timestamp() WHERE id = %s", (first_kept,))
        assert purge_drained(owner, 600, batch_size=50) == 120
        assert owner.execute("SELECT min(id) FROM compliance.outbox").fetchone()[0] == first_kept
        owner.execute(
            "UPDATE compliance.outbox SET enqueued_at = enqueued_at - interval '1 hour' WHERE id = %s", (first_kept,)
        )
        assert purge_drained(owner, 600) == 180
        assert owner.execute("SELECT count(*) FROM compliance.outbox").fetchone()[0] == 0


def test_the_pending_figures_walk_only_what_is_pending_not_what_the_retention_keeps(settings: Settings) -> None:
    emit_many(settings, 20_000, 100)
    assert drain_pending.fn(settings).drained == 20_000  # kept in the outbox for the retention
    emit_many(settings, 7, tenants=3, start=20_000)
    with connect(settings, "compliance_reader", autocommit=True) as conn:
        conn.execute("SELECT 1")
        with connect(settings, None, autocommit=True) as owner:
            owner.execute("ANALYZE compliance.outbox")
        depth, oldest = outbox_pending(conn)
        assert depth == 7 and oldest is not None and has_pending(conn)
        ranges = conn.execute(_PENDING_RANGES).fetchone()
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                f"EXPLAIN SELECT count(*) FROM compliance.outbox_pending WHERE {_IN_PENDING_RANGES}", ranges
            )
        )
    assert "outbox_order" in plan and "Seq Scan on outbox " not in plan, plan
