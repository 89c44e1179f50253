"""Load: writer processes emit at a fixed total rate while the drain and anchor flows run as deployed.

    python bench/load.py [--rate 5000] [--writers 8] [--tenants 1000] [--seconds 60]

Starts its own PostgreSQL, S3 server and Prefect server, and serves the
`drain-outbox` deployment exactly as defined in deployments/definitions.py (one
run lives 290 s, polling the outbox every 0.5 s) and the `anchor` deployment
every 15 s (in production every 15 minutes), in a `serve` process of their own.
Each writer process emits its share of the rate in 10 transactions a second
(occurred_at = the emit time). At the end it waits for the outbox to empty and
for one more anchor run, then reports: achieved emit rate, emit-to-chained
latency p50/p95/p99 (recorded_at - occurred_at), the deepest outbox seen, and
that every emitted event is chained exactly once, anchored, and `verify chain`
passes. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from datetime import UTC

from _stack import bench_stack  # noqa: E402

from compliance.settings import Settings  # noqa: E402
from tasks.db import connect  # noqa: E402
from tasks.storage import provision_anchor_bucket, s3_client  # noqa: E402
from tasks.verify import verify_chain  # noqa: E402


def writer(url: str, rate: float, seconds: float, tenants: int, seed: int, out: mp.Queue) -> None:
    from datetime import datetime

    from compliance.events import Registry
    from compliance.timefmt import utc_text
    from tasks.outbox import emit_batch

    rng = random.Random(seed)
    registry = Registry.default()
    conn = connect(Settings(database_url=url), "compliance_writer")
    per_tick = rate / 10
    emitted, carry = 0, 0.0
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < seconds:
        carry += per_tick
        n, carry = int(carry), carry - int(carry)
        now = utc_text(datetime.now(UTC))
        events = [
            {
                "tenant_id": f"tenant-{rng.randrange(tenants):04d}",
                "occurred_at": now,
                "actor_type": "user",
                "actor_id": f"u-{rng.randrange(500)}",
                "source": "load",
                "event_type": "auth.signin.success",
                "payload": {"userId": f"u-{rng.randrange(500)}", "method": "sso", "ip": "10.0.0.1"},
            }
            for _ in range(n)
        ]
        with conn.transaction():
            emitted += emit_batch(conn, events, registry=registry).stored
        tick += 1
        time.sleep(max(0.0, start + tick * 0.1 - time.monotonic()))
    conn.close()
    out.put(emitted)


SERVE = """
import dataclasses
from prefect import serve
from deployments.definitions import specs
by_name = {s.name: s for s in specs()}
serve(by_name["drain-outbox"].to_deployment(),
      dataclasses.replace(by_name["anchor"], interval=15).to_deployment(), print_starting_message=False)
"""


def serve_flows(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The two deployments served in their own process; the first drain and anchor runs started now."""
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE],
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    deadline = time.monotonic() + 120
    while True:
        try:
            drain = run_deployment("drain-outbox/drain-outbox", timeout=0)
            run_deployment("anchor/anchor", timeout=0)
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(1)
    with get_client(sync_client=True) as client:  # the load starts once the drain run is polling
        while not client.read_flow_run(drain.id).state.is_running():  # type: ignore[union-attr]
            assert time.monotonic() < deadline and proc.poll() is None, "the served drain run never started"
            time.sleep(0.5)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from cli.devstack import free_port, start_prefect_server

    with bench_stack(s3=True) as stack:
        settings = Settings(
            database_url=stack.database_url,
            s3_endpoint_url=stack.s3_endpoint_url,
            anchor_bucket="load",
            retention_days=1,
        )
        provision_anchor_bucket(s3_client(settings), "load", mode="GOVERNANCE", retention_days=1)
        port = free_port()
        prefect_pid = start_prefect_server(port, stack.workdir / "prefect", stack.workdir / "prefect.log")
        env = {
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "COMPLIANCE_DATABASE_URL": stack.database_url,
            "COMPLIANCE_S3_ENDPOINT_URL": stack.s3_endpoint_url or "",
            "COMPLIANCE_ANCHOR_BUCKET": "load",
            "COMPLIANCE_RETENTION_DAYS": "1",
            # a key for this run only; production keys live in a Prefect Secret block
            "COMPLIANCE_SIGNING_KEY": Ed25519PrivateKey.generate().private_bytes_raw().hex(),
        }
        os.environ.update(env)
        served = serve_flows(env, stack.workdir / "serve.log")
        try:
            report = run_load(settings, args)
        finally:
            os.killpg(served.pid, signal.SIGTERM)
            os.killpg(prefect_pid, signal.SIGTERM)
        print(json.dumps(report))


def run_load(settings: Settings, args: argparse.Namespace) -> dict[str, object]:
    # Imported here, after main() has set PREFECT_API_URL: tasks.drain imports prefect, which reads its
    # settings once, and would otherwise start a temporary server of its own for run_deployment.
    from tasks.drain import outbox_pending

    queue: mp.Queue = mp.Queue()
    procs = [
        mp.Process(
            target=writer, args=(settings.database_url, args.rate / args.writers, args.seconds, args.tenants, i, queue)
        )
        for i in range(args.writers)
    ]
    watcher = connect(settings, "compliance_reader", autocommit=True)
    started = time.monotonic()
    for p in procs:
        p.start()
    max_depth = 0
    while any(p.is_alive() for p in procs):
        max_depth = max(max_depth, outbox_pending(watcher)[0])
        time.sleep(0.5)
    wall = time.monotonic() - started
    emitted = sum(queue.get() for _ in procs)
    # The served drain run empties the outbox; the next scheduled anchor run (every 15 s) seals the rest.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        left, unanchored = watcher.execute(
            "SELECT (SELECT count(*) FROM compliance.outbox_pending), (SELECT count(*) FROM compliance.tenant_heads h "
            "LEFT JOIN compliance.tenant_anchor_state s USING (tenant_id) "
            "WHERE s.last_anchored_seq IS DISTINCT FROM h.last_seq)"
        ).fetchone()
        if left == 0 and unanchored == 0:
            break
        time.sleep(1)
    facts = watcher.execute(
        "SELECT count(*), count(DISTINCT event_id), "
        "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM recorded_at - occurred_at)),"
        " (SELECT count(*) FROM compliance.outbox_pending), "
        " (SELECT coalesce(sum(last_anchored_seq), 0) FROM compliance.tenant_anchor_state),"
        " (SELECT count(*) FROM compliance.anchors),"
        " (SELECT count(*) FROM compliance.outbox) FROM compliance.events"
    ).fetchone()
    chained, distinct, (p50, p95, p99), left, anchored, anchors, kept = facts
    anchored = int(anchored)
    report = verify_chain(settings)
    return {
        "bench": "load",
        "as_deployed": "drain-outbox (290 s runs, 0.5 s poll) and anchor (every 15 s) served by Prefect",
        "target_rate": args.rate,
        "writers": args.writers,
        "tenants": args.tenants,
        "seconds": round(wall, 1),
        "emitted": emitted,
        "achieved_emit_rate": round(emitted / wall),
        "latency_p50_s": round(p50, 3),
        "latency_p95_s": round(p95, 3),
        "latency_p99_s": round(p99, 3),
        "max_outbox_depth": max_depth,
        # drained rows still kept in the outbox (COMPLIANCE_OUTBOX_RETENTION_SECONDS; the flow purges every 5 s)
        "outbox_rows_kept": kept,
        "chained": chained,
        "lost": emitted - distinct - left,
        "duplicated": chained - distinct,
        "anchored": anchored,
        "anchors": anchors,
        "verify_chain_ok": report.ok,
        "verify_failure": None if report.failure is None else str(report.failure),
        "ok": report.ok and chained == distinct == emitted == anchored and p95 < 5,
    }


if __name__ == "__main__":
    main()
