"""What every fault test ends with: exact event counts, every chain whole, every event anchored once."""

from __future__ import annotations

from typing import Any

from compliance.anchor import anchor_key, proofs_key
from compliance.settings import Settings
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.storage import s3_client
from tests.test_drain import chain_facts, emit_many

__all__ = [
    "WINDOW",
    "anchored_exactly_once",
    "drain_all",
    "emit_many",
    "exact_chain",
    "export_objects",
    "job_row",
    "object_versions",
    "request_job",
    "verified_export",
]


def drain_all(settings: Settings) -> None:
    drain_pending.fn(settings)


def exact_chain(settings: Settings, events: int) -> bool:
    """Exactly ``events`` chained, each id once, nothing pending or set aside, every seq gapless and every
    chain in emission order. Raises with the facts when not, so the failure says what is wrong."""
    facts = chain_facts(settings)
    want = {"events": events, "distinct_ids": events, "pending": 0, "gapless": True, "in_emission_order": True}
    with connect(settings, None, autocommit=True) as conn:
        facts["poisoned"] = conn.execute("SELECT count(*) FROM compliance.outbox_poison").fetchone()[0]  # type: ignore[index]
    want["poisoned"] = 0
    assert facts == want, facts
    return True


def object_versions(settings: Settings, prefix: str) -> dict[str, int]:
    """How many versions each key under ``prefix`` has in the anchor bucket."""
    s3 = s3_client(settings)
    counts: dict[str, int] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=settings.anchor_bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            counts[v["Key"]] = counts.get(v["Key"], 0) + 1
        assert not page.get("DeleteMarkers"), page["DeleteMarkers"]
    return counts


def anchored_exactly_once(settings: Settings, events: int) -> bool:
    """Every tenant anchored up to its head; the ranges tile each chain once; every run complete; each
    anchor's two objects exist once (one version each)."""
    with connect(settings, None, autocommit=True) as conn:
        one: Any = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        facts = {
            "unanchored_tenants": one(
                "SELECT count(*) FROM compliance.tenant_heads h LEFT JOIN compliance.tenant_anchor_state s "
                "USING (tenant_id) WHERE s.last_anchored_seq IS DISTINCT FROM h.last_seq"
            ),
            "anchored_events": one("SELECT coalesce(sum(last_seq - first_seq + 1), 0) FROM compliance.anchor_ranges"),
            "open_runs": one("SELECT count(*) FROM compliance.anchor_runs WHERE completed_at IS NULL"),
            "runs_without_anchor": one(
                "SELECT count(*) FROM compliance.anchor_runs r LEFT JOIN compliance.anchors a USING (cadence_id) "
                "WHERE a.cadence_id IS NULL"
            ),
        }
        cadences = [r[0] for r in conn.execute("SELECT cadence_id FROM compliance.anchors ORDER BY position")]
    want = {"unanchored_tenants": 0, "anchored_events": events, "open_runs": 0, "runs_without_anchor": 0}
    assert facts == want, facts
    versions = object_versions(settings, "")
    for cid in cadences:
        assert versions.get(anchor_key(cid)) == 1 and versions.get(proofs_key(cid)) == 1, (cid, versions)
    return True


WINDOW = {"since": "2026-11-22T00:00:00Z", "until": "2026-11-23T00:00:00Z"}  # every sample_event's day


def request_job(settings: Settings, fmt: str = "csv") -> str:
    from tasks.exports import queue_export

    return queue_export(settings, operator="ops@example.com", fmt=fmt, filter_text=WINDOW)


def job_row(settings: Settings, job_id: str) -> tuple[str, str | None, str | None]:
    """(status, job_error, object_key) of an export job."""
    with connect(settings, None, autocommit=True) as conn:
        row = conn.execute(
            "SELECT status, job_error, object_key FROM compliance.export_jobs WHERE job_id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def export_objects(settings: Settings, job_id: str) -> list[str]:
    s3 = s3_client(settings)
    listed = s3.list_objects_v2(Bucket=settings.export_bucket, Prefix=f"exports/{job_id}/")
    return [o["Key"] for o in listed.get("Contents", [])]


def verified_export(settings: Settings, job_id: str, tmp_path: Any) -> Any:
    """Download a complete job's file and verify it offline against the anchor bucket."""
    import json

    from tasks.exports import job_status
    from tasks.verify import verify_export_file

    status = job_status(settings, job_id)
    assert status is not None and status["status"] == "complete", status
    data = tmp_path / f"{job_id}.export"
    s3 = s3_client(settings)
    data.write_bytes(s3.get_object(Bucket=settings.export_bucket, Key=status["object_key"])["Body"].read())
    manifest = json.loads(s3.get_object(Bucket=settings.export_bucket, Key=status["manifest_key"])["Body"].read())
    return verify_export_file(settings, data, manifest, allow_pending=True)
