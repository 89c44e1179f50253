"""export-runner: produce one export an auditor can verify offline.

Runbook paragraph: started per job, by `compliance export request` (with the
job id) or from the Prefect UI (with the request form: it requests the job,
then runs it). It claims the job queued -> running (a second delivery does
nothing), streams the matching events with their audit paths into CSV or
NDJSON, writes the manifest (filter, row count, SHA-256, the exported rows,
and the tenant records of every anchor referenced, copied from proofs/),
uploads both, and stores a 15-minute presigned download link. A failure marks
the job failed with its reason; it is never left running. A progress artifact
moves while it runs; a link artifact carries the download.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from compliance.settings import Settings
from tasks.exports import request_export, run_job


class ExportRequest(BaseModel):
    """An export request made from the Prefect UI (the same checks as `compliance export request`)."""

    operator: str = Field(description="Your e-mail; it must be on COMPLIANCE_OPERATOR_EMAILS. The request is audited.")
    format: Literal["csv", "ndjson"] = Field(
        default="csv", description="csv (header row) or ndjson (one object a line)"
    )
    since: str = Field(description="Start of the window, RFC 3339 with offset, inclusive (e.g. 2026-11-01T00:00:00Z)")
    until: str = Field(description="End of the window, RFC 3339 with offset, exclusive; at most 90 days after since")
    tenant_id: str | None = Field(default=None, description="One tenant; leave empty for a cross-tenant export")
    event_types: list[str] | None = Field(default=None, description="Only these event types (e.g. auth.signin.failure)")
    actor_types: list[str] | None = Field(
        default=None, description="Only these actor types: user, service, agent, system, operator"
    )

    def filter_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"since": self.since, "until": self.until}
        for key in ("tenant_id", "event_types", "actor_types"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@task(name="run-export-job", cache_policy=NO_CACHE, retries=0)
def run_export_task(settings: Settings, job_id: str, artifact_id: Any) -> Any:
    last = [0.0]

    def progress(done: int, total: int) -> None:
        pct = 100.0 if total == 0 else min(100.0, 100.0 * done / total)
        if pct - last[0] >= 5 or pct == 100.0:
            update_progress_artifact(artifact_id=artifact_id, progress=pct)
            last[0] = pct

    return run_job(settings, job_id, progress)


@flow(name="export-runner")
def export_runner(job_id: str | None = None, request: ExportRequest | None = None) -> dict[str, Any]:
    """Run export job ``job_id``; or, given a ``request`` (the UI form), request it and then run it."""
    logger = get_run_logger()
    settings = Settings.from_env()
    if job_id is None:
        if request is None:
            raise ValueError("give job_id (a queued job) or request (operator, format, window, ...)")
        job_id = request_export(
            settings, operator=request.operator, fmt=request.format, filter_text=request.filter_json()
        )
        logger.info("requested export %s", job_id)
    artifact_id = create_progress_artifact(progress=0.0, key="export-progress", description=f"export {job_id}")
    outcome = run_export_task(settings, job_id, artifact_id)
    if outcome is None:
        logger.info("export %s was not queued (already claimed): nothing to do", job_id)
        return {"job_id": job_id, "status": "not-queued"}
    update_progress_artifact(artifact_id=artifact_id, progress=100.0)
    create_link_artifact(
        key="export-download",
        link=outcome.url,
        link_text=f"events ({outcome.rows} rows), valid until {outcome.url_expires_at}",
        description=f"export {job_id}: sha256 {outcome.data_sha256}",
    )
    return {
        "job_id": job_id,
        "status": outcome.status,
        "rows": outcome.rows,
        "url": outcome.url,
        "url_expires_at": outcome.url_expires_at,
    }
