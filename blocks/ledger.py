"""Prefect Block types: the ledger's settings as self-explaining forms in the Prefect UI, and the deployments'
source of truth for them.

`compliance dev up` and `make run` register these types and save one document of each
(`compliance-database`, `compliance-anchor-store`, `compliance-settings`). Every flow run starts by reading
them (:func:`env_from_blocks`, through ``tasks.config.load_settings``), so a value edited in the UI or through
the API is what the next run uses; an environment variable of the same setting overrides the block (a
worker can pin a value). The AWS credentials are a prefect-aws ``AwsCredentials`` block named in the anchor
store's ``credentials_block`` when it holds keys, else boto3's default chain. `compliance roles rotate`
writes the new role URLs into ``compliance-database``, which the next connection reads.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

__all__ = [
    "BLOCK_NAMES",
    "AnchorStoreBlock",
    "DatabaseBlock",
    "LedgerSettingsBlock",
    "env_from_blocks",
    "register_and_fill",
    "save_role_urls",
]

BLOCK_NAMES = ("compliance-database", "compliance-anchor-store", "compliance-settings")


class DatabaseBlock(Block):
    """Where the ledger's PostgreSQL lives, one connection URL per least-privilege role."""

    _block_type_name = "Compliance Database"
    _description = "PostgreSQL connection URLs of the compliance ledger, one per role."

    owner_url: SecretStr = Field(
        description="URL of the schema owner: migrations, drift checks. postgresql://user:password@host:port/db"
    )
    writer_url: SecretStr | None = Field(
        default=None,
        description="compliance_writer: may only add to the outbox "
        "(emitting applications). Empty: the owner URL with SET ROLE.",
    )
    drainer_url: SecretStr | None = Field(
        default=None,
        description="compliance_drainer: chains outbox rows (drain-outbox). Empty: the owner URL with SET ROLE.",
    )
    reader_url: SecretStr | None = Field(
        default=None,
        description="compliance_reader: read only (verify; audit paths in events-query). Empty: the owner URL "
        "with SET ROLE.",
    )
    anchorer_url: SecretStr | None = Field(
        default=None, description="compliance_anchorer: records anchors (anchor). Empty: the owner URL with SET ROLE."
    )
    exporter_url: SecretStr | None = Field(
        default=None, description="compliance_exporter: runs export jobs (export-runner). Empty: owner + SET ROLE."
    )
    watchdog_url: SecretStr | None = Field(
        default=None, description="compliance_watchdog: reads figures (watchdog). Empty: the owner URL with SET ROLE."
    )
    operator_url: SecretStr | None = Field(
        default=None,
        description="compliance_operator: checks operators' one-time codes (events-query, export-runner). "
        "Empty: the owner URL with SET ROLE.",
    )


class AnchorStoreBlock(Block):
    """The write-once bucket the anchors go to, and the bucket exports go to."""

    _block_type_name = "Compliance Anchor Store"
    _description = "S3 Object Lock bucket for signed anchors (and the export bucket)."

    anchor_bucket: str = Field(description="Bucket with Object Lock enabled at creation (versioning on).")
    export_bucket: str = Field(description="Versioned bucket for export files; objects expire by lifecycle.")
    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint; empty for AWS S3 (MinIO or the local moto server otherwise)."
    )
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = Field(
        default="GOVERNANCE",
        description="COMPLIANCE is required in prod and irreversible: not even the root "
        "account can shorten it. GOVERNANCE is refused in prod.",
    )
    retention_days: int = Field(default=365, ge=1, description="Object Lock retention of every anchor object.")
    kms_key_id: str | None = Field(
        default=None,
        description="KMS key (id or ARN) for the anchor bucket's SSE-KMS; required in staging and prod, empty in "
        "dev (SSE-S3).",
    )
    credentials_block: str | None = Field(
        default=None, description="Name of a prefect-aws AwsCredentials block; empty for the ambient credentials."
    )


class LedgerSettingsBlock(Block):
    """Who may do what, and when to alert."""

    _block_type_name = "Compliance Ledger Settings"
    _description = "Stage, caps and alert thresholds of the compliance ledger (operators are enrolled in the database)."

    stage: Literal["dev", "staging", "prod"] = Field(
        default="dev", description="Deployment stage; decides which Object Lock mode is allowed."
    )
    drain_batch_size: int = Field(default=50_000, ge=1, description="Outbox rows chained per transaction.")
    outbox_retention_seconds: int = Field(
        default=600, ge=0, description="How long a drained outbox row is kept before the drain flow purges it."
    )
    drain_workers: int = Field(
        default=2, ge=1, le=64, description="Connections one drain run uses at once, each on its own tenants' shards."
    )
    export_rate_limit_per_hour: int = Field(
        default=10,
        description="Export requests per operator per rolling hour (10 an hour; shown for reference, not configurable).",
    )
    anchor_lag_alert_seconds: int = Field(default=1800, description="Alert when the oldest unanchored event is older.")
    outbox_depth_alert: int = Field(default=10_000, description="Alert when more events wait in the outbox.")
    outbox_age_alert_seconds: int = Field(default=300, description="Alert when an event waits longer in the outbox.")
    queued_export_alert_seconds: int = Field(
        default=900, description="Alert when an export job has waited queued longer (no runner picked it up)."
    )


def register_and_fill(env: dict[str, str]) -> list[str]:
    """Register the block types and save one document of each from ``env`` (the dev stack's settings)."""
    saved = []
    for block_type in (DatabaseBlock, AnchorStoreBlock, LedgerSettingsBlock):
        block_type.register_type_and_schema(_sync=True)  # type: ignore[call-arg]
    DatabaseBlock(owner_url=SecretStr(env["COMPLIANCE_DATABASE_URL"])).save(
        "compliance-database", overwrite=True, _sync=True
    )  # type: ignore[call-arg]
    saved.append("compliance-database")
    AnchorStoreBlock(
        anchor_bucket=env["COMPLIANCE_ANCHOR_BUCKET"],
        export_bucket=env["COMPLIANCE_EXPORT_BUCKET"],
        endpoint_url=env.get("COMPLIANCE_S3_ENDPOINT_URL"),
        object_lock_mode="COMPLIANCE" if env.get("COMPLIANCE_STAGE") == "prod" else "GOVERNANCE",
        retention_days=int(env.get("COMPLIANCE_RETENTION_DAYS", "365")),
    ).save("compliance-anchor-store", overwrite=True, _sync=True)  # type: ignore[call-arg]
    saved.append("compliance-anchor-store")
    LedgerSettingsBlock(
        stage=env.get("COMPLIANCE_STAGE", "dev"),  # type: ignore[arg-type]
    ).save("compliance-settings", overwrite=True, _sync=True)  # type: ignore[call-arg]
    saved.append("compliance-settings")
    return saved


# Each block field and the environment variable of the same setting (compliance.settings reads these).
_DATABASE_FIELDS = {
    "owner_url": "COMPLIANCE_DATABASE_URL",
    **{
        f"{role}_url": f"COMPLIANCE_{role.upper()}_DATABASE_URL"
        for role in ("writer", "drainer", "reader", "anchorer", "exporter", "watchdog", "operator")
    },
}
_ANCHOR_STORE_FIELDS = {
    "anchor_bucket": "COMPLIANCE_ANCHOR_BUCKET",
    "export_bucket": "COMPLIANCE_EXPORT_BUCKET",
    "endpoint_url": "COMPLIANCE_S3_ENDPOINT_URL",
    "object_lock_mode": "COMPLIANCE_OBJECT_LOCK_MODE",
    "retention_days": "COMPLIANCE_RETENTION_DAYS",
    "kms_key_id": "COMPLIANCE_ANCHOR_KMS_KEY_ID",
    "credentials_block": "COMPLIANCE_AWS_CREDENTIALS_BLOCK",
}
_SETTINGS_FIELDS = {
    "stage": "COMPLIANCE_STAGE",
    "drain_batch_size": "COMPLIANCE_DRAIN_BATCH_SIZE",
    "drain_workers": "COMPLIANCE_DRAIN_WORKERS",
    "outbox_retention_seconds": "COMPLIANCE_OUTBOX_RETENTION_SECONDS",
    "anchor_lag_alert_seconds": "COMPLIANCE_THRESHOLD_ANCHOR_LAG_SECONDS",
    "outbox_depth_alert": "COMPLIANCE_THRESHOLD_OUTBOX_DEPTH",
    "outbox_age_alert_seconds": "COMPLIANCE_THRESHOLD_OUTBOX_OLDEST_AGE_SECONDS",
    "queued_export_alert_seconds": "COMPLIANCE_THRESHOLD_QUEUED_EXPORTS_OLDEST_AGE_SECONDS",
}
FIELD_VARIABLES: dict[str, dict[str, str]] = {
    "compliance-database": _DATABASE_FIELDS,
    "compliance-anchor-store": _ANCHOR_STORE_FIELDS,
    "compliance-settings": _SETTINGS_FIELDS,
}
_TYPES: dict[str, type[Block]] = {
    "compliance-database": DatabaseBlock,
    "compliance-anchor-store": AnchorStoreBlock,
    "compliance-settings": LedgerSettingsBlock,
}


def env_from_blocks() -> dict[str, str]:
    """The settings the saved blocks hold, as environment variables (a block not saved adds nothing).
    Reads the Prefect API; the caller lays the process environment over the result."""
    env: dict[str, str] = {}
    for name, fields in FIELD_VARIABLES.items():
        try:
            block: Any = _TYPES[name].load(name, _sync=True)  # type: ignore[call-arg]
        except ValueError:  # not saved on this Prefect server
            continue
        for attr, variable in fields.items():
            value = getattr(block, attr)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is not None and value != "":
                env[variable] = str(value)
    return env


def save_role_urls(owner_url: str, urls: dict[str, str]) -> str:
    """Write role URLs (by role, e.g. ``compliance_drainer``) into the ``compliance-database`` block (created
    with ``owner_url`` if it is not saved yet), keeping its other fields; returns the block's name. Connections
    opened afterwards log in with them."""
    name = "compliance-database"
    try:
        block: Any = DatabaseBlock.load(name, _sync=True)  # type: ignore[call-arg]
    except ValueError:
        block = DatabaseBlock(owner_url=SecretStr(owner_url))
    for role, url in urls.items():
        setattr(block, f"{role.removeprefix('compliance_')}_url", SecretStr(url))
    block.save(name, overwrite=True, _sync=True)
    return name
