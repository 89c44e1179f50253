"""The S3 server stopped during an anchor and during an export."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tasks.anchoring import anchor_once
from tasks.verify import verify_chain
from tests.faults.conftest import FaultStack
from tests.faults.ledger import (
    anchored_exactly_once,
    drain_all,
    emit_many,
    exact_chain,
    export_objects,
    job_row,
    request_job,
    verified_export,
)
from tests.test_anchor import KEY

EVENTS = 20_000
TENANTS = 200


def test_s3_stopped_in_the_middle_of_an_anchor_the_task_retries_with_the_same_cadence(fault_stack: FaultStack) -> None:
    emit_many(fault_stack.settings, EVENTS, TENANTS)
    drain_all(fault_stack.settings)
    fault_stack.s3.pause()  # the run freezes, then waits on its first object ...
    proc = fault_stack.worker("anchor")
    fault_stack.wait_for("SELECT count(*) = 1 FROM compliance.anchor_runs", proc=proc)
    frozen = fault_stack.scalar("SELECT cadence_id FROM compliance.anchor_runs")
    time.sleep(0.5)
    fault_stack.s3.stop()  # ... and S3 goes away: connections reset, new ones refused
    time.sleep(4)
    assert fault_stack.scalar("SELECT count(*) FROM compliance.anchors") == 0
    fault_stack.s3.start()  # back before the task's retry (5 s after its failure)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert fault_stack.scalar("SELECT count(*) FROM compliance.anchors") == 1
    assert fault_stack.scalar("SELECT cadence_id FROM compliance.anchors") == frozen
    assert anchored_exactly_once(fault_stack.settings, EVENTS)
    assert exact_chain(fault_stack.settings, EVENTS)
    assert verify_chain(fault_stack.settings).ok


def test_an_anchor_run_failed_by_a_long_s3_outage_is_finished_by_the_next_run(fault_stack: FaultStack) -> None:
    settings = fault_stack.settings
    emit_many(settings, EVENTS, TENANTS)
    drain_all(settings)
    fault_stack.s3.stop()
    with pytest.raises(Exception, match="(?i)connect|endpoint"):
        anchor_once(settings, KEY)  # one attempt; the flow's task would retry it three times, then fail
    frozen = fault_stack.scalar("SELECT cadence_id FROM compliance.anchor_runs WHERE completed_at IS NULL")
    emit_many(settings, 1000, TENANTS)  # the ledger keeps growing while S3 is away
    drain_all(settings)
    fault_stack.s3.start()
    outcomes = anchor_once(settings, KEY)  # the next scheduled run
    assert [(o.cadence_id, o.resumed) for o in outcomes][0] == (frozen, True)
    assert len(outcomes) == 2 and outcomes[1].events == 1000  # then it anchors what came since
    assert anchored_exactly_once(settings, EVENTS + 1000)
    assert verify_chain(settings).ok


def test_s3_stopped_during_an_export_fails_the_job_and_a_new_request_completes(
    fault_stack: FaultStack, tmp_path: Path
) -> None:
    settings = fault_stack.settings
    emit_many(settings, EVENTS, TENANTS)
    drain_all(settings)
    anchor_once(settings, KEY)
    job = request_job(settings)
    fault_stack.s3.pause()  # the runner makes the file, then waits on its upload ...
    proc = fault_stack.worker("export", job)
    fault_stack.wait_for(f"SELECT status = 'running' FROM compliance.export_jobs WHERE job_id = '{job}'", proc=proc)
    time.sleep(2)
    fault_stack.s3.stop()  # ... and S3 goes away
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1  # the flow run fails (the operator's alert) ...
    status, error, key = job_row(settings, job)
    assert status == "failed" and key is None  # ... and the job says why; it is never left running
    assert error is not None and "127.0.0.1" in error and ("connect" in error.lower() or "endpoint" in error.lower())
    fault_stack.s3.start()
    assert export_objects(settings, job) == []  # no partial file was published
    again = request_job(settings)
    proc = fault_stack.worker("export", again)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    report = verified_export(settings, again, tmp_path)
    assert report.ok and report.rows == EVENTS and report.anchored == EVENTS, report.summary()
    drain_all(settings)
    assert exact_chain(settings, EVENTS + 2)  # each export request is itself an audited event
