"""Load: writer processes emit at a fixed total rate while the drain polls as deployed and anchors run.

    python bench/load.py [--rate 5000] [--writers 8] [--tenants 1000] [--seconds 60]

Starts its own PostgreSQL and S3 server. Each writer process emits its share of
the rate in 10 transactions a second (occurred_at = the emit time). Meanwhile this
process runs the drain loop the drain-outbox flow runs (poll every 0.5 s, drain
until empty) and an anchor every 15 s. At the end it drains and anchors the rest,
then reports: achieved emit rate, emit-to-chained latency p50/p95/p99 (recorded_at
- occurred_at), the deepest outbox seen, and that every emitted event is chained
exactly once, anchored, and `verify chain` passes. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from datetime import UTC

from _stack import bench_stack  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from compliance.settings import Settings  # noqa: E402
from tasks.anchoring import anchor_once  # noqa: E402
from tasks.db import connect  # noqa: E402
from tasks.drain import drain_batch  # noqa: E402
from tasks.signing import SigningKey  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    with bench_stack(s3=True) as stack:
        settings = Settings(
            database_url=stack.database_url, s3_endpoint_url=stack.s3_endpoint_url, anchor_bucket="load"
        )
        provision_anchor_bucket(s3_client(settings), "load", mode="GOVERNANCE", retention_days=1)
        key = SigningKey(Ed25519PrivateKey.generate())
        queue: mp.Queue = mp.Queue()
        procs = [
            mp.Process(
                target=writer, args=(stack.database_url, args.rate / args.writers, args.seconds, args.tenants, i, queue)
            )
            for i in range(args.writers)
        ]
        started = time.monotonic()
        for p in procs:
            p.start()
        drainer = connect(settings, "compliance_drainer")
        watcher = connect(settings, "compliance_reader", autocommit=True)
        max_depth, last_anchor, anchors = 0, time.monotonic(), 0
        while any(p.is_alive() for p in procs):
            max_depth = max(max_depth, watcher.execute("SELECT count(*) FROM compliance.outbox").fetchone()[0])
            while drain_batch(drainer, 20_000).batches:  # what drain-outbox does at each poll
                pass
            if time.monotonic() - last_anchor >= 15:
                anchors += len(anchor_once(settings, key))
                last_anchor = time.monotonic()
            time.sleep(0.5)
        wall = time.monotonic() - started
        emitted = sum(queue.get() for _ in procs)
        while drain_batch(drainer, 20_000).batches:
            pass
        anchors += len(anchor_once(settings, key))
        facts = watcher.execute(
            "SELECT count(*), count(DISTINCT event_id), "
            "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM recorded_at - occurred_at)),"
            " (SELECT count(*) FROM compliance.outbox), "
            " (SELECT coalesce(sum(last_anchored_seq), 0) FROM compliance.tenant_anchor_state) FROM compliance.events"
        ).fetchone()
        chained, distinct, (p50, p95, p99), left, anchored = facts
        anchored = int(anchored)
        report = verify_chain(settings)
        print(
            json.dumps(
                {
                    "bench": "load",
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
                    "chained": chained,
                    "lost": emitted - distinct - left,
                    "duplicated": chained - distinct,
                    "anchored": anchored,
                    "anchors": anchors,
                    "verify_chain_ok": report.ok,
                    "ok": report.ok and chained == distinct == emitted == anchored and p95 < 5,
                }
            )
        )


if __name__ == "__main__":
    main()
