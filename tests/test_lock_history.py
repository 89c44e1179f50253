"""Each anchor is held to the lock mode and retention it was written with and to the trust floor, never to
today's settings alone; a lowered retention is refused in prod and recorded where forced; the bucket's
default mode is flipped only with the stage named twice."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta

import pytest

from compliance.anchor import proofs_key
from compliance.settings import RetentionLowered, Settings, SettingsError
from tasks.anchoring import anchor_once
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.storage import bucket_facts, provision_anchor_bucket, s3_client
from tasks.trust import deployment_trust
from tasks.verify import verify_chain
from tests.conftest import REPO, run_cli
from tests.test_anchor import KEY, grow, keys
from tests.test_server_rules import login_url


def _outbox(settings: Settings, event_type: str) -> list[tuple]:
    with connect(settings, None, autocommit=True) as conn:
        return conn.execute(
            "SELECT tenant_id, payload::jsonb, written_by FROM compliance.outbox WHERE event_type = %s", (event_type,)
        ).fetchall()


def test_a_governance_anchor_written_before_a_flip_still_verifies_after_it(settings: Settings, env_for) -> None:
    grow(settings, 30, tenants=3)
    [before] = anchor_once(settings, KEY)
    flipped = replace(settings, lock_mode="COMPLIANCE", allow_compliance_mode_outside_prod=True)
    grow(flipped, 30, tenants=3, start=30)
    [after] = anchor_once(flipped, KEY)
    assert (before.lock_mode, after.lock_mode) == ("GOVERNANCE", "COMPLIANCE")
    trust = deployment_trust(flipped)
    assert trust.lock_mode == "COMPLIANCE"
    with connect(settings, None) as conn:
        assert trust.governance_until == conn.execute(
            "SELECT to_char(anchored_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
            "FROM compliance.anchors WHERE cadence_id = %s",
            (before.cadence_id,),
        ).fetchone()[0]
    env = env_for(settings) | {
        "COMPLIANCE_OBJECT_LOCK_MODE": "COMPLIANCE",
        "COMPLIANCE_ALLOW_COMPLIANCE_MODE_OUTSIDE_PROD": "1",
    }
    done = run_cli(["verify", "chain"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert verify_chain(settings).ok  # and configured back to GOVERNANCE: the COMPLIANCE anchor still verifies


def test_a_raised_retention_leaves_older_anchors_verifying_and_a_shortened_object_fails(settings: Settings) -> None:
    # A bucket without the deny policy, so the governance bypass can shorten a lock (as its holder could).
    bare = replace(settings, anchor_bucket=settings.anchor_bucket + "-bare")
    provision_anchor_bucket(
        s3_client(bare), bare.anchor_bucket, mode="GOVERNANCE", retention_days=1, deny_deletes=False
    )
    grow(bare, 20, tenants=2)
    anchor_once(bare, KEY)
    raised = replace(bare, retention_days=3)
    grow(raised, 20, tenants=2, start=20)
    [second] = anchor_once(raised, KEY)
    assert verify_chain(raised).ok and verify_chain(bare).ok  # neither setting decides what older anchors need
    assert deployment_trust(raised).min_retention_days == 1  # the floor: the first anchor's retention
    s3 = s3_client(bare)
    head = s3.head_object(Bucket=bare.anchor_bucket, Key=proofs_key(second.cadence_id))
    s3.put_object_retention(
        Bucket=bare.anchor_bucket,
        Key=proofs_key(second.cadence_id),
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": head["ObjectLockRetainUntilDate"] - timedelta(days=1)},
        BypassGovernanceRetention=True,
    )
    report = verify_chain(raised)
    assert report.failure is not None
    assert (report.failure.code, report.failure.anchor) == ("retention", second.cadence_id)
    assert "it was written with" in report.failure.detail  # still above the floor: the record caught it


@pytest.fixture
def prod(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """``settings`` as prod: the anchorer's own login, COMPLIANCE mode, AWS credentials from the environment
    (the local S3 server takes any)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "prod-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "prod-test")
    url = login_url(settings, "compliance_anchorer", "pw-anchorer")
    return replace(
        settings, stage="prod", lock_mode="COMPLIANCE", retention_days=2, role_urls={"compliance_anchorer": url}
    )


def test_a_lowered_retention_is_refused_in_prod_and_where_forced_recorded_and_caught_by_verify(
    prod: Settings,
) -> None:
    dev = replace(prod, stage="dev", role_urls={})  # emits, drains and verifies as the owner does in dev
    grow(dev, 20, tenants=2)
    [first] = anchor_once(prod, KEY)
    lowered = replace(prod, retention_days=1)
    grow(dev, 20, tenants=2, start=20)
    before = keys(lowered)
    with pytest.raises(RetentionLowered, match="COMPLIANCE_RETENTION_DAYS=1 is below the 2 days") as refused:
        anchor_once(lowered, KEY)
    assert isinstance(refused.value, SettingsError)  # the CLI's exit 2
    assert keys(lowered) == before and _outbox(prod, "admin.retention_lowered") == []

    forcing = replace(lowered, allow_lowered_retention=True)
    [forced] = anchor_once(forcing, KEY)
    [(tenant, payload, written_by)] = _outbox(prod, "admin.retention_lowered")
    assert tenant == "ledger:platform"
    assert {k: payload[k] for k in ("fromDays", "toDays", "stage", "bucket")} == {
        "fromDays": 2,
        "toDays": 1,
        "stage": "prod",
        "bucket": prod.anchor_bucket,
    }
    assert drain_pending.fn(dev).poisoned == 0  # chained as the ledger's own event, not set aside
    with connect(dev, None) as conn:
        assert conn.execute(
            "SELECT count(*) FROM compliance.events WHERE event_type = 'admin.retention_lowered'"
        ).fetchone()[0] == 1
    grow(dev, 5, tenants=1, start=40)
    anchor_once(forcing, KEY)  # at the lowered retention already: no further lowering, no second event
    assert len(_outbox(prod, "admin.retention_lowered")) == 1
    report = verify_chain(dev)
    assert report.failure is not None
    assert (report.failure.code, report.failure.anchor) == ("retention", forced.cadence_id)
    assert "shorter than the trust file's 2 days" in report.failure.detail
    assert first.cadence_id != forced.cadence_id


def _lock_mode(env: dict[str, str], *args: str, typed: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "bucket", "lock-mode", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=REPO,
        timeout=120,
        input=typed,
    )


def test_lock_mode_flips_only_with_the_stage_named_twice_and_is_recorded(settings: Settings, env_for) -> None:
    env = env_for(settings) | {"COMPLIANCE_STAGE": "dev"}
    s3 = s3_client(settings)

    def mode() -> str | None:
        return bucket_facts(s3, settings.anchor_bucket).default_mode

    refusals = [
        (["COMPLIANCE", "--stage", "prod", "--confirm-stage", "prod"], None, "this is COMPLIANCE_STAGE=dev"),
        (["COMPLIANCE", "--stage", "dev", "--confirm-stage", "dev"], None, "COMPLIANCE_ALLOW_COMPLIANCE_MODE"),
        (["GOVERNANCE", "--stage", "dev", "--confirm-stage", "prod"], None, "is not the stage name 'dev'"),
        (["GOVERNANCE", "--stage", "dev"], "prod\n", "is not the stage name 'dev'"),
        (["GOVERNANCE", "--stage", "dev"], "", "is not the stage name 'dev'"),
    ]
    for args, typed, message in refusals:
        done = _lock_mode(env, *args, typed=typed)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert "nothing changed" in done.stderr
    assert mode() == "GOVERNANCE" and _outbox(settings, "admin.lock_mode_changed") == []

    allowed = env | {"COMPLIANCE_ALLOW_COMPLIANCE_MODE_OUTSIDE_PROD": "1"}
    done = _lock_mode(allowed, "COMPLIANCE", "--stage", "dev", typed="dev\n")
    assert done.returncode == 0, done.stderr
    facts = bucket_facts(s3, settings.anchor_bucket)
    assert (facts.default_mode, facts.default_days) == ("COMPLIANCE", 1)  # the retention kept
    [(tenant, payload, _)] = _outbox(settings, "admin.lock_mode_changed")
    assert tenant == "ledger:platform"
    assert {k: payload[k] for k in ("bucket", "fromMode", "toMode", "retentionDays", "stage")} == {
        "bucket": settings.anchor_bucket,
        "fromMode": "GOVERNANCE",
        "toMode": "COMPLIANCE",
        "retentionDays": 1,
        "stage": "dev",
    }
    # The local S3 server changes a bucket's default only while it is empty (AWS does not ask): refused, the
    # change is reported and nothing is recorded.
    grow(settings, 5, tenants=1)
    anchor_once(replace(settings, lock_mode="COMPLIANCE", allow_compliance_mode_outside_prod=True), KEY)
    done = _lock_mode(allowed, "GOVERNANCE", "--stage", "dev", "--confirm-stage", "dev")
    assert done.returncode == 1 and "refused the change" in done.stderr, done.stderr
    assert mode() == "COMPLIANCE" and len(_outbox(settings, "admin.lock_mode_changed")) == 1
