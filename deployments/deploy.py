"""Deploy the same six deployments to a work pool (instead of serving them locally).

    prefect work-pool create compliance --type process      # or ecs / kubernetes, see docs/operator-runbook.md
    python -m deployments.deploy --pool compliance [--source /path/or/git-url]
    prefect worker start --pool compliance

Schedules, descriptions, parameters and concurrency come from definitions.py,
exactly as `serve.py` uses them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow as prefect_flow

from deployments.definitions import specs

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", required=True, help="the work pool's name")
    parser.add_argument("--source", default=str(REPO), help="where workers find the code (path or git URL)")
    args = parser.parse_args()
    for spec in specs():
        remote = prefect_flow.from_source(source=args.source, entrypoint=spec.entrypoint)
        remote.deploy(
            name=spec.name,
            work_pool_name=args.pool,
            interval=spec.interval,
            cron=spec.cron,
            description=spec.description,
            concurrency_limit=spec.concurrency,
            parameters=spec.parameters,
            tags=list(spec.tags),
        )
        print(f"deployed {spec.name} to pool {args.pool}")


if __name__ == "__main__":
    main()
