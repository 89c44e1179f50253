"""`compliance bucket check` against real buckets on the S3 server, the posture rules themselves, and the
bucket's hardening documents (its policy, the IAM templates)."""

from __future__ import annotations

import json

import pytest

from compliance.bucket import anchor_bucket_policy, https_only_applies, iam_policy_template
from compliance.posture import BucketFacts, judge_configured, judge_posture
from compliance.settings import Settings
from tasks.storage import bucket_facts, provision_anchor_bucket, s3_client
from tests.conftest import run_cli

LIFECYCLE = (("anchors/", 90), ("proofs/", 90))
GOOD = BucketFacts("Enabled", True, "GOVERNANCE", 365, True, "AES256", True, True, (), None, False, LIFECYCLE)
KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
KMS = GOOD._replace(encryption="aws:kms", kms_key_id=KEY_ARN, bucket_key=True)


def failing(
    facts: BucketFacts,
    stage: str = "dev",
    mode: str = "GOVERNANCE",
    days: int = 365,
    allow: bool = False,
    kms: str | None = None,
    https: bool = True,
) -> list[str]:
    return [
        f.check
        for f in judge_posture(
            facts,
            stage=stage,
            mode=mode,
            retention_days=days,
            allow_compliance_outside_prod=allow,
            kms_key_id=kms,
            https_applies=https,
        )
        if not f.ok
    ]


def test_a_provisioned_bucket_passes(settings: Settings) -> None:
    facts = bucket_facts(s3_client(settings), settings.anchor_bucket)
    # Provisioned through a plain-http endpoint: no HTTPS-only deny (it would lock the server's clients out).
    assert facts == GOOD._replace(default_days=1, policy_https_only=False)
    findings = {f.check: f for f in judge_configured(facts, settings)}
    assert [c for c, f in findings.items() if not f.ok] == []
    assert not findings["https_only"].applicable and "plain http" in findings["https_only"].detail
    assert "SSE-S3 in dev" in findings["encryption"].detail


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"versioning": "Suspended"}, ["versioning"]),
        ({"lock_enabled": False, "default_mode": None}, ["object_lock", "lock_mode"]),
        ({"default_days": 30}, ["retention"]),
        ({"public_access_blocked": False}, ["public_access_block"]),
        ({"encryption": None}, ["encryption"]),
        ({"policy_denies_deletes": False}, ["bucket_policy"]),
        ({"policy_https_only": False}, ["https_only"]),
        ({"policy_denies_management": ("s3:PutBucketObjectLockConfiguration",)}, ["bucket_management"]),
        ({"transitions": (("anchors/", 90),)}, ["lifecycle"]),
        ({"transitions": (("anchors/", 180), ("proofs/", 90))}, ["lifecycle"]),
    ],
)
def test_each_weakness_fails_its_check(change: dict, expected: list[str]) -> None:
    assert failing(GOOD._replace(**change)) == expected


def test_governance_fails_in_prod_and_compliance_needs_the_override_outside_prod() -> None:
    assert failing(KMS, stage="prod", mode="COMPLIANCE", kms=KEY_ARN) == ["lock_mode"]
    compliance = KMS._replace(default_mode="COMPLIANCE")
    assert failing(compliance, stage="prod", mode="COMPLIANCE", kms=KEY_ARN) == []
    assert failing(compliance, stage="staging", kms=KEY_ARN) == ["lock_mode"]
    assert failing(compliance, stage="staging", allow=True, kms=KEY_ARN) == []


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
    assert "N/A  https_only" in bad.stdout and "OK   lifecycle" in bad.stdout


def test_https_only_is_judged_outside_a_plain_http_endpoint_only() -> None:
    plain = GOOD._replace(policy_https_only=False)
    assert failing(plain) == ["https_only"]  # AWS itself or an https endpoint
    assert failing(plain, https=False) == []  # the local S3 server: not applicable
    assert (https_only_applies(None), https_only_applies("https://s3.example.com")) == (True, True)
    assert https_only_applies("http://127.0.0.1:9000") is False


def test_the_policy_for_aws_denies_plain_http_and_never_the_bucket_management() -> None:
    for https_only in (True, False):
        policy = anchor_bucket_policy("acme-anchors", https_only=https_only)
        json.loads(json.dumps(policy))
        denied = {a for s in policy["Statement"] for a in _actions(s)}
        assert {"s3:DeleteObjectVersion", "s3:DeleteObject", "s3:BypassGovernanceRetention"} <= denied
        assert "s3:DeleteBucket" in denied
        assert not denied & {"s3:PutBucketObjectLockConfiguration", "s3:DeleteBucketPolicy", "s3:PutBucketPolicy"}
    [tls] = [s for s in anchor_bucket_policy("acme-anchors", https_only=True)["Statement"] if s.get("Condition")]
    assert tls == {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::acme-anchors", "arn:aws:s3:::acme-anchors/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    assert not any(s.get("Condition") for s in anchor_bucket_policy("acme-anchors", https_only=False)["Statement"])


def test_sse_kms_with_a_bucket_key_wherever_a_key_is_configured_and_sse_s3_in_dev_only() -> None:
    assert failing(KMS, kms=KEY_ARN) == []
    assert failing(KMS, kms="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0") == []  # the id names the ARN's key
    assert failing(KMS._replace(bucket_key=False), kms=KEY_ARN) == ["encryption"]
    assert failing(KMS, kms="another-key") == ["encryption"]
    assert failing(GOOD, kms=KEY_ARN) == ["encryption"]  # SSE-S3 where a key is configured
    assert failing(GOOD, stage="staging") == ["encryption"]  # SSE-S3 outside dev
    assert failing(GOOD) == []


def test_provisioning_an_existing_bucket_lifts_the_old_management_deny(settings: Settings) -> None:
    s3 = s3_client(settings)
    old = {  # the policy buckets were provisioned with before: it denied the deployers' own management
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:DeleteBucket", "s3:DeleteBucketPolicy", "s3:PutBucketObjectLockConfiguration"],
                "Resource": f"arn:aws:s3:::{settings.anchor_bucket}",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=settings.anchor_bucket, Policy=json.dumps(old))
    s3.delete_bucket_lifecycle(Bucket=settings.anchor_bucket)
    facts = bucket_facts(s3, settings.anchor_bucket)
    assert facts.policy_denies_management == ("s3:DeleteBucketPolicy", "s3:PutBucketObjectLockConfiguration")
    assert {f.check for f in judge_configured(facts, settings) if not f.ok} == {
        "bucket_management",
        "bucket_policy",
        "lifecycle",
    }
    kms = "arn:aws:kms:us-east-1:123456789012:key/anchor-test"
    created = provision_anchor_bucket(s3, settings.anchor_bucket, mode="GOVERNANCE", retention_days=1, kms_key_id=kms)
    assert created is False
    facts = bucket_facts(s3, settings.anchor_bucket)
    assert (facts.encryption, facts.kms_key_id, facts.bucket_key) == ("aws:kms", kms, True)
    assert facts.default_mode == "GOVERNANCE" and facts.policy_denies_management == ()
    with_key = Settings(**{**settings.__dict__, "anchor_kms_key_id": kms})
    assert [f.check for f in judge_configured(facts, with_key) if not f.ok] == []


def _actions(statement: dict) -> set[str]:
    return {statement["Action"]} if isinstance(statement["Action"], str) else set(statement["Action"])


def test_cli_prints_the_anchor_writer_template(settings: Settings, env_for) -> None:
    done = run_cli(["bucket", "policy", "--role", "anchor-writer"], env_for(settings))
    assert done.returncode == 0, done.stderr
    policy = json.loads(done.stdout)
    b = settings.anchor_bucket
    prefixes = [f"arn:aws:s3:::{b}/anchors/*", f"arn:aws:s3:::{b}/proofs/*", f"arn:aws:s3:::{b}/keys/*"]
    assert [(s["Effect"], _actions(s), s["Resource"]) for s in policy["Statement"]] == [
        ("Allow", {"s3:PutObject", "s3:PutObjectRetention", "s3:GetObject"}, prefixes),
        ("Allow", {"s3:ListBucket"}, f"arn:aws:s3:::{b}"),
        (
            "Deny",
            {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutObjectLegalHold"},
            f"arn:aws:s3:::{b}/*",
        ),
    ]
    assert policy["Statement"][1]["Condition"] == {"StringLike": {"s3:prefix": ["anchors/*", "proofs/*", "keys/*"]}}


def test_cli_prints_the_read_only_watchdog_template(settings: Settings, env_for) -> None:
    done = run_cli(["bucket", "policy", "--role", "watchdog"], env_for(settings))
    assert done.returncode == 0, done.stderr
    policy = json.loads(done.stdout)
    b = settings.anchor_bucket
    assert [(s["Effect"], _actions(s), s["Resource"]) for s in policy["Statement"]] == [
        ("Allow", {"s3:GetObject", "s3:GetObjectRetention"}, f"arn:aws:s3:::{b}/*"),
        (
            "Allow",
            {
                "s3:ListBucketVersions",
                "s3:GetBucketVersioning",
                "s3:GetBucketObjectLockConfiguration",
                "s3:GetBucketPublicAccessBlock",
                "s3:GetEncryptionConfiguration",
                "s3:GetBucketPolicy",
                "s3:GetLifecycleConfiguration",
            },
            f"arn:aws:s3:::{b}",
        ),
    ]
    assert not any(a.startswith(("s3:Put", "s3:Delete")) for s in policy["Statement"] for a in _actions(s))
    refused = run_cli(["bucket", "policy", "--role", "admin"], env_for(settings))
    assert refused.returncode == 2 and "invalid choice" in refused.stderr


def test_templates_grant_the_kms_key_when_one_is_configured() -> None:
    key = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    writer = iam_policy_template("anchor-writer", "acme-anchors", key)["Statement"][-1]
    assert writer == {
        "Sid": "UseAnchorKey",
        "Effect": "Allow",
        "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
        "Resource": f"arn:aws:kms:*:*:key/{key}",
    }
    watchdog = iam_policy_template("watchdog", "acme-anchors", KEY_ARN)["Statement"][-1]
    assert (watchdog["Action"], watchdog["Resource"]) == (["kms:Decrypt"], KEY_ARN)
