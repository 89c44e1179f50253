"""Shard drainers as flow runs on a process work pool, executed by two real `prefect worker` processes, one
of which is SIGKILLed (with its flow runs, as when its machine dies) while events are still being emitted.

COMPLIANCE_TEST_POOL_EVENTS sets how many events are emitted (default 200,000, over 1,000 tenants).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from compliance.settings import SHARD_COUNT, Settings
from deployments.definitions import specs
from deployments.deploy import REPO, deploy_spec
from deployments.pool import ensure_process_pool, executed_by, start_worker, stop_worker
from tasks.db import connect
from tasks.shards import leased_shards, live_members
from tasks.verify import verify_chain
from tests.faults.ledger import emit_many, exact_chain

EVENTS = int(os.environ.get("COMPLIANCE_TEST_POOL_EVENTS", "200000"))
TENANTS = 1000
CHUNK = 10_000
RUNS_PER_WORKER = 2


def scalar(settings: Settings, sql: str, params: object = ()) -> object:
    with connect(settings, None, autocommit=True) as conn:
        return conn.execute(sql, params).fetchone()[0]  # type: ignore[index]


def wait_until(what: str, check: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never happened within {seconds:.0f} s: {what}"
        time.sleep(0.2)


def lease_state(settings: Settings) -> tuple[int, list[int]]:
    """(live drainer members, shards locked) in the test's database."""
    with connect(settings, None, autocommit=True) as conn:
        return len(live_members(conn)), leased_shards(conn)


def kill_machine(worker: psutil.Process) -> list[int]:
    """SIGKILL the worker and every process under it (its flow runs live in sessions of their own)."""
    victims = [worker, *worker.children(recursive=True)]
    for proc in victims:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=30)
    return [p.pid for p in victims]


@pytest.fixture
def api(prefect_server: str) -> Iterator[str]:
    """This process's Prefect client talks to the real server too (deploying, starting runs, reading back)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_server}):
        yield prefect_server


def test_shard_drainers_on_two_workers_survive_one_killed(
    settings: Settings, env_for: object, api: str, workdir: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelled

    prefect_server = api
    env = env_for(settings)  # type: ignore[operator]
    env.update(PREFECT_API_URL=prefect_server, COMPLIANCE_DRAIN_WORKERS="1", COMPLIANCE_DRAIN_BATCH_SIZE="5000")
    suffix = uuid.uuid4().hex[:8]
    pool = f"pool-{suffix}"
    ensure_process_pool(pool)
    drain = next(s for s in specs() if s.name == "drain-outbox")
    runs_wanted = 2 * RUNS_PER_WORKER
    shard_drainer = dataclasses.replace(
        drain,
        name=f"shard-drainer-{suffix}",
        interval=None,
        copies=1,
        concurrency=runs_wanted,
        parameters={"run_seconds": 900, "poll_seconds": 0.2},
    )
    deploy_spec(shard_drainer, pool, str(REPO))

    names = [f"w1-{suffix}", f"w2-{suffix}"]
    workers = [
        start_worker(pool, name, env, workdir / f"{name}.log", limit=RUNS_PER_WORKER) for name in names
    ]
    procs = [psutil.Process(w.pid) for w in workers]
    run_ids: list[object] = []
    try:
        # Each worker takes at most RUNS_PER_WORKER runs, so the two share the four between them.
        for _ in range(runs_wanted):
            run = run_deployment(f"drain-outbox/{shard_drainer.name}", timeout=0)
            run_ids.append(run.id)
        # every run has joined the lease; together they hold each shard once
        wait_until("four drainers hold the 64 shards", lambda: lease_state(settings) == (4, list(range(SHARD_COUNT))), 300)
        with get_client(sync_client=True) as client:
            assert {w.name for w in client.read_workers_for_work_pool(pool)} == set(names)

        emitted = 0
        for chunk in range(EVENTS // CHUNK):
            emit_many(settings, CHUNK, TENANTS, start=emitted)
            emitted += CHUNK
            if chunk == EVENTS // CHUNK // 2 - 1:
                chained = scalar(settings, "SELECT count(*) FROM compliance.events")
                kill_machine(procs[0])
        assert emitted == EVENTS
        assert 0 < chained < EVENTS  # type: ignore[operator]  # the kill landed mid-run

        # The dead runs' sessions are gone with their locks; the survivors took up every shard by themselves.
        wait_until(
            "the surviving drainers hold every shard",
            lambda: lease_state(settings) == (2, list(range(SHARD_COUNT))),
            120,
        )
        wait_until(
            "every event chained",
            lambda: scalar(settings, "SELECT count(*) FROM compliance.events") == EVENTS
            and not scalar(settings, "SELECT EXISTS (SELECT 1 FROM compliance.outbox_pending)"),
            600,
        )
        assert exact_chain(settings, EVENTS)  # lost 0, duplicated 0, each chain gapless and in emission order
        report = verify_chain(settings)
        assert report.ok, report

        by = executed_by(run_ids)
        assert sorted(by) == sorted(str(i) for i in run_ids)
        assert sorted(set(by.values())) == sorted(names), by  # both workers executed drain runs
        assert sorted(by.values()).count(names[0]) == RUNS_PER_WORKER
    finally:
        for proc in procs:
            if proc.is_running():
                kill_machine(proc)
        for worker in workers:
            stop_worker(worker, 5)
        for name in names:  # shown by pytest when the test fails
            print(f"--- {name}", (workdir / f"{name}.log").read_text()[-4000:])
        with get_client(sync_client=True) as client:
            for run_id in run_ids:  # no worker is left to end them
                client.set_flow_run_state(run_id, Cancelled(message="the test is over"), force=True)  # type: ignore[arg-type]
    wait_until("every lease let go with its session", lambda: lease_state(settings) == (0, []), 60)
