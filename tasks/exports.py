"""Export jobs: the request (validated, rate-limited, audited), the compare-and-set claim, the streamed file,
the manifest, the upload and the presigned download link."""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from ledger_verify.anchors import parse_proofs, proofs_key
from ledger_verify.manifest import MANIFEST_KIND
from ledger_verify.merkle import tree_levels

from compliance.anchor import signed
from compliance.events import Registry, new_event_id
from compliance.exports import (
    CSV_HEADER,
    FORMATS,
    ExportFilter,
    ExportRefused,
    PathRenderer,
    check_rate,
    compress_seqs,
    csv_row,
    ndjson_line,
    parse_filter,
)
from compliance.operators import OperatorRefused, normalise_address
from compliance.settings import Settings
from compliance.timefmt import utc_text
from tasks.anchoring import publish_public_key, range_leaves
from tasks.db import connect, utc_text_sql
from tasks.operators import LEDGER_TENANT, authenticate
from tasks.outbox import emit
from tasks.signing import SigningKey, load_signing_key
from tasks.storage import MultipartWriter, s3_client

__all__ = [
    "PLATFORM_TENANT",
    "URL_SECONDS",
    "JobOutcome",
    "fresh_url",
    "job_status",
    "public_status",
    "queue_export",
    "recent_jobs",
    "request_export",
    "run_job",
    "write_export",
]

PLATFORM_TENANT = LEDGER_TENANT  # the chain that records cross-tenant (operator) exports
URL_SECONDS = 900


def request_export(
    settings: Settings,
    *,
    operator: str,
    code: str,
    fmt: str,
    filter_text: str | dict[str, Any],
    now: datetime | None = None,
    prefect_user: str | None = None,
) -> str:
    """Validate the request, check the operator's code and grants (one tenant, or cross-tenant without
    ``tenant_id``), then queue the job. Raises :class:`ExportRefused` or :class:`OperatorRefused` (nothing
    written but a refused code's failure count)."""
    _check_format(fmt)
    flt = parse_filter(filter_text, known_event_types=Registry.default().names())
    address = authenticate(
        settings,
        operator,
        code,
        tenants=[flt.tenant_id] if flt.tenant_id else [],
        cross_tenant=flt.tenant_id is None,
    )
    return queue_export(
        settings, operator=address, fmt=fmt, filter_text=flt.as_json(), now=now, prefect_user=prefect_user
    )


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ExportRefused("FILTER_INVALID", f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def queue_export(
    settings: Settings,
    *,
    operator: str,
    fmt: str,
    filter_text: str | dict[str, Any],
    now: datetime | None = None,
    prefect_user: str | None = None,
) -> str:
    """Queue an export for an operator already authenticated (or for a holder of the exporter's URL, trusted by
    construction): validated, rate-limited on the normalised address, and committed together with its
    `data.export_initiated` event. Raises :class:`ExportRefused` (nothing written)."""
    _check_format(fmt)
    registry = Registry.default()
    flt = parse_filter(filter_text, known_event_types=registry.names())
    address = normalise_address(operator)
    now = now or datetime.now(UTC)
    job_id = new_event_id()
    with connect(settings, "compliance_exporter") as conn, conn.transaction():
        # One operator's requests are serialised, so the rate limit cannot be raced.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('export-rate:' || %s))", (address,))
        previous = [
            r[0]
            for r in conn.execute(
                "SELECT requested_at FROM compliance.export_jobs WHERE operator = %s "
                "AND requested_at > %s::timestamptz - interval '1 hour'",
                (address, now),
            )
        ]
        check_rate(previous, now)
        conn.execute(
            "INSERT INTO compliance.export_jobs (job_id, operator, format, filter, requested_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            (job_id, address, fmt, json.dumps(flt.as_json()), now),
        )
        emit(
            conn,
            {
                "tenant_id": flt.tenant_id or PLATFORM_TENANT,
                "occurred_at": now,
                "actor_type": "operator",
                "actor_id": address,
                "source": "compliance-export",
                "event_type": "data.export_initiated",
                "payload": {"exportJobId": job_id, "format": fmt, "filter": flt.as_json(), "requestedBy": address}
                | ({"prefectUser": prefect_user} if prefect_user else {}),
            },
            registry=registry,
            ledger=True,  # a cross-tenant request is audited in the ledger's own chain
        )
    return job_id


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    status: str
    rows: int
    data_key: str
    manifest_key: str
    data_sha256: str
    format: str
    seconds: float


_CONTENT_TYPES = {"csv": "text/csv", "ndjson": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}

# Timestamps leave the server already in the docs/format.md §1 form.
_ROWS = (
    f"SELECT e.tenant_id, e.seq, e.event_id::text, {utc_text_sql('e.occurred_at')}, {utc_text_sql('e.recorded_at')}, "
    "e.actor_type, e.actor_id, e.source, e.event_type, e.payload, e.redacted_fields, encode(e.prev_hash, 'hex'), "
    "encode(e.event_hash, 'hex') FROM compliance.events e "
    "WHERE e.occurred_at >= %(since)s AND e.occurred_at < %(until)s {extra} ORDER BY e.tenant_id, e.seq"
)


def _where(flt: ExportFilter) -> tuple[str, dict[str, Any]]:
    extra, params = [], {"since": flt.since, "until": flt.until}
    if flt.tenant_id is not None:
        extra.append("AND e.tenant_id = %(tenant)s")
        params["tenant"] = flt.tenant_id
    if flt.event_types is not None:
        extra.append("AND e.event_type = ANY(%(event_types)s)")
        params["event_types"] = list(flt.event_types)
    if flt.actor_types is not None:
        extra.append("AND e.actor_type = ANY(%(actor_types)s)")
        params["actor_types"] = list(flt.actor_types)
    return " ".join(extra), params


class _Ranges:
    """Anchored ranges of one tenant at a time, and the audit paths of the current range."""

    def __init__(self, conn: psycopg.Connection, sep: str) -> None:
        self.conn = conn
        self.sep = sep
        self.tenant: str | None = None
        self.ranges: list[tuple[int, int, str]] = []
        self.current: tuple[int, int, str] | None = None
        self.paths = PathRenderer([], sep)

    def locate(self, tenant: str, seq: int) -> tuple[str | None, int | None, str | None]:
        if tenant != self.tenant:
            self.tenant, self.current = tenant, None
            self.ranges = [
                tuple(r)
                for r in self.conn.execute(  # type: ignore[misc]
                    "SELECT first_seq, last_seq, cadence_id FROM compliance.anchor_ranges WHERE tenant_id = %s "
                    "ORDER BY first_seq",
                    (tenant,),
                )
            ]
        cur = self.current
        if cur is None or not cur[0] <= seq <= cur[1]:
            cur = next((r for r in self.ranges if r[0] <= seq <= r[1]), None)
            if cur is None:
                return None, None, None
            levels = tree_levels(range_leaves(self.conn, tenant, cur[0], cur[1]))
            self.paths = PathRenderer([[h.hex() for h in level] for level in levels[:-1]], self.sep)
            self.current = cur
        index = seq - cur[0]
        return cur[2], index, self.paths.path(index)


def write_export(
    conn: psycopg.Connection,
    flt: ExportFilter,
    fmt: str,
    out: Any,
    progress: Callable[[int], None] | None = None,
    *,
    paths_conn: psycopg.Connection | None = None,
) -> tuple[int, str, dict[str, list[list[int]]], dict[str, set[str]]]:
    """Stream the matching rows into ``out`` (anything with ``write(bytes)``); returns (rows, sha256, rows per
    tenant, tenants per cadence).

    ``paths_conn``, a second autocommit connection of the same role, reads the anchored ranges and their
    leaves in the rows' own snapshot (exported to it), so that those reads do not wait for the next batch of
    rows being fetched on ``conn``; without it they share ``conn``."""
    extra, params = _where(flt)
    digest = hashlib.sha256()
    rows = 0
    seqs: dict[str, list[int]] = {}
    cadences: dict[str, set[str]] = {}
    line = {"csv": csv_row, "ndjson": ndjson_line, "parquet": _cells}[fmt]
    with _encoder(fmt, out, digest) as write_batch, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL work_mem = '256MB'")  # the ORDER BY sorts in memory, not on disk
        conn.execute("SET LOCAL TIME ZONE 'UTC'")
        if paths_conn is not None:
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
            paths_conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            paths_conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        ranges = _Ranges(paths_conn or conn, '","' if fmt == "ndjson" else ";")
        cur = conn.cursor(name="export_rows")
        cur.itersize = 10_000
        cur.execute(_ROWS.format(extra=extra), params)
        for batch in _prefetched(cur, 10_000):
            parts = []
            for r in batch:
                tenant, seq = r[0], r[1]
                cid, index, path = ranges.locate(tenant, seq)
                parts.append(line(r, path, cid, index))
                seqs.setdefault(tenant, []).append(seq)
                if cid is not None:
                    cadences.setdefault(cid, set()).add(tenant)
            write_batch(batch, parts)
            rows += len(batch)
            if progress is not None:
                progress(rows)
        cur.close()
        if paths_conn is not None:
            paths_conn.execute("COMMIT")
    return rows, digest.hexdigest(), {t: compress_seqs(s) for t, s in seqs.items()}, cadences


def _cells(r: Any, path: str | None, cadence: str | None, index: int | None) -> tuple[Any, ...]:
    """A Parquet row's located cells, as :meth:`tasks.parquet.ParquetSink.add` takes them with the rows."""
    return (path, cadence, index)


@contextmanager
def _encoder(fmt: str, out: Any, digest: Any) -> Iterator[Callable[[list[Any], list[Any]], None]]:
    """How a batch reaches ``out`` and ``digest``, given its stored rows and what ``line`` made of each: CSV
    (after its header) and NDJSON lines joined and written; Parquet rows and cells handed to polars, which
    writes the file (and its end when the block ends, or discards it when the block fails)."""
    if fmt == "parquet":
        from tasks.parquet import ParquetSink  # polars is loaded only by the exports that use it

        sink = ParquetSink(out, digest)
        try:
            yield sink.add
        except BaseException:
            sink.abort()
            raise
        sink.close()
        return

    def write(batch: list[Any], parts: list[Any]) -> None:
        chunk = "".join(parts).encode("utf-8")
        out.write(chunk)
        digest.update(chunk)

    if fmt == "csv":
        write([], [CSV_HEADER])
    yield write


def _prefetched(cur: Any, size: int) -> Iterator[list[Any]]:
    """``cur.fetchmany(size)`` batches, fetched by a second thread one batch ahead: the server reads and
    sends the next rows while this thread formats the current ones (psycopg serialises the connection's use,
    so path queries made on the same connection meanwhile wait their turn)."""
    batches: queue.Queue[list[Any] | BaseException] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                batch = cur.fetchmany(size)
                batches.put(batch)
                if not batch:
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            batches.put(exc)

    fetcher = threading.Thread(target=fetch, name="export-fetch", daemon=True)
    fetcher.start()
    try:
        while True:
            item = batches.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()
        while fetcher.is_alive():  # unblock a fetcher waiting to hand over a batch nobody will take
            try:
                batches.get(timeout=0.05)
            except queue.Empty:
                pass
        fetcher.join()


def _claim(conn: psycopg.Connection, job_id: str) -> tuple[str, str, dict[str, Any]] | None:
    """queued -> running, compare-and-set: a second delivery of the same job finds nothing to claim."""
    row = conn.execute(
        "UPDATE compliance.export_jobs SET status = 'running', started_at = clock_timestamp() "
        "WHERE job_id = %s AND status = 'queued' RETURNING operator, format, filter",
        (job_id,),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def run_job(
    settings: Settings,
    job_id: str,
    progress: Callable[[int, int], None] | None = None,
    signing_key: SigningKey | None = None,
) -> JobOutcome | None:
    """Run a queued job to `complete` (or `failed`, with a readable job_error, re-raising); None if not queued.
    The manifest is signed with ``signing_key`` (default: the anchor signing key, ``load_signing_key``)."""
    started = time.perf_counter()
    with connect(settings, "compliance_exporter", autocommit=True) as conn:
        claimed = _claim(conn, job_id)
        if claimed is None:
            return None
        operator, fmt, filter_json = claimed
        try:
            with connect(settings, "compliance_exporter", autocommit=True) as paths_conn:
                outcome = _produce(
                    conn, paths_conn, settings, job_id, fmt, parse_filter(filter_json), progress, started, signing_key
                )
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"[:2000]
            conn.execute(
                "UPDATE compliance.export_jobs SET status = 'failed', finished_at = clock_timestamp(), "
                "job_error = %s WHERE job_id = %s AND status = 'running'",
                (message, job_id),
            )
            raise
        return outcome


def _produce(
    conn: psycopg.Connection,
    paths_conn: psycopg.Connection,
    settings: Settings,
    job_id: str,
    fmt: str,
    flt: ExportFilter,
    progress: Callable[[int, int], None] | None,
    started: float,
    signing_key: SigningKey | None,
) -> JobOutcome:
    total = int(
        conn.execute(
            "SELECT count(*) FROM compliance.events e WHERE e.occurred_at >= %(since)s AND "
            "e.occurred_at < %(until)s " + _where(flt)[0],
            _where(flt)[1],
        ).fetchone()[0]
    )
    s3 = s3_client(settings)
    data_key = f"exports/{job_id}/events.{fmt}"
    manifest_key = f"exports/{job_id}/manifest.json"
    # The file is never whole in memory nor on disk: rows stream into a multipart upload as they are made.
    out = MultipartWriter(
        s3_client(settings, sign_payloads=False),  # every part carries its CRC32
        settings.export_bucket,
        data_key,
        content_type=_CONTENT_TYPES[fmt],
    )
    try:
        rows, sha, seqs, cadences = write_export(
            conn, flt, fmt, out, (lambda n: progress(n, total)) if progress else None, paths_conn=paths_conn
        )
        out.close()
    except BaseException:
        out.abort()
        raise
    out.verify()  # a short or altered object fails the job here, never reported complete
    signing = signing_key or load_signing_key(settings)
    manifest: dict[str, Any] = {
        "v": 2,
        "kind": MANIFEST_KIND,
        "job_id": job_id,
        "format": fmt,
        "filter": flt.as_json(),
        "row_count": rows,
        "data_key": data_key,
        "data_sha256": sha,
        "generated_at": utc_text(datetime.now(UTC)),
        "anchor_bucket": settings.anchor_bucket,
        "rows": seqs,
        "cadences": {
            cid: {"tenant_records": _proof_lines(s3, settings.anchor_bucket, cid, tenants)}
            for cid, tenants in sorted(cadences.items())
        },
    }
    # Signed like an anchor (docs/format.md §4), so that the filter, the row count and the digest are attested; the key
    # is published beside the anchors' keys, where an auditor's trust file points.
    publish_public_key(settings, signing)
    s3.put_object(
        Bucket=settings.export_bucket,
        Key=manifest_key,
        ContentType="application/json",
        Body=json.dumps(signed(manifest, signing.key, signing.key_id), indent=1, ensure_ascii=False).encode(),
    )
    conn.execute(
        "UPDATE compliance.export_jobs SET status = 'complete', finished_at = clock_timestamp(), row_count = %s, "
        "data_sha256 = %s, object_key = %s, manifest_key = %s WHERE job_id = %s AND status = 'running'",
        (rows, sha, data_key, manifest_key, job_id),
    )
    return JobOutcome(job_id, "complete", rows, data_key, manifest_key, sha, fmt, time.perf_counter() - started)


def _proof_lines(s3: Any, bucket: str, cid: str, tenants: set[str]) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket=bucket, Key=proofs_key(cid))["Body"].read()
    return [line for line in parse_proofs(body) if line["tenant_id"] in tenants]


def _presign(s3: Any, bucket: str, key: str) -> tuple[str, datetime]:
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=URL_SECONDS)
    return url, datetime.now(UTC) + timedelta(seconds=URL_SECONDS)


def job_status(settings: Settings, job_id: str) -> dict[str, Any] | None:
    """The job's row for the ledger's own code (the exporter role): no link is ever stored in it."""
    with connect(settings, "compliance_exporter", autocommit=True) as conn:
        row = conn.execute(
            "SELECT job_id::text, status, operator, format, filter, requested_at, started_at, finished_at, row_count, "
            "data_sha256, object_key, manifest_key, job_error FROM compliance.export_jobs WHERE job_id = %s::uuid",
            (job_id,),
        ).fetchone()
    if row is None:
        return None
    keys = (
        "job_id",
        "status",
        "operator",
        "format",
        "filter",
        "requested_at",
        "started_at",
        "finished_at",
        "row_count",
        "data_sha256",
        "object_key",
        "manifest_key",
        "job_error",
    )
    out = dict(zip(keys, row))
    for k in ("requested_at", "started_at", "finished_at"):
        if out[k] is not None:
            out[k] = utc_text(out[k])
    return out


def public_status(settings: Settings, job_id: str) -> dict[str, Any] | None:
    """What `export status` shows anyone: state, format, rows and age (``compliance.export_job_status``)."""
    try:
        with connect(settings, "compliance_operator", autocommit=True) as conn:
            return conn.execute("SELECT compliance.export_job_status(%s::uuid)", (job_id,)).fetchone()[0]  # type: ignore[index]
    except psycopg.errors.InvalidTextRepresentation:
        return None


def recent_jobs(settings: Settings, limit: int = 50) -> list[dict[str, Any]]:
    """`export list`: the newest jobs, each as :func:`public_status` shows one and with the operator who asked."""
    with connect(settings, "compliance_operator", autocommit=True) as conn:
        return list(conn.execute("SELECT compliance.export_jobs_recent(%s)", (limit,)).fetchone()[0])  # type: ignore[index]


def fresh_url(
    settings: Settings, job_id: str, operator: str, code: str, *, prefect_user: str | None = None
) -> tuple[str, str]:
    """A fresh 15-minute download link for a complete job, minted for an operator whose code checks and whose
    grants cover the job's filter (``compliance.operator_export_link``, which records the issue as
    ``data.export_url_issued``); the link is returned and stored nowhere. Raises :class:`OperatorRefused`, or
    ValueError when the job has no file to link to."""
    try:
        with connect(settings, "compliance_operator", autocommit=True) as conn:
            answer = conn.execute(
                "SELECT compliance.operator_export_link(%s, %s, %s::uuid, %s)",
                (normalise_address(operator), (code or "").strip(), job_id, prefect_user),
            ).fetchone()[0]  # type: ignore[index]
    except psycopg.errors.InvalidTextRepresentation:
        raise ValueError(f"{job_id!r} is not a job id; `compliance export list` shows them") from None
    if "refused" in answer:
        raise OperatorRefused(answer["refused"], answer["message"])
    if "unavailable" in answer:
        raise ValueError(answer["unavailable"])
    url, expires = _presign(s3_client(settings), settings.export_bucket, answer["object_key"])
    return url, utc_text(expires)
