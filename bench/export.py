"""Export 1,000,000 anchored events as CSV, NDJSON and Parquet (paths included), each against its two parts
alone; beside COPY TO STDOUT; then verify.

    python bench/export.py [--events 1000000] [--tenants 1000]

Starts its own PostgreSQL and S3 server. Setup (not timed): emit, drain and
anchor the events. Timed in this process, for each format: the export job
(query, audit paths, encoding, digest, multipart upload, manifest, presigned
URL) with its peak RSS sampled; the runner alone writing the same rows into a
null sink; and a bare multipart upload of the job's own bytes, read from a
local file, to the same S3 server. ``<fmt>_ratio`` is the job's wall time over
the slower of the two parts: 1.0 is full overlap, 2.0 none. Each step also
gives the machine's busy CPU seconds (every process: the S3 server shares
the cores here), and ``<fmt>_ratio_to_cpu_floor`` divides by the least time
the two parts could take together on these cores instead. Then
`COPY (SELECT ...) TO STDOUT` of the same rows as CSV (the database's own
floor) and `verify export` of the CSV with its manifest (one process per
CPU, as `ledger-verify` runs by default). Prints one JSON line.

    python bench/export.py --keep DIR          # also keep the CSV, its manifest, the trust file, the bucket
    python bench/export.py --verify-only DIR   # time only `verify export` of a kept export

With ``--verify-only`` nothing is set up: the kept export is verified against
the kept copy of the anchor bucket (DIR/bucket, as `--anchors` reads it),
which cannot show Object Lock mode, retention or versions; the JSON line
says so (``lock_retention_versions_checked``) and holds only the verify fields.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
import psycopg
from _stack import anchored_ledger, bench_stack
from drain import PeakRSS
from ledger_verify import DirectoryStore, ExportVerifier, S3Store, Trust, load_manifest

from compliance.exports import parse_filter
from tasks.db import connect
from tasks.exports import queue_export, run_job, write_export
from tasks.storage import MultipartWriter, s3_client
from tasks.trust import deployment_trust

WINDOW = {"since": "2026-11-22T00:00:00Z", "until": "2026-11-23T00:00:00Z"}


FORMATS = ("csv", "ndjson", "parquet")
RATIO_BAR = 1.15  # export wall time over the slower of its two parts alone
RSS_BAR_MB = 500
CHUNK = 8 * 2**20
CPUS = os.cpu_count() or 1


class _Discard:
    def write(self, data: bytes) -> None:
        pass


class Busy:
    """The machine's busy CPU seconds (every process, every core) over the block: ``.seconds``."""

    def __enter__(self) -> Busy:
        self.start = self._busy()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = round(self._busy() - self.start, 2)

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return sum(t) - t.idle - t.iowait


def release_free_memory() -> None:
    """Collect garbage and hand freed heap back to the system, so that each export's peak RSS starts from what
    the process holds, not from what earlier steps freed but glibc kept."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def timed_formats(settings: object, key: object, s3: object, workdir: Path, fmt: str, events: int) -> dict:
    """One format's three figures: the export job (query, paths, encoding, digest, multipart upload, manifest),
    the runner alone into a null sink, and a bare multipart upload of the job's bytes to the same server; the
    ratio of the first to the slower of the other two, and the job's peak RSS."""
    job = queue_export(settings, operator="ops@example.com", fmt=fmt, filter_text=WINDOW)
    release_free_memory()
    with PeakRSS() as mem, Busy() as job_cpu:
        started = time.perf_counter()
        outcome = run_job(settings, job, signing_key=key)
        seconds = time.perf_counter() - started
    assert outcome is not None and outcome.rows == events

    with (
        connect(settings, "compliance_exporter", autocommit=True) as conn,
        connect(settings, "compliance_exporter", autocommit=True) as paths_conn,
        Busy() as null_cpu,
    ):
        started = time.perf_counter()
        null_rows = write_export(conn, parse_filter(WINDOW), fmt, _Discard(), paths_conn=paths_conn)[0]
        null_seconds = time.perf_counter() - started
    assert null_rows == events

    local = workdir / f"events.{fmt}"
    with local.open("wb") as sink:  # streamed: boto3's transfer manager would keep its buffers in this process
        for chunk in s3.get_object(Bucket="exports", Key=outcome.data_key)["Body"].iter_chunks(CHUNK):
            sink.write(chunk)
    size = local.stat().st_size
    with local.open("rb") as source, Busy() as upload_cpu:
        started = time.perf_counter()
        upload = MultipartWriter(
            s3_client(settings, sign_payloads=False),
            "exports",
            f"bench/bare.{fmt}",
            content_type="application/octet-stream",
        )
        while chunk := source.read(CHUNK):
            upload.write(chunk)
        upload.close()
        upload_seconds = time.perf_counter() - started
    upload.verify()
    if fmt != "csv":
        local.unlink()
    return {
        "seconds": round(seconds, 2),
        "null_sink_seconds": round(null_seconds, 2),
        "bare_upload_seconds": round(upload_seconds, 2),
        "ratio": round(seconds / max(null_seconds, upload_seconds), 3),
        # CPU seconds of the whole machine (all processes) in each step; their sum over the cores is the
        # least time the two parts can take together on this machine, where the S3 server shares them.
        "cpu_seconds": job_cpu.seconds,
        "null_sink_cpu_seconds": null_cpu.seconds,
        "bare_upload_cpu_seconds": upload_cpu.seconds,
        "ratio_to_cpu_floor": round(
            seconds / max(null_seconds, upload_seconds, (null_cpu.seconds + upload_cpu.seconds) / CPUS), 3
        ),
        "peak_rss_mb": mem.peak_mb,
        "rss_before_mb": mem.start_mb,
        "bytes": size,
        "key": outcome.data_key,
        "manifest": outcome.manifest_key,
    }


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
        for fmt in FORMATS:
            results[fmt] = timed_formats(settings, key, s3, stack.workdir, fmt, args.events)

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
                    "cpus": CPUS,
                    **{
                        f"{fmt}_{name}": value
                        for fmt in FORMATS
                        for name, value in results[fmt].items()
                        if name not in ("key", "manifest")
                    },
                    "copy_to_stdout_seconds": round(copy_seconds, 2),
                    "copy_bytes": size,
                    **verified,
                    "target": {"ratio": RATIO_BAR, "peak_rss_mb": RSS_BAR_MB, "verify_rows_per_s": 200_000},
                    "ok": all(
                        results[f]["ratio"] <= RATIO_BAR and results[f]["peak_rss_mb"] < RSS_BAR_MB for f in FORMATS
                    )
                    and verified["verify_rows_per_s"] >= 200_000,
                }
            )
        )


if __name__ == "__main__":
    main()
