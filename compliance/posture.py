"""The anchor bucket's storage posture, judged against the configuration (pure: the caller reads the bucket).

>>> facts = BucketFacts(versioning="Enabled", lock_enabled=True, default_mode="GOVERNANCE", default_days=365,
...     public_access_blocked=True, encryption="AES256", policy_denies_deletes=True,
...     transitions=(("anchors/", 90), ("proofs/", 90)))
>>> findings = judge_posture(facts, stage="dev", mode="GOVERNANCE", retention_days=365,
...     allow_compliance_outside_prod=False, https_applies=False)
>>> [(f.check, f.ok) for f in findings if not f.applicable]
[('https_only', True)]
>>> all(f.ok for f in findings)
True
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from compliance.bucket import GLACIER_IR_DAYS, LIFECYCLE_PREFIXES, https_only_applies

if TYPE_CHECKING:
    from compliance.settings import Settings

# S3 keeps a retain-until date to the second or millisecond, the ledger records microseconds.
RETAIN_UNTIL_SLACK = timedelta(seconds=1)

__all__ = [
    "MANAGEMENT_ACTIONS",
    "BucketFacts",
    "Finding",
    "StoredObject",
    "judge_anchor_object",
    "judge_configured",
    "judge_posture",
]

# Bucket management the deployers must keep: a policy denying these to everyone makes the policy itself, or
# the GOVERNANCE -> COMPLIANCE move of the Object Lock default, impossible to change.
MANAGEMENT_ACTIONS = ("s3:PutBucketObjectLockConfiguration", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy")


class BucketFacts(NamedTuple):
    versioning: str | None  # "Enabled", "Suspended" or None
    lock_enabled: bool
    default_mode: str | None
    default_days: int | None  # default retention in days (years converted)
    public_access_blocked: bool
    encryption: str | None  # "aws:kms", "AES256" or None
    policy_denies_deletes: bool
    policy_https_only: bool = False  # a Deny of every request without aws:SecureTransport
    policy_denies_management: tuple[str, ...] = ()  # MANAGEMENT_ACTIONS the policy denies to everyone
    kms_key_id: str | None = None
    bucket_key: bool = False
    transitions: tuple[tuple[str, int], ...] = ()  # (prefix, days) of each enabled move to GLACIER_IR


class Finding(NamedTuple):
    check: str
    ok: bool
    detail: str
    applicable: bool = True  # False: the check cannot apply here (``detail`` says why); ``ok`` is then True


def judge_configured(facts: BucketFacts, settings: Settings) -> list[Finding]:
    """:func:`judge_posture` against ``settings`` (what `bucket check` and the watchdog judge by)."""
    return judge_posture(
        facts,
        stage=settings.stage,
        mode=settings.lock_mode,
        retention_days=settings.retention_days,
        allow_compliance_outside_prod=settings.allow_compliance_mode_outside_prod,
        kms_key_id=settings.anchor_kms_key_id,
        https_applies=https_only_applies(settings.s3_endpoint_url),
    )


def judge_posture(
    facts: BucketFacts,
    *,
    stage: str,
    mode: str,
    retention_days: int,
    allow_compliance_outside_prod: bool,
    kms_key_id: str | None = None,
    https_applies: bool = True,
) -> list[Finding]:
    """One finding per check; any ``ok=False`` means the bucket is weaker than configured."""
    out = [
        Finding("versioning", facts.versioning == "Enabled", f"versioning is {facts.versioning or 'off'}"),
        Finding("object_lock", facts.lock_enabled, "Object Lock is " + ("enabled" if facts.lock_enabled else "off")),
    ]
    if facts.default_mode is None:
        out.append(Finding("lock_mode", False, "no default retention rule"))
    elif stage == "prod" and facts.default_mode != "COMPLIANCE":
        out.append(Finding("lock_mode", False, f"{facts.default_mode} in prod: it can be bypassed; use COMPLIANCE"))
    elif stage != "prod" and facts.default_mode == "COMPLIANCE" and not allow_compliance_outside_prod:
        out.append(
            Finding(
                "lock_mode", False, "COMPLIANCE outside prod without COMPLIANCE_ALLOW_COMPLIANCE_MODE_OUTSIDE_PROD=1"
            )
        )
    elif mode == "COMPLIANCE" and facts.default_mode != "COMPLIANCE":
        out.append(Finding("lock_mode", False, f"default mode {facts.default_mode}, configured COMPLIANCE"))
    else:
        out.append(Finding("lock_mode", True, f"default mode {facts.default_mode}"))
    days = facts.default_days or 0
    out.append(
        Finding("retention", days >= retention_days, f"default retention {days} days (configured {retention_days})")
    )
    out.append(
        Finding(
            "public_access_block",
            facts.public_access_blocked,
            "public access " + ("blocked" if facts.public_access_blocked else "NOT blocked"),
        )
    )
    out.append(_encryption(facts, stage, kms_key_id))
    out.append(
        Finding(
            "bucket_policy",
            facts.policy_denies_deletes,
            "policy denies deletes" if facts.policy_denies_deletes else "no policy denying deletes",
        )
    )
    if not https_applies:
        out.append(
            Finding(
                "https_only",
                True,
                "not applicable: the endpoint is plain http, where a deny of requests without TLS would refuse "
                "every request; provisioned on AWS and https endpoints",
                applicable=False,
            )
        )
    else:
        out.append(
            Finding(
                "https_only",
                facts.policy_https_only,
                "policy denies requests without TLS"
                if facts.policy_https_only
                else "no policy statement denying requests without TLS (aws:SecureTransport false)",
            )
        )
    denied = facts.policy_denies_management
    out.append(
        Finding(
            "bucket_management",
            not denied,
            f"policy denies {', '.join(denied)} to everyone: the deployers cannot manage the bucket"
            if denied
            else "policy leaves the bucket's management to IAM",
        )
    )
    moved = dict(facts.transitions)
    missing = [p for p in LIFECYCLE_PREFIXES if p not in moved or moved[p] > GLACIER_IR_DAYS]
    out.append(
        Finding(
            "lifecycle",
            not missing,
            f"no move to GLACIER_IR within {GLACIER_IR_DAYS} days for {', '.join(missing)}"
            if missing
            else ", ".join(f"{p} to GLACIER_IR after {moved[p]} days" for p in LIFECYCLE_PREFIXES),
        )
    )
    return out


def _same_key(configured: str, found: str | None) -> bool:
    """A key id and its ARN name the same key (``arn:aws:kms:REGION:ACCOUNT:key/ID``)."""
    if not found:
        return False
    return found == configured or found.endswith(f"/{configured}") or configured.endswith(f"/{found}")


def _encryption(facts: BucketFacts, stage: str, kms_key_id: str | None) -> Finding:
    if kms_key_id:
        if facts.encryption != "aws:kms" or not _same_key(kms_key_id, facts.kms_key_id):
            found = " ".join(filter(None, (facts.encryption or "none", facts.kms_key_id)))
            return Finding("encryption", False, f"default encryption {found}, configured SSE-KMS with {kms_key_id}")
        if not facts.bucket_key:
            return Finding("encryption", False, f"SSE-KMS with {facts.kms_key_id} but no bucket key")
        return Finding("encryption", True, f"SSE-KMS with {facts.kms_key_id} and a bucket key")
    if stage != "dev":
        return Finding("encryption", False, f"no COMPLIANCE_ANCHOR_KMS_KEY_ID: {stage} requires SSE-KMS")
    if facts.encryption is None:
        return Finding("encryption", False, "default encryption none")
    return Finding(
        "encryption", True, f"default encryption {facts.encryption} (SSE-S3 in dev: no COMPLIANCE_ANCHOR_KMS_KEY_ID)"
    )


class StoredObject(NamedTuple):
    """What a HEAD and a version listing of one anchor object show (``versions`` 0: the object is gone)."""

    key: str
    versions: int
    mode: str | None
    retain_until: datetime | None


def judge_anchor_object(obj: StoredObject, *, mode: str, retain_until: datetime) -> Finding:
    """An anchor object against what the ledger recorded when it wrote it: present, one version, and locked in
    the recorded mode until at least the recorded date."""
    if obj.versions == 0:
        return Finding(obj.key, False, "missing from the bucket")
    if obj.versions > 1:
        return Finding(obj.key, False, f"{obj.versions} versions; an anchor is written once")
    if obj.mode != mode:
        return Finding(obj.key, False, f"lock mode {obj.mode or 'none'}, recorded {mode}")
    if obj.retain_until is None or obj.retain_until < retain_until - RETAIN_UNTIL_SLACK:
        shown = obj.retain_until.isoformat() if obj.retain_until else "none"
        return Finding(obj.key, False, f"retained until {shown}, recorded {retain_until.isoformat()}")
    return Finding(obj.key, True, "present, one version, locked as recorded")
