"""Every deployment, defined once: used by `serve.py` (the local stack) and `deploy.py` (a work pool).

| deployment       | schedule (production)   | demo profile (`make run`) | concurrency |
|------------------|-------------------------|---------------------------|-------------|
| drain-outbox     | every 300 s, runs 290 s | every 60 s, runs 50 s     | DRAINERS (2)|
| anchor           | every 900 s             | every 60 s                | 1           |
| watchdog         | every 300 s             | every 60 s                | 1           |
| migration-drift  | daily 03:00 UTC + deploy| same                      | 1           |
| export-runner    | none (started per job)  | none                      | 4           |
| events-query     | none (from the UI)      | none                      | 4           |

drain-outbox: one run lives ~5 minutes and polls the outbox every 0.5 s, so an
event waits about a poll plus a batch before it is chained, while the UI sees
12 drain runs an hour (a flow run has a fixed cost, a task a small one: docs/benchmarks.md).
It has one schedule per drainer (``DRAINERS``) and a concurrency limit of as
many, so each tick starts that many runs, on whichever workers pick them up;
the runs split the outbox's shards between them by lease (tasks/shards.py).
Change ``DRAINERS`` and deploy again: the shards rebalance by themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flows.anchor import anchor
from flows.drain import drain_outbox
from flows.drift import migration_drift
from flows.events_query import events_query
from flows.export import export_runner
from flows.watchdog import watchdog

__all__ = ["DRAINERS", "DeploymentSpec", "specs"]

DRAINERS = 2  # drain-outbox runs at once, each with COMPLIANCE_DRAIN_WORKERS connections


@dataclass(frozen=True)
class DeploymentSpec:
    flow: Callable[..., Any]
    name: str
    entrypoint: str
    description: str
    interval: int | None = None
    cron: str | None = None
    concurrency: int = 1
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ("compliance",)
    copies: int = 1  # runs each tick of the schedule starts (one schedule each)

    def schedules(self) -> list[Any] | None:
        """The deployment's schedules: ``copies`` of its interval or cron, each with a slug of its own."""
        from prefect.schedules import Cron, Interval

        if self.interval:
            make: Callable[[str], Any] = lambda slug: Interval(self.interval, slug=slug)  # noqa: E731
        elif self.cron:
            make = lambda slug: Cron(self.cron, timezone="UTC", slug=slug)  # noqa: E731
        else:
            return None
        return [make(self.schedule_slug(i)) for i in range(self.copies)]

    def schedule_slug(self, i: int) -> str:
        return self.name if self.copies == 1 else f"{self.name}-{i + 1}"

    def deploy_options(self) -> dict[str, Any]:
        """What `to_deployment` and `deploy` both take."""
        return {
            "name": self.name,
            "schedules": self.schedules(),
            "description": self.description,
            "concurrency_limit": self.concurrency,
            "parameters": self.parameters,
            "tags": list(self.tags),
        }

    def to_deployment(self) -> Any:
        return self.flow.to_deployment(**self.deploy_options())  # type: ignore[attr-defined]


def specs(demo: bool = False) -> list[DeploymentSpec]:
    """The six deployments; ``demo`` shortens the schedules so the UI fills within two minutes."""
    return [
        DeploymentSpec(
            drain_outbox,
            "drain-outbox",
            "flows/drain.py:drain_outbox",
            "Chains emitted events into their tenants' hash chains. One run lives ~5 min polling the "
            f"outbox every 0.5 s (emit-to-chained p95 < 5 s); {DRAINERS} run at once, on any workers, "
            "splitting the outbox's shards between them.",
            interval=60 if demo else 300,
            concurrency=DRAINERS,
            copies=DRAINERS,
            parameters={"run_seconds": 50 if demo else 290},
        ),
        DeploymentSpec(
            anchor,
            "anchor",
            "flows/anchor.py:anchor",
            "Seals every tenant's new events under one signed Merkle root in the Object Lock bucket.",
            interval=60 if demo else 900,
        ),
        DeploymentSpec(
            watchdog,
            "watchdog",
            "flows/watchdog.py:watchdog",
            "Heartbeat and health figures (anchor lag, outbox, poison rows, stuck exports, chain tails, "
            "bucket posture) as Prefect events for the alert automations.",
            interval=60 if demo else 300,
        ),
        DeploymentSpec(
            migration_drift,
            "migration-drift",
            "flows/drift.py:migration_drift",
            "Probes every object declared by the sql/ migrations; fails on MISSING or MODIFIED.",
            cron="0 3 * * *",
        ),
        DeploymentSpec(
            export_runner,
            "export-runner",
            "flows/export.py:export_runner",
            "Produces one auditor-verifiable export. Start it with a job id, or fill in the request form "
            "(operator, format, window, filters) to request and run an export.",
            concurrency=4,
        ),
        DeploymentSpec(
            events_query,
            "events-query",
            "flows/events_query.py:events_query",
            "Shows events (newest 500) or one event's chain position, anchor and audit path.",
            concurrency=4,
        ),
    ]
