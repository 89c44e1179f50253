"""Configuration from the environment (docs/operator-runbook.md, Configuration), each setting with an embedded default.

    >>> s = Settings.from_env({"COMPLIANCE_STAGE": "dev"})
    >>> s.stage, s.anchor_bucket, s.lock_mode
    ('dev', 'compliance-anchors', 'GOVERNANCE')

In ``dev``, unset ``database_url`` / ``s3_endpoint_url`` mean "use the local
stack"; the command line starts it when they are unset. In ``staging`` and
``prod`` nothing local is ever started and nothing silently defaults: the
bucket names and the anchor bucket's KMS key must be set (refused here, by
name; dev without a key uses SSE-S3), and a command refuses a
missing database URL or Prefect API before it starts (``cli.main``); an unset
S3 endpoint there means AWS itself, with boto3's default credential chain.

An unset ``COMPLIANCE_STAGE`` is ``dev`` only while nothing in the
environment points off this machine (:func:`stage_from_env`): a process that
holds a remote database URL, a role's URL or AWS credentials and no stage is
refused rather than guessed at, because guessing ``dev`` there would start a
throwaway local S3 server and anchor into it while recording the anchors in a
real database. :meth:`Settings.check` refuses Object Lock modes the stage does
not allow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from compliance.watchdog import thresholds_with

__all__ = [
    "STAGES",
    "RetentionLowered",
    "Settings",
    "SettingsError",
    "production_hints",
    "retention_lowering",
    "stage_from_env",
    "threshold_variable",
]

STAGES = ("dev", "staging", "prod")
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
SHARD_COUNT = 64  # the outbox's shards (hashtext(tenant_id) & 63): the unit drainers share work by


class SettingsError(ValueError):
    """A setting is missing or not allowed; the message names the variable and what to change."""


class RetentionLowered(SettingsError):
    """COMPLIANCE_RETENTION_DAYS is below the retention the last anchor was written with, in prod."""


ROLE_URL_VARIABLES = (
    ("compliance_writer", "COMPLIANCE_WRITER_DATABASE_URL"),
    ("compliance_drainer", "COMPLIANCE_DRAINER_DATABASE_URL"),
    ("compliance_reader", "COMPLIANCE_READER_DATABASE_URL"),
    ("compliance_anchorer", "COMPLIANCE_ANCHORER_DATABASE_URL"),
    ("compliance_exporter", "COMPLIANCE_EXPORTER_DATABASE_URL"),
    ("compliance_watchdog", "COMPLIANCE_WATCHDOG_DATABASE_URL"),
    ("compliance_operator", "COMPLIANCE_OPERATOR_DATABASE_URL"),
)
# Variables through which boto3's default chain finds real AWS credentials (keys, a profile, web identity,
# a container's credentials endpoint); the instance role needs none and is probed only where S3 is used.
AWS_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _off_machine(url: str) -> bool:
    """True when ``url`` names a host other than this machine (a conninfo string or socket path is local)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return True
    return host is not None and host != "" and host not in _LOOPBACK and not host.startswith("/")


def production_hints(env: Mapping[str, str]) -> list[str]:
    """The variables in ``env`` that point off this machine: a remote database (the owner's or a role's), S3
    endpoint or Prefect API, or AWS credentials."""
    urls = ["COMPLIANCE_DATABASE_URL", "COMPLIANCE_S3_ENDPOINT_URL", "PREFECT_API_URL"]
    urls += [var for _, var in ROLE_URL_VARIABLES]
    hints = [var for var in urls if env.get(var) and _off_machine(env[var])]
    hints += [var for var in AWS_CREDENTIAL_VARIABLES if env.get(var)]
    return hints


def stage_from_env(env: Mapping[str, str]) -> str:
    """``COMPLIANCE_STAGE``; unset, ``dev`` when nothing points off this machine, else refused by name."""
    stage = env.get("COMPLIANCE_STAGE", "")
    if stage:
        return stage
    hints = production_hints(env)
    if hints:
        raise SettingsError(
            f"COMPLIANCE_STAGE is not set, but {', '.join(hints)} point(s) off this machine: set "
            "COMPLIANCE_STAGE=staging or prod for a deployment (nothing local is started, every setting must be "
            "given), or COMPLIANCE_STAGE=dev to use them with the local defaults on purpose"
        )
    return "dev"


def _required(env: Mapping[str, str], name: str, stage: str, what: str) -> str:
    value = env.get(name, "")
    if not value:
        raise SettingsError(f"{name} is not set: in {stage} nothing has a default; set it to {what}")
    return value


def threshold_variable(figure: str) -> str:
    """The variable overriding a watchdog figure's alert threshold, e.g. COMPLIANCE_THRESHOLD_OUTBOX_DEPTH."""
    return f"COMPLIANCE_THRESHOLD_{figure.upper()}"


def _thresholds(env: Mapping[str, str]) -> dict[str, float]:
    out = {}
    for name, raw in env.items():
        if name.startswith("COMPLIANCE_THRESHOLD_") and raw != "":
            try:
                out[name.removeprefix("COMPLIANCE_THRESHOLD_").lower()] = float(raw)
            except ValueError:
                raise SettingsError(f"{name}={raw!r} is not a number") from None
    return out


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    s3_endpoint_url: str | None = None
    anchor_bucket: str = "compliance-anchors"
    export_bucket: str = "compliance-exports"
    stage: str = "dev"
    allow_compliance_mode_outside_prod: bool = False
    lock_mode: str = "GOVERNANCE"
    retention_days: int = 365
    allow_lowered_retention: bool = False
    anchor_kms_key_id: str | None = None
    drain_batch_size: int = 50_000
    drain_workers: int = 2
    outbox_retention_seconds: int = 600
    role_urls: Mapping[str, str] = field(default_factory=dict)
    # Watchdog thresholds that differ from compliance.watchdog.THRESHOLDS, by figure (COMPLIANCE_THRESHOLD_*).
    alert_thresholds: Mapping[str, float] = field(default_factory=dict)
    # A prefect-aws AwsCredentials block for S3; None: boto3's default chain.
    aws_credentials_block: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        stage = stage_from_env(env)
        default_mode = "COMPLIANCE" if stage == "prod" else "GOVERNANCE"
        role_urls = {role: env[var] for role, var in ROLE_URL_VARIABLES if env.get(var)}
        if stage == "dev":
            anchor_bucket = env.get("COMPLIANCE_ANCHOR_BUCKET") or "compliance-anchors"
            export_bucket = env.get("COMPLIANCE_EXPORT_BUCKET") or "compliance-exports"
            kms_key_id = env.get("COMPLIANCE_ANCHOR_KMS_KEY_ID") or None  # unset: SSE-S3, in dev only
        elif stage in STAGES:
            anchor_bucket = _required(env, "COMPLIANCE_ANCHOR_BUCKET", stage, "the anchor bucket's name")
            export_bucket = _required(env, "COMPLIANCE_EXPORT_BUCKET", stage, "the export bucket's name")
            kms_key_id = _required(
                env, "COMPLIANCE_ANCHOR_KMS_KEY_ID", stage, "the KMS key (id or ARN) encrypting the anchor bucket"
            )
        else:
            anchor_bucket = export_bucket = ""  # check() refuses the stage itself
            kms_key_id = None
        settings = cls(
            database_url=env.get("COMPLIANCE_DATABASE_URL") or None,
            s3_endpoint_url=env.get("COMPLIANCE_S3_ENDPOINT_URL") or None,
            anchor_bucket=anchor_bucket,
            export_bucket=export_bucket,
            stage=stage,
            allow_compliance_mode_outside_prod=env.get("COMPLIANCE_ALLOW_COMPLIANCE_MODE_OUTSIDE_PROD") == "1",
            lock_mode=(env.get("COMPLIANCE_OBJECT_LOCK_MODE") or default_mode).upper(),
            retention_days=_int(env, "COMPLIANCE_RETENTION_DAYS", 365),
            allow_lowered_retention=env.get("COMPLIANCE_ALLOW_LOWERED_RETENTION") == "1",
            anchor_kms_key_id=kms_key_id,
            drain_batch_size=_int(env, "COMPLIANCE_DRAIN_BATCH_SIZE", 50_000),
            drain_workers=_int(env, "COMPLIANCE_DRAIN_WORKERS", 2),
            outbox_retention_seconds=_int(env, "COMPLIANCE_OUTBOX_RETENTION_SECONDS", 600),
            role_urls=role_urls,
            alert_thresholds=_thresholds(env),
            aws_credentials_block=env.get("COMPLIANCE_AWS_CREDENTIALS_BLOCK") or None,
        )
        settings.check()
        return settings

    def check(self) -> None:
        if self.stage not in STAGES:
            raise SettingsError(f"COMPLIANCE_STAGE={self.stage!r}: use one of {', '.join(STAGES)}")
        if self.lock_mode not in LOCK_MODES:
            raise SettingsError(f"COMPLIANCE_OBJECT_LOCK_MODE={self.lock_mode!r}: use GOVERNANCE or COMPLIANCE")
        if self.stage == "prod" and self.lock_mode == "GOVERNANCE":
            raise SettingsError(
                "GOVERNANCE Object Lock is refused in prod (it can be bypassed); set COMPLIANCE_OBJECT_LOCK_MODE=COMPLIANCE"
            )
        if self.stage != "prod" and self.lock_mode == "COMPLIANCE" and not self.allow_compliance_mode_outside_prod:
            raise SettingsError(
                "COMPLIANCE Object Lock outside prod locks test objects for the whole retention; "
                "set COMPLIANCE_ALLOW_COMPLIANCE_MODE_OUTSIDE_PROD=1 if you mean it"
            )
        if self.retention_days < 1:
            raise SettingsError("COMPLIANCE_RETENTION_DAYS must be at least 1")
        try:
            thresholds_with(self.alert_thresholds)
        except ValueError as exc:
            raise SettingsError(f"COMPLIANCE_THRESHOLD_*: {exc}") from None
        if self.drain_batch_size < 1:
            raise SettingsError("COMPLIANCE_DRAIN_BATCH_SIZE must be at least 1")
        if self.outbox_retention_seconds < 0:
            raise SettingsError("COMPLIANCE_OUTBOX_RETENTION_SECONDS must be 0 (purge at once) or more")
        if not 1 <= self.drain_workers <= SHARD_COUNT:
            raise SettingsError(f"COMPLIANCE_DRAIN_WORKERS must be between 1 and {SHARD_COUNT}")


def retention_lowering(settings: Settings, last_days: int | None) -> bool:
    """Whether anchoring with ``settings`` locks for less than the last anchor (``last_days``; None: no anchor
    yet), a lowering the anchor flow records as ``admin.retention_lowered``. In prod it is refused
    (:class:`RetentionLowered`) unless ``allow_lowered_retention``: the trust file auditors hold keeps the
    longer floor, and every anchor locked for less fails their verification and `compliance verify chain`."""
    if last_days is None or settings.retention_days >= last_days:
        return False
    if settings.stage == "prod" and not settings.allow_lowered_retention:
        raise RetentionLowered(
            f"COMPLIANCE_RETENTION_DAYS={settings.retention_days} is below the {last_days} days the last anchor "
            "was locked for: in prod a lowered retention is refused (anchors locked for less fail verification "
            "against the trust floor); restore COMPLIANCE_RETENTION_DAYS, or lower it on purpose with "
            "`compliance anchor --i-understand-retention-is-lowered` (COMPLIANCE_ALLOW_LOWERED_RETENTION=1 for "
            "a deployment), which records an admin.retention_lowered event"
        )
    return True
