"""The watchdog's figures and events, the drift flow, health, and the alert automations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from compliance.settings import Settings
from compliance.watchdog import judge
from tasks.anchoring import anchor_once
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.exports import queue_export
from tasks.outbox import emit_batch
from tasks.storage import s3_client
from tasks.watchdog import STALLED_ERROR, measure
from tests.conftest import REPO, run_cli, sample_event
from tests.test_anchor import KEY


def emit_and_drain(settings: Settings, n: int = 10) -> None:
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(conn, [sample_event(i, tenant=f"t{i % 2}") for i in range(n)])
    drain_pending.fn(settings)


def breached(figures: dict) -> dict:
    return {k: j.state for k, j in judge(figures).items() if j.state != "ok"}


def test_a_quiet_system_reports_lag_0_and_no_alert(settings: Settings) -> None:
    figures, _ = measure(settings)
    assert figures["anchor_lag_seconds"] == 0 and figures["outbox_depth"] == 0
    assert breached(figures) == {}
    emit_and_drain(settings)
    anchor_once(settings, KEY)
    figures, _ = measure(settings)
    assert figures["anchor_lag_seconds"] == 0 and breached(figures) == {}


def test_an_old_unanchored_event_breaches_the_anchor_lag(settings: Settings) -> None:
    emit_and_drain(settings)
    figures, _ = measure(settings)
    assert 0 < figures["anchor_lag_seconds"] < 60 and breached(figures) == {}
    figures, _ = measure(settings, now=datetime.now(UTC) + timedelta(minutes=31))
    assert figures["anchor_lag_seconds"] > 1800
    assert breached(figures) == {"anchor_lag_seconds": "breached"}


def test_outbox_and_poison_figures(settings: Settings) -> None:
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(conn, [sample_event(i) for i in range(3)])
    figures, _ = measure(settings)
    assert figures["outbox_depth"] == 3 and figures["outbox_oldest_age_seconds"] >= 0
    with connect(settings, None, autocommit=True) as conn:
        conn.execute("UPDATE compliance.outbox SET enqueued_at = now() - interval '6 minutes'")
        conn.execute(
            "INSERT INTO compliance.outbox_poison (id, event_id, tenant_id, occurred_at, actor_type, actor_id, "
            "source, event_type, payload, redacted_fields, enqueued_at, error) VALUES (1, gen_random_uuid(), "
            "'t', 'x', 'user', 'u', 's', 'e.x', '{', '[]', now(), 'payload is not JSON')"
        )
    figures, _ = measure(settings)
    assert breached(figures) == {"outbox_oldest_age_seconds": "breached", "poison_rows": "breached"}


def test_a_stuck_export_is_failed_by_the_watchdog(settings: Settings) -> None:
    job = queue_export(
        settings,
        operator="ops@example.com",
        fmt="csv",
        filter_text={"since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"},
    )
    with connect(settings, None, autocommit=True) as conn:
        conn.execute("UPDATE compliance.export_jobs SET status = 'running', started_at = now() - interval '16 minutes'")
    figures, details = measure(settings)
    assert figures["stuck_exports"] == 1 and details["stalled_jobs"] == [job]
    with connect(settings, None, autocommit=True) as conn:
        assert conn.execute("SELECT status, job_error FROM compliance.export_jobs").fetchone() == (
            "failed",
            STALLED_ERROR,
        )
    assert measure(settings)[0]["stuck_exports"] == 0  # failed, never deleted, counted once


def test_a_broken_chain_tail_is_critical(settings: Settings) -> None:
    emit_and_drain(settings)
    assert measure(settings)[0]["chain_tail_ok"] is True
    with connect(settings, None, autocommit=True) as conn:
        conn.execute("ALTER TABLE compliance.events DISABLE TRIGGER events_immutable")
        conn.execute("UPDATE compliance.events SET actor_id = 'x' WHERE tenant_id = 't1' AND seq = 3")
        conn.execute("ALTER TABLE compliance.events ENABLE TRIGGER events_immutable")
    figures, details = measure(settings)
    assert figures["chain_tail_ok"] is False and "tenant t1 seq 3" in details["chain_tail"]
    assert breached(figures) == {"chain_tail_ok": "critical"}


def test_a_weak_bucket_fails_the_posture_figure(settings: Settings) -> None:
    assert measure(settings)[0]["posture_ok"] is True
    s3_client(settings).delete_public_access_block(Bucket=settings.anchor_bucket)
    figures, details = measure(settings)
    assert figures["posture_ok"] is False and details["posture_ok"][0]["check"] == "public_access_block"


def test_the_watchdog_role_cannot_write_to_the_ledger(settings: Settings) -> None:
    import psycopg

    with connect(settings, "compliance_watchdog", autocommit=True) as conn:
        for statement in (
            "INSERT INTO compliance.outbox (event_id, tenant_id, occurred_at, actor_type, actor_id, "
            "source, event_type, payload) VALUES (gen_random_uuid(), 't', 'x', 'user', 'a', 's', 'a.b', "
            "'{}')",
            "UPDATE compliance.export_jobs SET operator = 'x'",
            "DELETE FROM compliance.export_jobs",
            "INSERT INTO compliance.anchors DEFAULT VALUES",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_watchdog_flow_publishes_events_records_figures_and_health_reads_them(
    settings: Settings, env_for, prefect_harness
) -> None:
    from flows.watchdog import watchdog

    env_for(settings)
    emit_and_drain(settings)
    result = watchdog()
    assert result["events"][0] == "compliance.watchdog.heartbeat"
    assert "compliance.watchdog.anchor_lag_seconds.ok" in result["events"]
    assert all(state == "ok" for state in result["states"].values())
    health = run_cli(["health", "--json"], {**env_for(settings)})
    assert health.returncode == 0, health.stdout + health.stderr
    report = json.loads(health.stdout)
    assert report["critical"] == [] and report["watchdog_last_run_age_seconds"] < 60


def test_health_exits_1_when_a_figure_is_critical(settings: Settings, env_for) -> None:
    with connect(settings, None, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO compliance.watchdog_runs (figures, states, critical) VALUES "
            "('{\"chain_tail_ok\": false}', '{}', true)"
        )
    out = run_cli(["health"], env_for(settings))
    assert out.returncode == 1 and "chain_tail_ok is critical" in out.stdout


def test_drift_flow_fails_on_a_dropped_index_and_cli_names_it(settings: Settings, env_for, prefect_harness) -> None:
    from flows.drift import DriftDetected, migration_drift

    env_for(settings)
    assert migration_drift()["problems"] == 0
    with connect(settings, None, autocommit=True) as conn:
        conn.execute("DROP INDEX compliance.export_jobs_status")
    with pytest.raises(DriftDetected, match="MISSING index compliance.export_jobs_status"):
        migration_drift()
    out = run_cli(["drift", "--json"], env_for(settings))
    assert out.returncode == 1
    assert [o["name"] for o in json.loads(out.stdout)["objects"] if o["status"] == "MISSING"] == [
        "compliance.export_jobs_status"
    ]


def test_alerts_apply_twice_creates_each_automation_once(prefect_harness) -> None:
    from prefect.automations import Automation

    from deployments.alerts import ALERTS, apply_alerts

    first = apply_alerts()
    second = apply_alerts()
    assert {w for _, w in first} == {"created"} and {w for _, w in second} == {"updated"}
    assert len(first) == len(ALERTS) == 15
    for spec in ALERTS:
        assert Automation.read(name=spec.full_name).name == spec.full_name


def test_health_shows_the_last_run_that_started_and_counts_late_ones_not_the_next_scheduled(
    prefect_harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Completed, Late, Running, Scheduled

    from cli.health import _last_runs

    @flow(name="export-runner")
    def export_runner_stand_in() -> None:  # only its name is used: runs are created through the API
        pass

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        done = client.create_flow_run(export_runner_stand_in, state=Scheduled(scheduled_time=now))
        client.set_flow_run_state(done.id, Running(), force=True)
        client.set_flow_run_state(done.id, Completed(), force=True)
        client.create_flow_run(export_runner_stand_in, state=Scheduled(scheduled_time=now + timedelta(hours=1)))
        client.create_flow_run(export_runner_stand_in, state=Late(scheduled_time=now - timedelta(minutes=5)))
        started = client.read_flow_run(done.id).start_time
    last = _last_runs()["export-runner"]
    assert last["state"] == "Completed", last  # not the run scheduled an hour from now
    assert last.get("late") == 1, last
    assert started is not None and last["start"] == started.isoformat()


def _unapply_last_migration(settings: Settings) -> str:
    """The database one migration behind the code, as after a deploy of new code without `compliance migrate`."""
    with connect(settings, None, autocommit=True) as conn:
        version, = conn.execute("SELECT max(version) FROM compliance.schema_migrations").fetchone()  # type: ignore[misc]
        conn.execute("DELETE FROM compliance.schema_migrations WHERE version = %s", (version,))
    return f"{version:04d}_"


def test_a_pending_migration_fails_drift_and_refuses_the_deploy(settings: Settings, env_for) -> None:
    env = env_for(settings)
    assert run_cli(["drift"], env).returncode == 0
    prefix = _unapply_last_migration(settings)
    out = run_cli(["drift"], env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert any(line.startswith("PENDING") and prefix in line for line in out.stdout.splitlines()), out.stdout
    assert "all APPLIED" not in out.stdout

    deploy = subprocess.run(
        [sys.executable, "-m", "deployments.deploy", "--pool", "no-such-pool"],
        capture_output=True, text=True, env={**os.environ, **env}, cwd=REPO, timeout=120,
    )
    assert deploy.returncode == 1, deploy.stdout + deploy.stderr
    assert "not deploying" in deploy.stderr and "PENDING" in deploy.stderr and "--allow-drift" in deploy.stderr
    assert "deployed" not in deploy.stdout


def test_allowing_drift_records_the_reason_in_the_ledger(settings: Settings, env_for) -> None:
    from deployments.deploy import DriftRefused, drift_gate

    env_for(settings)
    _unapply_last_migration(settings)
    with pytest.raises(DriftRefused, match="PENDING"):
        drift_gate(None)
    drift_gate("hotfix 4711 ships before its index migration")
    with connect(settings, None, autocommit=True) as conn:
        [(tenant, event_type, payload)] = conn.execute(
            "SELECT tenant_id, event_type, payload::jsonb FROM compliance.outbox WHERE event_type = 'admin.drift_allowed'"
        ).fetchall()
    assert tenant == "ledger:platform"
    assert payload["reason"] == "hotfix 4711 ships before its index migration" and "PENDING" in payload["problems"]


def test_an_anchor_deleted_with_a_governance_bypass_is_critical_on_the_next_watchdog_run(
    settings: Settings, env_for, prefect_harness
) -> None:
    from dataclasses import replace

    from flows.watchdog import watchdog
    from tasks.storage import provision_anchor_bucket

    # The deployers' own bucket without its deny-deletes policy (a deployer can edit the policy), so that the
    # governance bypass goes through, as it would for a principal holding s3:BypassGovernanceRetention.
    settings = replace(settings, anchor_bucket=settings.anchor_bucket + "-bare")
    provision_anchor_bucket(
        s3_client(settings), settings.anchor_bucket, mode="GOVERNANCE", retention_days=1, deny_deletes=False
    )
    env = env_for(settings)
    emit_and_drain(settings)
    anchor_once(settings, KEY)
    assert watchdog()["states"]["anchors_ok"] == "ok"
    with connect(settings, None, autocommit=True) as conn:
        [(key,)] = conn.execute("SELECT anchor_key FROM compliance.anchors").fetchall()
    s3 = s3_client(settings)
    [version] = s3.list_object_versions(Bucket=settings.anchor_bucket, Prefix=key)["Versions"]
    s3.delete_object(
        Bucket=settings.anchor_bucket, Key=key, VersionId=version["VersionId"], BypassGovernanceRetention=True
    )
    result = watchdog()
    assert result["states"]["anchors_ok"] == "critical"
    assert "compliance.watchdog.anchors_ok.breached" in result["events"]
    assert result["details"]["anchors_ok"] == [f"{key}: missing from the bucket"]
    health = run_cli(["health"], env)
    assert health.returncode == 1 and "anchors_ok is critical" in health.stdout, health.stdout


def test_a_second_version_of_an_anchor_fails_the_read_back(settings: Settings) -> None:
    emit_and_drain(settings)
    anchor_once(settings, KEY)
    assert measure(settings)[0]["anchors_ok"] is True
    with connect(settings, None, autocommit=True) as conn:
        [(key,)] = conn.execute("SELECT proofs_key FROM compliance.anchors").fetchall()
    s3_client(settings).put_object(Bucket=settings.anchor_bucket, Key=key, Body=b"{}")
    figures, details = measure(settings)
    assert figures["anchors_ok"] is False and details["anchors_ok"] == [f"{key}: 2 versions; an anchor is written once"]


def test_anchor_objects_are_judged_against_their_recorded_lock() -> None:
    from compliance.posture import StoredObject, judge_anchor_object

    until = datetime(2027, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
    fine = StoredObject("anchors/a.json", 1, "GOVERNANCE", until.replace(microsecond=0))
    assert judge_anchor_object(fine, mode="GOVERNANCE", retain_until=until).ok
    flipped = fine._replace(mode="COMPLIANCE")
    assert judge_anchor_object(flipped, mode="GOVERNANCE", retain_until=until).detail == (
        "lock mode COMPLIANCE, recorded GOVERNANCE"
    )
    shortened = fine._replace(retain_until=until - timedelta(days=30))
    assert "retained until 2027-11-01" in judge_anchor_object(shortened, mode="GOVERNANCE", retain_until=until).detail
    unlocked = fine._replace(mode=None, retain_until=None)
    assert not judge_anchor_object(unlocked, mode="GOVERNANCE", retain_until=until).ok


def test_an_unreadable_bucket_is_an_unknown_posture_that_alerts(settings: Settings) -> None:
    from dataclasses import replace

    from compliance.watchdog import alert_event
    from deployments.alerts import ALERTS

    figures, details = measure(replace(settings, anchor_bucket="no-such-anchor-bucket"))
    assert figures["posture_ok"] is None and "could not be read" in details["posture_ok"][0]
    verdict = judge(figures)["posture_ok"]
    assert verdict.state == "unknown" and verdict.critical
    event = alert_event("posture_ok", verdict.state)
    assert event == "compliance.watchdog.posture_ok.unknown"
    assert event in next(a.expect for a in ALERTS if a.name == "bucket posture failed")


def test_an_export_queued_too_long_breaches_its_figure(settings: Settings) -> None:
    queue_export(
        settings,
        operator="ops@example.com",
        fmt="csv",
        filter_text={"since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"},
    )
    figures, _ = measure(settings)
    assert 0 <= figures["queued_exports_oldest_age_seconds"] < 60 and "queued_exports_oldest_age_seconds" not in breached(
        figures
    )
    with connect(settings, None, autocommit=True) as conn:
        conn.execute("UPDATE compliance.export_jobs SET requested_at = now() - interval '16 minutes'")
    figures, _ = measure(settings)
    assert figures["queued_exports_oldest_age_seconds"] > 900
    assert breached(figures) == {"queued_exports_oldest_age_seconds": "breached"}


def test_the_watchdog_shows_the_newest_export_jobs_without_links(settings: Settings, env_for, prefect_harness) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from flows.watchdog import watchdog

    env_for(settings)
    job = queue_export(
        settings,
        operator="ops@example.com",
        fmt="ndjson",
        filter_text={"since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"},
    )
    watchdog()
    with get_client(sync_client=True) as client:
        artifact = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["export-jobs"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )[0]
    table = artifact.data if isinstance(artifact.data, list) else json.loads(artifact.data)
    row = next(r for r in table if r["job_id"] == job)
    assert (row["operator"], row["format"], row["state"]) == ("ops@example.com", "ndjson", "queued")
    text = json.dumps(table)
    assert "http" not in text and "X-Amz" not in text
