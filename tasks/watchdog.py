"""The watchdog's measurements, each one read-only except marking stalled export jobs failed."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import psycopg
from ledger_verify.chain import ChainVerifier

from compliance.posture import judge_anchor_object, judge_configured
from compliance.settings import Settings
from compliance.silence import MIN_QUIET_SECONDS, SourceRhythm, silent_sources
from compliance.watchdog import Judgement, alert_event
from tasks.db import connect
from tasks.drain import outbox_pending
from tasks.storage import bucket_facts, s3_client, stored_object
from tasks.verify import STORED_EVENT_COLUMNS

__all__ = [
    "STALLED_MINUTES",
    "TAIL_EVENTS",
    "measure",
    "publish",
    "recent_export_jobs",
    "record_run",
    "send_to_cloudwatch",
    "source_rhythms",
]

TAIL_EVENTS = 100
STALLED_MINUTES = 15
STALLED_ERROR = "runner stalled; see watchdog"


def _one(conn: psycopg.Connection, sql: str, params: Any = ()) -> Any:
    return conn.execute(sql, params).fetchone()[0]  # type: ignore[index]


def measure(
    settings: Settings, *, posture: bool = True, now: datetime | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(figures, details) as of ``now`` (default: the database's clock). Marks export jobs running for over
    15 minutes failed, and counts them."""
    details: dict[str, Any] = {}
    with connect(settings, "compliance_watchdog", autocommit=True) as conn:
        now = now or _one(conn, "SELECT clock_timestamp()")
        oldest_unanchored = _one(
            conn,
            """
            SELECT min(e.recorded_at) FROM compliance.tenant_heads h
            LEFT JOIN compliance.tenant_anchor_state s USING (tenant_id)
            JOIN compliance.events e ON e.tenant_id = h.tenant_id AND e.seq = coalesce(s.last_anchored_seq, 0) + 1
            WHERE h.last_seq > coalesce(s.last_anchored_seq, 0)""",
        )
        depth, oldest = outbox_pending(conn)
        stalled = [
            r[0]
            for r in conn.execute(
                "UPDATE compliance.export_jobs SET status = 'failed', finished_at = clock_timestamp(), job_error = %s "
                "WHERE status = 'running' AND started_at < %s::timestamptz - make_interval(mins => %s) "
                "RETURNING job_id::text",
                (STALLED_ERROR, now, STALLED_MINUTES),
            )
        ]
        details["stalled_jobs"] = stalled
        last_run = _one(conn, "SELECT max(run_at) FROM compliance.watchdog_runs")
        anchors_to_check = _anchors_to_check(conn)
        queued_since = _one(conn, "SELECT min(requested_at) FROM compliance.export_jobs WHERE status = 'queued'")
        tail_ok, tail_detail = _chain_tails(conn, last_run)
        details["chain_tail"] = tail_detail
        figures: dict[str, Any] = {
            "anchor_lag_seconds": 0
            if oldest_unanchored is None
            else round((now - oldest_unanchored).total_seconds(), 3),
            "outbox_depth": int(depth),
            "outbox_oldest_age_seconds": 0 if oldest is None else round((now - oldest).total_seconds(), 3),
            "poison_rows": int(_one(conn, "SELECT count(*) FROM compliance.outbox_poison")),
            "stuck_exports": len(stalled),
            "chain_tail_ok": tail_ok,
            "queued_exports_oldest_age_seconds": 0
            if queued_since is None
            else round(max(0.0, (now - queued_since).total_seconds()), 3),
        }
        if figures["outbox_oldest_age_seconds"] > MIN_QUIET_SECONDS:
            # events wait unchained, so every source would look quiet: the outbox alert speaks instead
            figures["silent_sources"] = 0
            details["silent_sources"] = ["not judged while the outbox is behind (outbox oldest)"]
        else:
            silent = silent_sources(source_rhythms(conn, now, _lookback_hours()), now)
            figures["silent_sources"] = len(silent)
            details["silent_sources"] = [s.describe() for s in silent]
    # S3 is configured wherever an endpoint is set and everywhere outside dev (AWS itself, through boto3's
    # default credential chain). A figure that could not be read is None: judged `unknown`, which alerts.
    if posture and (settings.s3_endpoint_url is not None or settings.stage != "dev"):
        s3 = s3_client(settings)
        try:
            findings = judge_configured(bucket_facts(s3, settings.anchor_bucket), settings)
            figures["posture_ok"] = all(f.ok for f in findings)
            details["posture_ok"] = [f._asdict() for f in findings if not f.ok]
        except Exception as exc:  # an unreachable bucket is an unmeasured posture, not a crashed watchdog
            figures["posture_ok"] = None
            details["posture_ok"] = [f"the bucket could not be read: {type(exc).__name__}: {exc}"]
        try:
            findings = [
                judge_anchor_object(stored_object(s3, settings.anchor_bucket, key), mode=mode, retain_until=until)
                for key, mode, until in anchors_to_check
            ]
            figures["anchors_ok"] = all(f.ok for f in findings)
            details["anchors_ok"] = [f"{f.check}: {f.detail}" for f in findings if not f.ok]
        except Exception as exc:
            figures["anchors_ok"] = None
            details["anchors_ok"] = [f"the anchors could not be read back: {type(exc).__name__}: {exc}"]
    return figures, details


EXPORT_JOBS_SHOWN = 20


def recent_export_jobs(settings: Settings, limit: int = EXPORT_JOBS_SHOWN) -> list[dict[str, Any]]:
    """The newest export jobs for the `export-jobs` artifact: who asked, what, in which state, and why a job
    failed. Never a link: none is stored (links are minted per request for an authenticated operator)."""
    with connect(settings, "compliance_watchdog", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT job_id::text, operator, format, status, row_count, "
            "floor(extract(epoch FROM clock_timestamp() - requested_at))::bigint, left(coalesce(job_error, ''), 200) "
            "FROM compliance.export_jobs ORDER BY requested_at DESC LIMIT %s",
            (limit,),
        ).fetchall()
    keys = ("job_id", "operator", "format", "state", "rows", "age_seconds", "error")
    return [dict(zip(keys, r, strict=True)) for r in rows]


LATEST_ANCHORS = 3  # the newest anchors, read back on every run
SAMPLED_ANCHORS = 3  # and this many older ones, a different slice each run, so every anchor is visited in turn


def _anchors_to_check(conn: psycopg.Connection) -> list[tuple[str, str, datetime]]:
    """(object key, recorded lock mode, recorded retain-until) of the anchor and proofs objects of the newest
    anchors and of a rolling slice of the older ones (the slice moves on with each recorded watchdog run)."""
    older = _one(conn, "SELECT greatest(count(*) - %s, 0) FROM compliance.anchors", (LATEST_ANCHORS,))
    runs = _one(conn, "SELECT count(*) FROM compliance.watchdog_runs")
    offset = 0 if older == 0 else (runs * SAMPLED_ANCHORS) % older
    rows = conn.execute(
        "(SELECT anchor_key, proofs_key, lock_mode, retain_until FROM compliance.anchors ORDER BY position DESC "
        "LIMIT %s) UNION ALL (SELECT anchor_key, proofs_key, lock_mode, retain_until FROM compliance.anchors "
        "ORDER BY position DESC OFFSET %s LIMIT %s)",
        (LATEST_ANCHORS, LATEST_ANCHORS + offset, SAMPLED_ANCHORS),
    ).fetchall()
    return [(key, mode, until) for anchor, proofs, mode, until in rows for key in (anchor, proofs)]


def _lookback_hours() -> float:
    raw = os.environ.get("COMPLIANCE_SILENCE_LOOKBACK_HOURS") or "48"
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"COMPLIANCE_SILENCE_LOOKBACK_HOURS={raw!r} is not a number of hours") from None


# Per (tenant, source): the minutes with an event in the window, the gaps between them, the latest event.
# The window is on occurred_at, which the BRIN index serves; events dated in the future are left out.
_RHYTHMS = """
WITH minutes AS (
    SELECT tenant_id, source, date_bin('1 minute', occurred_at, TIMESTAMPTZ '2000-01-01Z') AS minute,
           max(occurred_at) AS last
    FROM compliance.events
    WHERE occurred_at >= %(now)s::timestamptz - make_interval(secs => %(seconds)s) AND occurred_at <= %(now)s
    GROUP BY 1, 2, 3
), gaps AS (
    SELECT tenant_id, source, last,
           extract(epoch FROM minute - lag(minute) OVER (PARTITION BY tenant_id, source ORDER BY minute)) AS gap
    FROM minutes
)
SELECT tenant_id, source, count(*)::int, coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY gap), 0)::float8,
       coalesce(max(gap), 0)::float8, max(last)
FROM gaps GROUP BY 1, 2
"""


def source_rhythms(conn: psycopg.Connection, now: datetime, lookback_hours: float) -> list[SourceRhythm]:
    """Every (tenant, source) that emitted within ``lookback_hours`` before ``now``, with its rhythm."""
    rows = conn.execute(_RHYTHMS, {"now": now, "seconds": lookback_hours * 3600}).fetchall()
    return [SourceRhythm(*r) for r in rows]


def _chain_tails(conn: psycopg.Connection, since: datetime | None) -> tuple[bool, str]:
    """Re-verify the last TAIL_EVENTS events of every tenant whose chain moved since the last run."""
    tenants = [
        r[0]
        for r in conn.execute(
            "SELECT tenant_id FROM compliance.tenant_heads WHERE last_seq > 0 AND (%s::timestamptz IS NULL OR "
            "updated_at >= %s)",
            (since, since),
        )
    ]
    for tenant in tenants:
        head_seq, head_hash = conn.execute(
            "SELECT last_seq, head_hash FROM compliance.tenant_heads WHERE tenant_id = %s", (tenant,)
        ).fetchone()  # type: ignore[misc]
        first = max(1, head_seq - TAIL_EVENTS + 1)
        rows = conn.execute(
            "SELECT "
            + STORED_EVENT_COLUMNS
            + " FROM compliance.events WHERE tenant_id = %s AND seq >= %s ORDER BY seq",
            (tenant, first - 1),
        ).fetchall()
        verifier = ChainVerifier()
        if first > 1:
            if not rows or rows[0][1] != first - 1:
                return False, f"tenant {tenant} seq {first - 1}: missing"
            verifier.resume(tenant, first - 1, bytes(rows[0][12]))
            rows = rows[1:]
        for r in rows:
            if not verifier.check(r):
                break
        verifier.finish_tenant(tenant, (head_seq, bytes(head_hash)))
        if verifier.failure is not None:
            return False, str(verifier.failure)
    return True, f"{len(tenants)} tenant tail(s) re-verified"


def record_run(settings: Settings, figures: dict[str, Any], judgements: dict[str, Judgement]) -> None:
    critical = any(j.critical for j in judgements.values())
    with connect(settings, "compliance_watchdog", autocommit=True) as conn:
        conn.execute(
            "INSERT INTO compliance.watchdog_runs (figures, states, critical) VALUES (%s, %s, %s)",
            (json.dumps(figures), json.dumps({k: j.state for k, j in judgements.items()}), critical),
        )


def publish(
    figures: dict[str, Any], judgements: dict[str, Judgement], details: dict[str, Any] | None = None
) -> list[str]:
    """A heartbeat and one Prefect event per figure (resource compliance.watchdog); returns the event names.
    A figure's ``details`` entry (e.g. the silent sources' names) goes into its event's payload."""
    from prefect.events import emit_event

    resource = {"prefect.resource.id": "compliance.watchdog", "prefect.resource.name": "compliance watchdog"}
    names = ["compliance.watchdog.heartbeat"]
    emit_event(event=names[0], resource=resource, payload={"figures": figures})
    for figure, j in judgements.items():
        name = alert_event(figure, j.state)
        emit_event(
            event=name,
            resource=resource,
            payload={
                "figure": figure,
                "value": j.value,
                "threshold": j.limit,
                "state": j.state,
                "severity": j.severity,
                "meaning": j.meaning,
                **({"detail": details[figure]} if details and details.get(figure) else {}),
            },
        )
        names.append(name)
    return names


def send_to_cloudwatch(figures: dict[str, Any]) -> bool:
    """PutMetricData when COMPLIANCE_CLOUDWATCH_NAMESPACE is set (and its endpoint, if not AWS's)."""
    namespace = os.environ.get("COMPLIANCE_CLOUDWATCH_NAMESPACE")
    if not namespace:
        return False
    import boto3

    client = boto3.client(
        "cloudwatch",
        endpoint_url=os.environ.get("COMPLIANCE_CLOUDWATCH_ENDPOINT_URL") or None,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    now = datetime.now(UTC)
    client.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": k,
                "Timestamp": now,
                "Value": float(v),
                "Unit": "Seconds" if k.endswith("_seconds") else "Count",
            }
            for k, v in figures.items()
        ],
    )
    return True
