"""Anchor 1,000,000 new events over 1,000 tenants, beside the raw SHA-256 rate of as many 64-byte inputs.

    python bench/anchor.py [--events 1000000] [--tenants 1000]

Starts its own PostgreSQL cluster and S3 server (moto, over HTTP). Setup (not
timed): emit and drain the events. Timed: one anchor run (database read of
every event hash, every tenant's events_root, the tenant records, root and
proofs, the public key, proofs and anchor objects written under Object Lock,
the database record), plus every event's audit path to its events_root (what
an export needs), computed in O(n log n) from the hashes the anchor read (the
bench re-reads them untimed). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import bench_stack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from drain import load_outbox
from ledger_verify.merkle import tree_root_and_paths

from compliance.settings import Settings
from tasks.anchoring import anchor_once, pending_heads, range_hashes
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.signing import SigningKey
from tasks.storage import provision_anchor_bucket, s3_client


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    args = parser.parse_args()

    with bench_stack(s3=True) as stack:
        settings = Settings(
            database_url=stack.database_url, s3_endpoint_url=stack.s3_endpoint_url, anchor_bucket="bench"
        )
        provision_anchor_bucket(s3_client(settings), "bench", mode="GOVERNANCE", retention_days=1)
        load_outbox(stack.database_url, args.events, args.tenants)
        drain_pending.fn(settings)
        key = SigningKey(Ed25519PrivateKey.generate())

        with connect(settings, "compliance_reader", autocommit=True) as conn:
            heads = pending_heads(conn)
        started = time.perf_counter()
        [outcome] = anchor_once(settings, key)
        anchor_seconds = time.perf_counter() - started
        assert outcome.events == args.events and outcome.tenants == args.tenants

        # The anchor run read these hashes already; the bench reads them again (untimed) to time only the paths.
        with connect(settings, "compliance_reader", autocommit=True) as conn:
            leaves = range_hashes(conn, heads)
        started = time.perf_counter()
        paths = 0
        for tenant_leaves in leaves.values():
            _root, tenant_paths = tree_root_and_paths(tenant_leaves)
            paths += len(tenant_paths)
        paths_seconds = time.perf_counter() - started
        assert paths == args.events

        inputs = [os.urandom(64) for _ in range(args.events)]
        sha = hashlib.sha256
        started = time.perf_counter()
        for data in inputs:
            sha(data).digest()
        sha_seconds = time.perf_counter() - started

        total = anchor_seconds + paths_seconds
        print(
            json.dumps(
                {
                    "bench": "anchor",
                    "events": args.events,
                    "tenants": args.tenants,
                    "anchor_seconds": round(anchor_seconds, 2),
                    "every_event_path_seconds": round(paths_seconds, 2),
                    "total_seconds": round(total, 2),
                    "raw_sha256_seconds_for_as_many_64_byte_inputs": round(sha_seconds, 2),
                    "cadence_id": outcome.cadence_id,
                    "target": {"total_seconds": 5},
                    "ok": total < 5,
                }
            )
        )


if __name__ == "__main__":
    main()
