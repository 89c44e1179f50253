"""migration-drift: is the database exactly what the migrations in sql/ say it should be?

Runbook paragraph: daily and on every deploy, probes every object declared
by a `-- creates:` marker (APPLIED or MISSING), notices applied migrations
whose file changed since (MODIFIED), files not applied yet (PENDING) and files
without markers (UNVERIFIED). It leaves a table artifact and fails on anything
but APPLIED, which fires the migration-drift alert; `deployments.deploy` runs
the same check first and refuses to deploy on it.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from compliance.settings import Settings
from tasks.config import load_settings
from tasks.db import connect
from tasks.schema import DriftRow, drift_problems, drift_report


class DriftDetected(RuntimeError):
    """The schema differs from sql/: objects MISSING, migrations MODIFIED, PENDING or UNVERIFIED."""


@task(name="probe-schema", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def probe_schema(settings: Settings) -> list[dict[str, Any]]:
    # The probes read only the catalogs and schema_migrations: the reader role suffices, never the owner.
    with connect(settings, "compliance_reader", autocommit=True) as conn:
        return [r._asdict() for r in drift_report(conn)]


@flow(name="migration-drift")
def migration_drift() -> dict[str, Any]:
    """Probe every declared object; fail on anything but APPLIED."""
    rows = probe_schema(load_settings())
    create_table_artifact(key="migration-drift", table=rows, description="Every `-- creates:` object, probed")
    bad = [r._asdict() for r in drift_problems([DriftRow(**r) for r in rows])]
    if bad:
        raise DriftDetected("; ".join(f"{r['status']} {r['kind']} {r['name']} ({r['migration']})" for r in bad))
    return {"objects": len(rows), "problems": 0}
