"""Configuration from the environment (SPEC §6), each setting with an embedded default.

    >>> s = Settings.from_env({"COMPLIANCE_STAGE": "dev"})
    >>> s.stage, s.anchor_bucket, s.lock_mode
    ('dev', 'compliance-anchors', 'GOVERNANCE')

Unset ``database_url`` / ``s3_endpoint_url`` mean "use the local stack"; the
command line starts it when they are unset. :meth:`Settings.check` refuses
Object Lock modes the stage does not allow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["STAGES", "Settings", "SettingsError"]

STAGES = ("dev", "staging", "prod")
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
SHARD_COUNT = 64  # the outbox's shards (hashtext(tenant_id) & 63): the unit drainers share work by


class SettingsError(ValueError):
    """A setting is missing or not allowed; the message names the variable and what to change."""


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
    drain_batch_size: int = 50_000
    drain_workers: int = 2
    outbox_retention_seconds: int = 600
    role_urls: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        stage = env.get("COMPLIANCE_STAGE", "dev") or "dev"
        default_mode = "COMPLIANCE" if stage == "prod" else "GOVERNANCE"
        role_urls = {
            role: env[var]
            for role, var in (
                ("compliance_writer", "COMPLIANCE_WRITER_DATABASE_URL"),
                ("compliance_drainer", "COMPLIANCE_DRAINER_DATABASE_URL"),
                ("compliance_reader", "COMPLIANCE_READER_DATABASE_URL"),
                ("compliance_anchorer", "COMPLIANCE_ANCHORER_DATABASE_URL"),
                ("compliance_exporter", "COMPLIANCE_EXPORTER_DATABASE_URL"),
                ("compliance_watchdog", "COMPLIANCE_WATCHDOG_DATABASE_URL"),
                ("compliance_operator", "COMPLIANCE_OPERATOR_DATABASE_URL"),
            )
            if env.get(var)
        }
        settings = cls(
            database_url=env.get("COMPLIANCE_DATABASE_URL") or None,
            s3_endpoint_url=env.get("COMPLIANCE_S3_ENDPOINT_URL") or None,
            anchor_bucket=env.get("COMPLIANCE_ANCHOR_BUCKET") or "compliance-anchors",
            export_bucket=env.get("COMPLIANCE_EXPORT_BUCKET") or "compliance-exports",
            stage=stage,
            allow_compliance_mode_outside_prod=env.get("COMPLIANCE_ALLOW_COMPLIANCE_MODE_OUTSIDE_PROD") == "1",
            lock_mode=(env.get("COMPLIANCE_OBJECT_LOCK_MODE") or default_mode).upper(),
            retention_days=_int(env, "COMPLIANCE_RETENTION_DAYS", 365),
            drain_batch_size=_int(env, "COMPLIANCE_DRAIN_BATCH_SIZE", 50_000),
            drain_workers=_int(env, "COMPLIANCE_DRAIN_WORKERS", 2),
            outbox_retention_seconds=_int(env, "COMPLIANCE_OUTBOX_RETENTION_SECONDS", 600),
            role_urls=role_urls,
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
        if self.drain_batch_size < 1:
            raise SettingsError("COMPLIANCE_DRAIN_BATCH_SIZE must be at least 1")
        if self.outbox_retention_seconds < 0:
            raise SettingsError("COMPLIANCE_OUTBOX_RETENTION_SECONDS must be 0 (purge at once) or more")
        if not 1 <= self.drain_workers <= SHARD_COUNT:
            raise SettingsError(f"COMPLIANCE_DRAIN_WORKERS must be between 1 and {SHARD_COUNT}")
