"""export-runner: produce one export an auditor can verify offline.

Runbook paragraph: started from the Prefect UI with the request form (window,
tenant, format, types, and the operator's address and one-time code: the code
is checked when the run starts, before anything is read), or by `compliance
export request` with the id of a job it queued. It claims the job queued ->
running (a second delivery does nothing), streams the matching events with
their audit paths into CSV or NDJSON, writes the manifest (filter, row count,
SHA-256, the exported rows, and the tenant records of every anchor referenced,
copied from proofs/) and uploads both. A failure marks the job failed with its
reason; it is never left running. A progress artifact moves while it runs; a
table artifact shows the job id, rows, format and SHA-256. No download link is
made here: an operator mints one with `compliance export url JOB_ID`, so no
artifact, result or log ever holds one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from compliance.settings import Settings
from tasks.config import load_settings
from compliance.timefmt import parse_utc_text, utc_text
from flows.forms import (
    ActorType,
    EventType,
    actor_types_field,
    code_field,
    event_types_field,
    form_field,
    operator_field,
    prefect_user,
    window_field,
    window_text,
)
from tasks.exports import JobOutcome, request_export, run_job

DEFAULT_WINDOW = timedelta(days=7)  # the form's window when since is left empty, as `events list` reads


@task(name="run-export-job", cache_policy=NO_CACHE, retries=0)
def run_export_task(settings: Settings, job_id: str, artifact_id: Any) -> JobOutcome | None:
    last = [0.0]

    def progress(done: int, total: int) -> None:
        pct = 100.0 if total == 0 else min(100.0, 100.0 * done / total)
        if pct - last[0] >= 5 or pct == 100.0:
            update_progress_artifact(artifact_id=artifact_id, progress=pct)
            last[0] = pct

    return run_job(settings, job_id, progress)


@flow(
    name="export-runner",
    description="Export the events of a window for an auditor: fill in the window, a tenant (or none, with a "
    "cross-tenant grant), the format, and your operator address with its current one-time code. The result names "
    "the job; fetch the file with `compliance export url JOB_ID --operator EMAIL --code CODE`.",
)
def export_runner(
    since: str = window_field(
        "Since", "Start of the window, inclusive (UTC); at most 90 days before until. Empty: 7 days before until."
    ),
    until: str = window_field("Until", "End of the window, exclusive (UTC); after since. Empty: now."),
    tenant_id: str = form_field(
        "",
        "Tenant",
        "The tenant to export. Leave empty for every tenant: that needs a cross-tenant grant.",
    ),
    format: Literal["csv", "ndjson", "parquet"] = form_field(
        "csv",
        "Format",
        "csv (a header row, one event a row), ndjson (one object a line) or parquet (for polars, DuckDB, pandas)",
    ),
    event_types: list[EventType] = event_types_field(),
    actor_types: list[ActorType] = actor_types_field(),
    operator: str = operator_field(),
    code: str = code_field(),
    job_id: str = form_field(
        "",
        "Advanced: queued job id",
        "Leave empty. Set only to run a job already queued by `compliance export request` (that "
        "request was checked then; the fields above are then ignored).",
    ),
) -> dict[str, Any]:
    """Request an export from the form's fields and run it, or run the queued job ``job_id``."""
    logger = get_run_logger()
    settings = load_settings()
    if not job_id:
        end = window_text(until, "until") or utc_text(datetime.now(UTC))
        start = window_text(since, "since") or utc_text(parse_utc_text(end) - DEFAULT_WINDOW)
        flt: dict[str, Any] = {"since": start, "until": end}
        if tenant_id.strip():
            flt["tenant_id"] = tenant_id.strip()
        if event_types:
            flt["event_types"] = list(event_types)
        if actor_types:
            flt["actor_types"] = list(actor_types)
        job_id = request_export(
            settings, operator=operator, code=code, fmt=format, filter_text=flt, prefect_user=prefect_user()
        )
        logger.info("requested export %s", job_id)
    artifact_id = create_progress_artifact(progress=0.0, key="export-progress", description=f"export {job_id}")
    outcome = run_export_task(settings, job_id, artifact_id)
    if outcome is None:
        logger.info("export %s was not queued (already claimed): nothing to do", job_id)
        return {"job_id": job_id, "status": "not-queued"}
    update_progress_artifact(artifact_id=artifact_id, progress=100.0)
    create_table_artifact(
        key="export-result",
        table=[{"job id": job_id, "rows": outcome.rows, "format": outcome.format, "sha256": outcome.data_sha256}],
        description=f"export {job_id}: download with `compliance export url {job_id} --operator EMAIL --code CODE`",
    )
    return {"job_id": job_id, "status": outcome.status, "rows": outcome.rows, "format": outcome.format}
