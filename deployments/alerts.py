"""The alert automations (docs/oncall.md has a playbook for each), created idempotently.

Every automation notifies through one notification block the operator chooses
(`COMPLIANCE_ALERT_BLOCK`, default ``compliance-alerts``). When that block does
not exist, `compliance alerts apply` creates a webhook block posting JSON to
`COMPLIANCE_ALERT_WEBHOOK_URL`; point it at Slack or e-mail by saving a Slack
or e-mail block under the same name instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

__all__ = ["ALERTS", "AlertSpec", "apply_alerts", "ensure_notification_block"]

FLOWS = ("drain-outbox", "anchor", "export-runner", "migration-drift")
PREFIX = "compliance: "


@dataclass(frozen=True)
class AlertSpec:
    name: str
    description: str
    expect: tuple[str, ...]
    severity: str
    posture: str = "Reactive"
    within_seconds: int = 0
    match_related: dict[str, Any] | None = None
    match: dict[str, Any] | None = None
    detail: str = ""  # a line of the notification naming what the event's payload reports

    @property
    def full_name(self) -> str:
        return PREFIX + self.name


def _breached(figure: str) -> tuple[str, ...]:
    """A figure over its threshold, or not measured at all (never read as fine)."""
    return (f"compliance.watchdog.{figure}.breached", f"compliance.watchdog.{figure}.unknown")


WATCHDOG = {"prefect.resource.id": "compliance.watchdog"}

ALERTS: tuple[AlertSpec, ...] = (
    *(
        AlertSpec(
            f"{flow} run failed",
            f"A run of the {flow} flow failed or crashed.",
            ("prefect.flow-run.Failed", "prefect.flow-run.Crashed"),
            "critical" if flow != "export-runner" else "warning",
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": flow},
        )
        for flow in FLOWS
    ),
    AlertSpec(
        "watchdog heartbeat missing",
        "No watchdog heartbeat for 10 minutes: the watchdog (or its worker, or the Prefect server) is down.",
        ("compliance.watchdog.heartbeat",),
        "critical",
        posture="Proactive",
        within_seconds=600,
        match=WATCHDOG,
    ),
    AlertSpec(
        "anchor lag",
        "The oldest chained event not yet anchored is over 1,800 s old.",
        _breached("anchor_lag_seconds"),
        "warning",
        match=WATCHDOG,
    ),
    AlertSpec(
        "outbox depth",
        "More than 10,000 events wait in the outbox.",
        _breached("outbox_depth"),
        "warning",
        match=WATCHDOG,
    ),
    AlertSpec(
        "outbox oldest",
        "An event has waited in the outbox over 5 minutes.",
        _breached("outbox_oldest_age_seconds"),
        "warning",
        match=WATCHDOG,
    ),
    AlertSpec(
        "poison rows",
        "An event could not be chained and was set aside.",
        _breached("poison_rows"),
        "warning",
        match=WATCHDOG,
    ),
    AlertSpec(
        "stuck export",
        "An export ran over 15 minutes and was marked failed.",
        _breached("stuck_exports"),
        "warning",
        match=WATCHDOG,
    ),
    AlertSpec(
        "silent sources",
        "A source that emitted steadily has gone quiet for several of its usual intervals.",
        _breached("silent_sources"),
        "warning",
        match=WATCHDOG,
        detail="Silent: {{ event.payload.detail | join('; ') }}\n",
    ),
    AlertSpec(
        "chain tail broken",
        "CRITICAL: a recently written chain no longer verifies.",
        _breached("chain_tail_ok"),
        "critical",
        match=WATCHDOG,
    ),
    AlertSpec(
        "bucket posture failed",
        "CRITICAL: the anchor bucket is weaker than configured, or could not be read.",
        _breached("posture_ok"),
        "critical",
        match=WATCHDOG,
        detail="Findings: {{ event.payload.detail }}\n",
    ),
    AlertSpec(
        "anchor object missing",
        "CRITICAL: an anchor object read back from the bucket is missing, has a second version or is not locked "
        "as recorded, or the anchors could not be read back.",
        _breached("anchors_ok"),
        "critical",
        match=WATCHDOG,
        detail="Objects: {{ event.payload.detail | join('; ') }}\n",
    ),
    AlertSpec(
        "export queued too long",
        "An export has waited in the queue over 15 minutes: no export-runner run picked it up.",
        _breached("queued_exports_oldest_age_seconds"),
        "warning",
        match=WATCHDOG,
    ),
)


def ensure_notification_block() -> Any:
    """The notification block the automations use (created as a webhook block when missing)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    name = os.environ.get("COMPLIANCE_ALERT_BLOCK", "compliance-alerts")
    try:
        return CustomWebhookNotificationBlock.load(name, _sync=True)  # type: ignore[call-arg]
    except ValueError:
        block = CustomWebhookNotificationBlock(
            name="compliance alerts",
            url=os.environ.get("COMPLIANCE_ALERT_WEBHOOK_URL", "http://127.0.0.1:8765/alerts"),
            method="POST",
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
        )
        block.save(name, overwrite=False, _sync=True)  # type: ignore[call-arg]
        return block


def _automation(spec: AlertSpec, block_id: Any) -> Any:
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification

    trigger = EventTrigger(
        expect=set(spec.expect),
        match=spec.match or {},
        match_related=spec.match_related or {},
        posture=Posture.Proactive if spec.posture == "Proactive" else Posture.Reactive,
        threshold=1,
        within=timedelta(seconds=spec.within_seconds),
    )
    body = (
        f"[{spec.severity.upper()}] {spec.description}\n"
        + spec.detail
        + "Event: {{ event.event }} on {{ event.resource.id }} at {{ event.occurred }}\n"
        "Playbook: docs/oncall.md, section '" + spec.name + "'."
    )
    return Automation(
        name=spec.full_name,
        description=f"[{spec.severity}] {spec.description}",
        enabled=True,
        trigger=trigger,
        actions=[
            SendNotification(block_document_id=block_id, subject=f"[{spec.severity}] {spec.full_name}", body=body)
        ],
    )


def apply_alerts(specs: tuple[AlertSpec, ...] = ALERTS) -> list[tuple[str, str]]:
    """Create each automation, or update it in place when one of that name exists; (name, created|updated)."""
    from prefect.automations import Automation

    block = ensure_notification_block()
    block_id = block._block_document_id
    done = []
    for spec in specs:
        wanted = _automation(spec, block_id)
        try:
            existing = Automation.read(name=spec.full_name)
        except ValueError:
            existing = None
        if existing is None:
            wanted.create()
            done.append((spec.full_name, "created"))
        else:
            wanted.id = existing.id
            wanted.update()
            done.append((spec.full_name, "updated"))
    return done
