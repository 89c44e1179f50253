"""`compliance bucket check` against real buckets on the S3 server, and the posture rules themselves."""

from __future__ import annotations

import json

import pytest

from compliance.posture import BucketFacts, judge_posture
from compliance.settings import Settings
from tasks.storage import bucket_facts, s3_client
from tests.conftest import run_cli

GOOD = BucketFacts("Enabled", True, "GOVERNANCE", 365, True, "AES256", True)


def failing(
    facts: BucketFacts, stage: str = "dev", mode: str = "GOVERNANCE", days: int = 365, allow: bool = False
) -> list[str]:
    return [
        f.check
        for f in judge_posture(facts, stage=stage, mode=mode, retention_days=days, allow_compliance_outside_prod=allow)
        if not f.ok
    ]


def test_a_provisioned_bucket_passes(settings: Settings) -> None:
    facts = bucket_facts(s3_client(settings), settings.anchor_bucket)
    assert facts == BucketFacts("Enabled", True, "GOVERNANCE", 1, True, "AES256", True)
    assert failing(facts, days=1) == []


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"versioning": "Suspended"}, ["versioning"]),
        ({"lock_enabled": False, "default_mode": None}, ["object_lock", "lock_mode"]),
        ({"default_days": 30}, ["retention"]),
        ({"public_access_blocked": False}, ["public_access_block"]),
        ({"encryption": None}, ["encryption"]),
        ({"policy_denies_deletes": False}, ["bucket_policy"]),
    ],
)
def test_each_weakness_fails_its_check(change: dict, expected: list[str]) -> None:
    assert failing(GOOD._replace(**change)) == expected


def test_governance_fails_in_prod_and_compliance_needs_the_override_outside_prod() -> None:
    assert failing(GOOD, stage="prod", mode="COMPLIANCE") == ["lock_mode"]
    compliance = GOOD._replace(default_mode="COMPLIANCE")
    assert failing(compliance, stage="prod", mode="COMPLIANCE") == []
    assert failing(compliance, stage="staging") == ["lock_mode"]
    assert failing(compliance, stage="staging", allow=True) == []


def test_cli_bucket_check_exits_1_on_a_weak_bucket(settings: Settings, env_for) -> None:
    env = env_for(settings)
    good = run_cli(["bucket", "check", "--json"], env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert json.loads(good.stdout)["ok"] is True
    s3_client(settings).put_bucket_versioning(
        Bucket=settings.anchor_bucket, VersioningConfiguration={"Status": "Suspended"}
    )
    bad = run_cli(["bucket", "check"], env)
    assert bad.returncode == 1 and "FAIL versioning" in bad.stdout
