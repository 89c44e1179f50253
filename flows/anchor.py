"""anchor: seal every tenant's new events under one signed Merkle root in write-once storage.

Runbook paragraph: every 15 minutes this flow finds the tenants whose chains
grew since their last anchor, freezes the run (heads, time, predecessor) in
the database, writes the proofs file and then the signed anchor object to the
Object Lock bucket, and records the anchor and each tenant's new anchored seq.
If a previous run died half way, it first finishes that run with the same
bytes. No tenant grew: nothing is written. It leaves a markdown artifact with
the cadence, tenants, events, root, object keys and retention.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks.config import load_settings
from tasks.anchoring import AnchorOutcome, anchor_task
from tasks.signing import load_signing_key


def _markdown(outcomes: list[AnchorOutcome], bucket: str) -> str:
    if not outcomes:
        return "# Anchor\n\nNo tenant grew since the last anchor: nothing was written."
    parts = ["# Anchor"]
    for o in outcomes:
        parts.append(
            f"\n## cadence `{o.cadence_id}`{' (finished an interrupted run)' if o.resumed else ''}\n\n"
            f"| | |\n|---|---|\n| tenants | {o.tenants} |\n| events | {o.events} |\n"
            f"| merkle_root | `{o.merkle_root}` |\n| proofs | `s3://{bucket}/{o.proofs_key}` |\n"
            f"| anchor | `s3://{bucket}/{o.anchor_key}` (sha256 `{o.anchor_sha256}`) |\n"
            f"| retention | {o.lock_mode} until {o.retain_until} |\n"
        )
    return "\n".join(parts)


@flow(name="anchor")
def anchor(allow_lowered_retention: bool = False) -> dict[str, Any]:
    """Anchor every tenant that grew since its last anchor (and finish an interrupted run first).
    ``allow_lowered_retention``: go ahead in prod with a retention below the last anchor's (recorded as
    ``admin.retention_lowered``), as COMPLIANCE_ALLOW_LOWERED_RETENTION=1 does."""
    logger = get_run_logger()
    settings = load_settings()
    if allow_lowered_retention:
        settings = replace(settings, allow_lowered_retention=True)
    key = load_signing_key(settings)
    outcomes = anchor_task(settings, key)
    for o in outcomes:
        logger.info(
            "anchored cadence %s: %d tenants, %d events, root %s", o.cadence_id, o.tenants, o.events, o.merkle_root
        )
    create_markdown_artifact(
        key="anchor", markdown=_markdown(outcomes, settings.anchor_bucket), description="The anchors this run wrote"
    )
    return {"anchors": [o.__dict__ for o in outcomes]}
