"""SIGKILL of each flow's process at random points, repeated; then the next run, and exact counts.

The seed of each test is printed by pytest's parametrize id, so a failing sequence of kill points can be
replayed.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from tasks.verify import verify_chain
from tasks.watchdog import STALLED_ERROR, measure
from tests.faults.conftest import FaultStack
from tests.faults.ledger import (
    anchored_exactly_once,
    drain_all,
    emit_many,
    exact_chain,
    job_row,
    request_job,
    verified_export,
)

KILLS = 5
# A killed client's backend ends (releasing its locks, rolling back) once it notices the closed socket.
NO_DEAD_SESSIONS = "SELECT count(*) = 0 FROM pg_locks WHERE locktype = 'advisory'"


def kill_after(proc: subprocess.Popen[str], seconds: float) -> bool:
    """SIGKILL ``proc`` after ``seconds`` unless it has ended; True if it was killed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return True


@pytest.mark.parametrize("seed", [20261122])
def test_the_drain_killed_at_random_points_loses_and_duplicates_nothing(fault_stack: FaultStack, seed: int) -> None:
    rng = random.Random(seed)
    fault_stack.env["COMPLIANCE_DRAIN_BATCH_SIZE"] = "300"  # many small transactions: kills land mid-drain
    events = killed_mid_drain = 0
    for _ in range(KILLS):
        emit_many(fault_stack.settings, 30_000, 300, start=events)  # each round starts with events waiting
        events += 30_000
        before = fault_stack.scalar("SELECT count(*) FROM compliance.events")
        proc = fault_stack.worker("drain")
        # wait until this process is chaining, then kill it somewhere in the next 0.3 s
        fault_stack.wait_for(f"SELECT count(*) > {before} FROM compliance.events", proc=proc)
        if kill_after(proc, rng.uniform(0, 0.3)):
            killed_mid_drain += fault_stack.scalar("SELECT count(*) > 0 FROM compliance.outbox_pending")
    assert killed_mid_drain >= 3, "most kills should land while events were still waiting"
    fault_stack.wait_for(NO_DEAD_SESSIONS)
    proc = fault_stack.worker("drain")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert exact_chain(fault_stack.settings, events)
    assert verify_chain(fault_stack.settings).ok


@pytest.mark.parametrize("seed", [20261122])
def test_the_anchor_killed_at_random_points_finishes_every_run_once(fault_stack: FaultStack, seed: int) -> None:
    rng = random.Random(seed)
    settings = fault_stack.settings
    total = 0
    for round_ in range(KILLS):
        emit_many(settings, 4000, 200, start=total)  # every round has new heads to anchor
        total += 4000
        drain_all(settings)
        runs = fault_stack.scalar("SELECT count(*) FROM compliance.anchor_runs")
        proc = fault_stack.worker("anchor")
        if round_ % 2 == 0:  # half the kills right after the freeze, half anywhere in the run
            fault_stack.wait_for(f"SELECT count(*) > {runs} FROM compliance.anchor_runs", proc=proc)
            kill_after(proc, rng.uniform(0, 0.3))
        else:
            kill_after(proc, rng.uniform(2.0, 6.0))
    fault_stack.wait_for(NO_DEAD_SESSIONS)
    proc = fault_stack.worker("anchor")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert anchored_exactly_once(settings, total)
    assert exact_chain(settings, total)
    assert verify_chain(settings).ok


@pytest.mark.parametrize("seed", [20261122])
def test_the_export_runner_killed_at_random_points_never_leaves_a_job_running(
    fault_stack: FaultStack, seed: int, tmp_path: Path
) -> None:
    from tasks.anchoring import anchor_once
    from tests.test_anchor import KEY

    rng = random.Random(seed)
    settings = fault_stack.settings
    emit_many(settings, 20_000, 200)
    drain_all(settings)
    anchor_once(settings, KEY)
    stuck = []
    for _ in range(3):
        job = request_job(settings)
        proc = fault_stack.worker("export", job)
        fault_stack.wait_for(f"SELECT status = 'running' FROM compliance.export_jobs WHERE job_id = '{job}'", proc=proc)
        kill_after(proc, rng.uniform(0, 0.8))
        status = job_row(settings, job)[0]
        assert status in ("running", "complete")  # a kill after the job was marked complete changes nothing
        if status == "running":
            stuck.append(job)  # a dead runner cannot mark its job failed ...
    assert stuck, "no kill landed while a job ran"
    with psycopg.connect(fault_stack.pg.url, autocommit=True) as conn:  # ... so 16 minutes pass (threshold 15)
        conn.execute("UPDATE compliance.export_jobs SET started_at = started_at - interval '16 minutes'")
    figures, details = measure(settings)
    assert sorted(details["stalled_jobs"]) == sorted(stuck)
    for job in stuck:
        assert job_row(settings, job) == ("failed", STALLED_ERROR, None)  # no download was ever offered
    again = request_job(settings)
    proc = fault_stack.worker("export", again)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    report = verified_export(settings, again, tmp_path)
    assert report.ok and report.rows == 20_000, report.summary()
    drain_all(settings)
    assert exact_chain(settings, 20_000 + 4)  # and the four requests were each audited once
