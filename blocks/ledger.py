"""Prefect Block types: the ledger's settings as self-explaining forms in the Prefect UI.

`compliance dev up` registers these types and saves one document of each
(`compliance-database`, `compliance-anchor-store`, `compliance-settings`;
the signing key lives in the Secret block `compliance-signing-key`). A
deployment can load them with `LedgerSettingsBlock.load(...)` and friends; the
flows themselves read the same values from the environment, which the
worker's environment (or `eval "$(compliance dev up)"`) provides.
"""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

__all__ = ["AnchorStoreBlock", "DatabaseBlock", "LedgerSettingsBlock", "register_and_fill"]


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
        description="Export requests per operator per rolling hour (SPEC: 10; shown for reference, not configurable).",
    )
    anchor_lag_alert_seconds: int = Field(default=1800, description="Alert when the oldest unanchored event is older.")
    outbox_depth_alert: int = Field(default=10_000, description="Alert when more events wait in the outbox.")
    outbox_age_alert_seconds: int = Field(default=300, description="Alert when an event waits longer in the outbox.")


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
