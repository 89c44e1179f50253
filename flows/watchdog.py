"""watchdog: measure the ledger's health every five minutes and tell the automations.

Runbook paragraph: publishes a heartbeat; measures the anchor lag (age of the
oldest chained event not yet anchored; 0 when everything is anchored), the
outbox depth and its oldest event's age, the poisoned rows, export jobs
stalled over 15 minutes (which it marks failed), the tails of the chains that
moved since its last run (re-verified), the anchor bucket's posture, and the
silent sources: steady (tenant, source) pairs quiet for several of their usual
intervals (compliance/silence.py says how a rhythm is learnt). Each
figure goes out as a Prefect event that the alert automations match, into
compliance.watchdog_runs for `compliance health`, and to CloudWatch when
configured. A markdown artifact shows the figures against their thresholds.
It only reads, except to fail stalled export jobs; it never writes to the bucket.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.config import load_settings
from compliance.watchdog import Judgement, judge, thresholds_with
from tasks.watchdog import EXPORT_JOBS_SHOWN, measure, publish, recent_export_jobs, record_run, send_to_cloudwatch

measure_task = task(measure, name="measure-ledger", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)


def _markdown(judgements: dict[str, Judgement], details: dict[str, Any]) -> str:
    icon = {"ok": "OK", "breached": "BREACHED", "critical": "CRITICAL", "unknown": "unknown"}
    rows = "\n".join(
        f"| {j.figure} | {j.value} | {'must be true' if j.limit is True else f'> {j.limit}'} | "
        f"{icon[j.state]} | {j.meaning} |"
        for j in judgements.values()
    )
    extra = "".join(f"\n- **{k}**: {v}" for k, v in details.items() if v)
    return (
        "# Watchdog\n\n| figure | value | alert when | state | meaning |\n|---|---|---|---|---|\n"
        + rows
        + ("\n\n## Details" + extra if extra else "")
    )


@flow(name="watchdog")
def watchdog() -> dict[str, Any]:
    """Measure, publish, record; return the figures and their states."""
    logger = get_run_logger()
    settings = load_settings()
    figures, details = measure_task(settings)
    judgements = judge(figures, thresholds_with(settings.alert_thresholds))
    events = publish(figures, judgements, details)
    record_run(settings, figures, judgements)
    cloudwatch = send_to_cloudwatch(figures)
    bad = {k: j.state for k, j in judgements.items() if j.state != "ok"}
    (logger.warning if bad else logger.info)("watchdog figures %s; not ok: %s", figures, bad or "none")
    create_markdown_artifact(
        key="watchdog",
        markdown=_markdown(judgements, details),
        description="Ledger figures against their alert thresholds",
    )
    create_table_artifact(
        key="export-jobs",
        table=recent_export_jobs(settings)
        or [{"job_id": "-", "operator": "", "format": "", "state": "no export jobs yet", "rows": None}],
        description=f"The newest {EXPORT_JOBS_SHOWN} export jobs, newest first (links are never shown here: "
        "`compliance export url` mints one for an authenticated operator)",
    )
    return {
        "figures": figures,
        "states": {k: j.state for k, j in judgements.items()},
        "events": events,
        "details": details,
        "cloudwatch": cloudwatch,
    }
