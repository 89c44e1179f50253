"""PostgreSQL restarted (fast and immediate shutdown) in the middle of a drain and of an anchor."""

from __future__ import annotations

import pytest

from tasks.verify import verify_chain
from tests.faults.conftest import FaultStack
from tests.faults.ledger import anchored_exactly_once, drain_all, emit_many, exact_chain

EVENTS = 60_000
TENANTS = 300


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarted_in_the_middle_of_a_drain(fault_stack: FaultStack, mode: str) -> None:
    emit_many(fault_stack.settings, EVENTS, TENANTS)
    fault_stack.env["COMPLIANCE_DRAIN_BATCH_SIZE"] = "500"  # many small transactions: the restart lands mid-drain
    proc = fault_stack.worker("drain")
    fault_stack.wait_for("SELECT count(*) > 0 FROM compliance.events", proc=proc)
    fault_stack.pg.restart(mode)
    chained_before = fault_stack.scalar("SELECT count(*) FROM compliance.events")
    assert 0 < chained_before < EVENTS, "the restart did not land in the middle of the drain"
    # The drain task retries on a lost connection (1 s, 5 s, 15 s): the same flow run finishes the outbox.
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert exact_chain(fault_stack.settings, EVENTS)
    assert verify_chain(fault_stack.settings).ok


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarted_in_the_middle_of_an_anchor(fault_stack: FaultStack, mode: str) -> None:
    emit_many(fault_stack.settings, 20_000, TENANTS)
    drain_all(fault_stack.settings)
    # Hold the anchor between its two halves: S3 hangs, so the run is frozen in the database and its
    # objects are on their way when the database goes away.
    fault_stack.s3.pause()
    proc = fault_stack.worker("anchor")
    fault_stack.wait_for("SELECT count(*) = 1 FROM compliance.anchor_runs", proc=proc)
    frozen = fault_stack.scalar("SELECT cadence_id FROM compliance.anchor_runs")
    fault_stack.pg.restart(mode)
    fault_stack.s3.resume()
    # The objects land, recording them fails on the dead connection; the task retries and finishes the
    # frozen run with the same cadence id and the same bytes.
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert fault_stack.scalar("SELECT count(*) FROM compliance.anchors") == 1
    assert fault_stack.scalar("SELECT cadence_id FROM compliance.anchors") == frozen
    assert anchored_exactly_once(fault_stack.settings, 20_000)
    assert exact_chain(fault_stack.settings, 20_000)
    assert verify_chain(fault_stack.settings).ok
