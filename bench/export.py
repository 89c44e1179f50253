"""Export 1,000,000 anchored events to CSV and to NDJSON (paths included), beside COPY TO STDOUT; then verify.

    python bench/export.py [--events 1000000] [--tenants 1000]

Starts its own PostgreSQL and S3 server. Setup (not timed): emit, drain and
anchor the events. Timed, each in this process with its peak RSS sampled:
the export runner for CSV and for NDJSON (query, audit paths, file, manifest,
upload, presigned URL); the runner's own share of the CSV export (the same rows,
paths and hash written nowhere, so without the S3 server's ingest, which shares
the two cores); `COPY (SELECT ...) TO STDOUT` of the same rows as CSV (the
baseline); and `verify export` of the CSV with its manifest. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _stack import anchored_ledger, bench_stack
from drain import PeakRSS
from ledger_verify import ExportVerifier, S3Store

from compliance.exports import parse_filter
from tasks.db import connect
from tasks.exports import queue_export, run_job, write_export
from tasks.storage import s3_client
from tasks.trust import deployment_trust

WINDOW = {"since": "2026-11-22T00:00:00Z", "until": "2026-11-23T00:00:00Z"}


class _Discard:
    def write(self, data: bytes) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    args = parser.parse_args()
    with bench_stack(s3=True) as stack:
        settings, key = anchored_ledger(stack, args.events, args.tenants)
        s3 = s3_client(settings)

        results = {}
        for fmt in ("csv", "ndjson"):
            job = queue_export(settings, operator="ops@example.com", fmt=fmt, filter_text=WINDOW)
            with PeakRSS() as mem:
                started = time.perf_counter()
                outcome = run_job(settings, job, signing_key=key)
                seconds = time.perf_counter() - started
            assert outcome is not None and outcome.rows == args.events
            results[fmt] = {
                "seconds": round(seconds, 2),
                "peak_rss_mb": mem.peak_mb,
                "key": outcome.data_key,
                "manifest": outcome.manifest_key,
            }

        # The runner's own share: the same CSV rows, paths and hash, written nowhere (no S3 server ingesting).
        with connect(settings, "compliance_exporter", autocommit=True) as conn, PeakRSS() as own_mem:
            started = time.perf_counter()
            own_rows = write_export(conn, parse_filter(WINDOW), "csv", _Discard())[0]
            own_seconds = time.perf_counter() - started
        assert own_rows == args.events

        with psycopg.connect(stack.database_url) as conn:
            started = time.perf_counter()
            size = 0
            with conn.cursor().copy(
                "COPY (SELECT tenant_id, seq, event_id, occurred_at, recorded_at, actor_type, actor_id, source, "
                "event_type, payload, redacted_fields, prev_hash, event_hash FROM compliance.events "
                "WHERE occurred_at >= '2026-11-22' AND occurred_at < '2026-11-23' ORDER BY tenant_id, seq) "
                "TO STDOUT WITH (FORMAT csv)"
            ) as copy:
                for chunk in copy:
                    size += len(chunk)
            copy_seconds = time.perf_counter() - started

        data = stack.workdir / "events.csv"
        s3.download_file("exports", results["csv"]["key"], str(data))
        manifest = json.loads(s3.get_object(Bucket="exports", Key=results["csv"]["manifest"])["Body"].read())
        with PeakRSS() as verify_mem:
            trust = deployment_trust(settings, signing=key)
            report = ExportVerifier(S3Store("anchors", s3), trust, manifest).verify_file(data)
        assert report.ok and report.anchored == args.events, report.summary()

        print(
            json.dumps(
                {
                    "bench": "export",
                    "events": args.events,
                    "tenants": args.tenants,
                    "csv_seconds": results["csv"]["seconds"],
                    "csv_peak_rss_mb": results["csv"]["peak_rss_mb"],
                    "ndjson_seconds": results["ndjson"]["seconds"],
                    "ndjson_peak_rss_mb": results["ndjson"]["peak_rss_mb"],
                    "csv_without_upload_seconds": round(own_seconds, 2),
                    "csv_without_upload_peak_rss_mb": own_mem.peak_mb,
                    "copy_to_stdout_seconds": round(copy_seconds, 2),
                    "copy_bytes": size,
                    "verify_seconds": round(report.seconds, 2),
                    "verify_rows_per_s": round(args.events / report.seconds),
                    "verify_peak_rss_mb": verify_mem.peak_mb,
                    "target": {"export_seconds": 15, "peak_rss_mb": 500, "verify_rows_per_s": 200_000},
                    "ok": max(results["csv"]["seconds"], results["ndjson"]["seconds"]) < 15
                    and max(results["csv"]["peak_rss_mb"], results["ndjson"]["peak_rss_mb"]) < 500
                    and args.events / report.seconds >= 200_000,
                }
            )
        )


if __name__ == "__main__":
    main()
