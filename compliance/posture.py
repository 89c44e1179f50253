"""The anchor bucket's storage posture, judged against the configuration (pure: the caller reads the bucket).

>>> findings = judge_posture(BucketFacts(versioning="Enabled", lock_enabled=True, default_mode="GOVERNANCE",
...     default_days=365, public_access_blocked=True, encryption="AES256", policy_denies_deletes=True),
...     stage="dev", mode="GOVERNANCE", retention_days=365, allow_compliance_outside_prod=False)
>>> [f.ok for f in findings]
[True, True, True, True, True, True, True]
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

# S3 keeps a retain-until date to the second or millisecond, the ledger records microseconds.
RETAIN_UNTIL_SLACK = timedelta(seconds=1)

__all__ = ["BucketFacts", "Finding", "StoredObject", "judge_anchor_object", "judge_posture"]


class BucketFacts(NamedTuple):
    versioning: str | None  # "Enabled", "Suspended" or None
    lock_enabled: bool
    default_mode: str | None
    default_days: int | None  # default retention in days (years converted)
    public_access_blocked: bool
    encryption: str | None
    policy_denies_deletes: bool


class Finding(NamedTuple):
    check: str
    ok: bool
    detail: str


def judge_posture(
    facts: BucketFacts, *, stage: str, mode: str, retention_days: int, allow_compliance_outside_prod: bool
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
    out.append(Finding("encryption", bool(facts.encryption), f"default encryption {facts.encryption or 'none'}"))
    out.append(
        Finding(
            "bucket_policy",
            facts.policy_denies_deletes,
            "policy denies deletes" if facts.policy_denies_deletes else "no policy denying deletes",
        )
    )
    return out


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
