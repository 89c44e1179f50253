"""Drain throughput through a process work pool: one `prefect worker`, then two, and emit-to-chained p95.

    python bench/scale.py [--events 100000] [--tenants 1000] [--runs-per-worker 2]

A real Prefect server, a process pool, the drain deployment (deployments/definitions.py) deployed to it
with the shard lease; each worker executes ``--runs-per-worker`` drain runs (one connection each), as a
second machine would add its own. Each phase: the drainers join the lease, ``--events`` events are
committed to the outbox at once, and the phase's rate is its events over the span of their ``recorded_at``
(first batch to last). Then, with two workers, a steady emit for the latency: enqueued_at to recorded_at,
p95. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psutil

from _stack import bench_stack
from drain import load_outbox

from cli.devstack import free_port, start_prefect_server
from compliance.settings import Settings
from deployments.definitions import specs
from deployments.deploy import REPO, deploy_spec
from deployments.pool import ensure_process_pool, start_worker
from tasks.db import connect
from tasks.outbox import emit_batch
from tasks.shards import leased_shards, live_members


def one(settings: Settings, sql: str, params: object = ()) -> object:
    with connect(settings, None, autocommit=True) as conn:
        return conn.execute(sql, params).fetchone()[0]  # type: ignore[index]


def wait(what: str, check: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: never happened within {seconds:.0f} s: {what}")
        time.sleep(0.2)


def members(settings: Settings) -> tuple[int, int]:
    with connect(settings, None, autocommit=True) as conn:
        return len(live_members(conn)), len(leased_shards(conn))


def kill_tree(pid: int) -> None:
    proc = psutil.Process(pid)
    victims = [proc, *proc.children(recursive=True)]
    for p in victims:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=30)


def phase(settings: Settings, events: int, tenants: int) -> float:
    """Commit ``events`` to the outbox at once; events/s over the span of their chaining."""
    before = int(one(settings, "SELECT count(*) FROM compliance.events"))  # type: ignore[call-overload]
    mark = one(settings, "SELECT clock_timestamp()")
    load_outbox(settings.database_url or "", events, tenants)
    wait("the phase's events chained", lambda: one(settings, "SELECT count(*) FROM compliance.events") == before + events, 900)
    span = one(
        settings,
        "SELECT extract(epoch FROM max(recorded_at) - min(recorded_at)) FROM compliance.events WHERE recorded_at > %s",
        (mark,),
    )
    return events / max(float(span), 1e-3)  # type: ignore[arg-type]


def steady(settings: Settings, rate: int, seconds: int, tenants: int) -> list[str]:
    """Emit ``rate`` events a second for ``seconds`` in 10 transactions a second; their ids."""
    ids: list[str] = []
    per = max(rate // 10, 1)
    with connect(settings, "compliance_writer") as conn:
        started = time.monotonic()
        for tick in range(seconds * 10):
            batch = [
                {
                    "tenant_id": f"steady-{(tick * per + i) % tenants:04d}",
                    "occurred_at": "2026-12-06T10:00:00Z",
                    "actor_type": "user",
                    "actor_id": "u",
                    "source": "bench",
                    "event_type": "auth.signin.success",
                    "payload": {"userId": f"u-{tick}-{i}", "method": "password", "ip": "10.0.0.1", "userAgent": "b"},
                }
                for i in range(per)
            ]
            with conn.transaction():
                ids += emit_batch(conn, batch).event_ids
            time.sleep(max(0.0, started + (tick + 1) / 10 - time.monotonic()))
    return ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--runs-per-worker", type=int, default=2)
    parser.add_argument("--rate", type=int, default=2000, help="events/s of the latency phase")
    args = parser.parse_args()
    with bench_stack() as stack:
        settings = Settings(database_url=stack.database_url)  # the drain needs no bucket
        port = free_port()
        server = start_prefect_server(port, stack.workdir / "prefect", stack.workdir / "prefect.log")
        api = f"http://127.0.0.1:{port}/api"
        os.environ["PREFECT_API_URL"] = api
        wait("the Prefect server", lambda: _healthy(api), 300)
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: api}):
            _measure(args, settings, api, stack.workdir, server)


def _measure(args: argparse.Namespace, settings: Settings, api: str, workdir: Path, server: int) -> None:
    env = {
        "PREFECT_API_URL": api,
        "COMPLIANCE_DATABASE_URL": settings.database_url or "",
        "COMPLIANCE_DRAIN_WORKERS": "1",
        # recorded_at is a batch's start: small batches keep the span's error under one batch per drainer
        "COMPLIANCE_DRAIN_BATCH_SIZE": "2000",
    }
    from prefect.deployments import run_deployment

    pool = "bench-scale"
    ensure_process_pool(pool)
    drain = next(s for s in specs() if s.name == "drain-outbox")
    per = args.runs_per_worker
    spec = dataclasses.replace(
        drain, name="shard-drainer", interval=None, copies=1, concurrency=2 * per,
        parameters={"run_seconds": 3600, "poll_seconds": 0.2},
    )
    deploy_spec(spec, pool, str(REPO))
    workers = []
    rates = []
    try:
        for n in (1, 2):
            name = f"bench-{n}-{uuid.uuid4().hex[:6]}"
            workers.append(start_worker(pool, name, env, workdir / f"{name}.log", limit=per))
            for _ in range(per):
                run_deployment("drain-outbox/shard-drainer", timeout=0)
            wait(f"{n * per} drainers in the lease", lambda: members(settings) == (n * per, 64), 600)
            rates.append(phase(settings, args.events, args.tenants))
        ids = steady(settings, args.rate, 10, args.tenants)
        wait("the steady events chained", lambda: not one(settings, "SELECT EXISTS (SELECT 1 FROM compliance.outbox_pending)"), 300)
        with connect(settings, None, autocommit=True) as conn:
            p95 = conn.execute(
                "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM e.recorded_at - o.enqueued_at)) "
                "FROM compliance.events e JOIN compliance.outbox o USING (event_id) WHERE e.event_id = ANY(%s::uuid[])",
                (ids,),
            ).fetchone()[0]
            total, distinct = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM compliance.events").fetchone()  # type: ignore[misc]
    finally:
        for worker in workers:
            kill_tree(worker.pid)
        os.killpg(server, signal.SIGTERM)
    emitted = 2 * args.events + len(ids)
    print(
        json.dumps(
            {
                "bench": "scale",
                "events_per_phase": args.events,
                "tenants": args.tenants,
                "runs_per_worker": per,
                "one_worker_events_per_s": round(rates[0]),
                "two_workers_events_per_s": round(rates[1]),
                "ratio": round(rates[1] / rates[0], 2),
                "latency_rate_per_s": args.rate,
                "latency_p95_s": round(float(p95), 3),
                "lost": emitted - distinct,
                "duplicated": total - distinct,
            }
        )
    )


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
