"""Export 1,000,000 anchored events to CSV and to NDJSON (paths included), beside COPY TO STDOUT; then verify.

    python bench/export.py [--events 1000000] [--tenants 1000]

Starts its own PostgreSQL and S3 server. Setup (not timed): emit, drain and
anchor the events. Timed, each in this process with its peak RSS sampled:
the export runner for CSV and for NDJSON (query, audit paths, file, manifest,
upload, presigned URL); the runner's own share of the CSV export (the same rows,
paths and hash written nowhere, so without the S3 server's ingest, which shares
the two cores); `COPY (SELECT ...) TO STDOUT` of the same rows as CSV (the
baseline); and `verify export` of the CSV with its manifest. Prints one JSON line.

    python bench/export.py --keep DIR          # also keep the CSV, its manifest, the trust file, the bucket
    python bench/export.py --verify-only DIR   # time only `verify export` of a kept export

With ``--verify-only`` nothing is set up: the kept export is verified against
the kept copy of the anchor bucket (DIR/bucket, as `--anchors` reads it),
which cannot show Object Lock mode, retention or versions; the JSON line
says so (``lock_retention_versions_checked``) and holds only the verify fields.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _stack import anchored_ledger, bench_stack
from drain import PeakRSS
from ledger_verify import DirectoryStore, ExportVerifier, S3Store, Trust, load_manifest

from compliance.exports import parse_filter
from tasks.db import connect
from tasks.exports import queue_export, run_job, write_export
from tasks.storage import s3_client
from tasks.trust import deployment_trust

WINDOW = {"since": "2026-11-22T00:00:00Z", "until": "2026-11-23T00:00:00Z"}


class _Discard:
    def write(self, data: bytes) -> None:
        pass


def timed_verify(store: object, trust: Trust, manifest: dict, data: Path, events: int | None) -> dict:
    """`verify export` of ``data``, with its peak RSS: the verify fields of the JSON line."""
    with PeakRSS() as verify_mem:
        report = ExportVerifier(store, trust, manifest).verify_file(data)
    rows = report.anchored if events is None else events
    assert report.ok and report.anchored == rows, report.summary()
    return {
        "verify_seconds": round(report.seconds, 2),
        "verify_rows_per_s": round(rows / report.seconds),
        "verify_peak_rss_mb": verify_mem.peak_mb,
        "lock_retention_versions_checked": report.storage_checked,
    }


def verify_only(folder: Path) -> None:
    trust = Trust.load(folder / "trust.json")
    manifest = load_manifest((folder / "manifest.json").read_bytes())
    verified = timed_verify(DirectoryStore(folder / "bucket"), trust, manifest, folder / "events.csv", None)
    print(
        json.dumps(
            {
                "bench": "export",
                "verify_only": str(folder),
                "events": manifest["row_count"],
                **verified,
                "target": {"verify_rows_per_s": 200_000},
                "ok": verified["verify_rows_per_s"] >= 200_000,
            }
        )
    )


def keep(folder: Path, data: Path, manifest: dict, trust: Trust, s3: object) -> None:
    """The CSV export, its manifest, the trust file and a copy of the anchor bucket, for --verify-only."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data, folder / "events.csv")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "trust.json").write_text(json.dumps(trust.as_json()))
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="anchors"):
        for obj in page.get("Contents", []):
            target = folder / "bucket" / obj["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket="anchors", Key=obj["Key"])["Body"].read())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--keep", metavar="DIR", help="also keep the verified export and the bucket's copy in DIR")
    parser.add_argument("--verify-only", metavar="DIR", help="only verify the export kept in DIR by --keep")
    args = parser.parse_args()
    if args.verify_only:
        verify_only(Path(args.verify_only))
        return
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
        trust = deployment_trust(settings, signing=key)
        verified = timed_verify(S3Store("anchors", s3), trust, manifest, data, args.events)
        if args.keep:
            keep(Path(args.keep), data, manifest, trust, s3)

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
                    **verified,
                    "target": {"export_seconds": 15, "peak_rss_mb": 500, "verify_rows_per_s": 200_000},
                    "ok": max(results["csv"]["seconds"], results["ndjson"]["seconds"]) < 15
                    and max(results["csv"]["peak_rss_mb"], results["ndjson"]["peak_rss_mb"]) < 500
                    and verified["verify_rows_per_s"] >= 200_000,
                }
            )
        )


if __name__ == "__main__":
    main()
