"""Prefect blocks as the deployments' source of truth: a value saved in a block through the Prefect API is
what the next flow run uses, the environment overrides it, role-password rotation writes the URLs the next
connections read, and a prefect-aws AwsCredentials block holding keys is what S3 is called with."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr

from blocks.ledger import BLOCK_NAMES, AnchorStoreBlock, DatabaseBlock, LedgerSettingsBlock
from compliance.settings import Settings, SettingsError
from tasks.config import load_settings, settings_env
from tasks.db import connect
from tasks.outbox import emit_batch
from tasks.storage import s3_client
from tests.conftest import run_cli, sample_event


def _delete_blocks() -> None:
    for block_type, name in zip((DatabaseBlock, AnchorStoreBlock, LedgerSettingsBlock), BLOCK_NAMES, strict=True):
        try:
            block_type.delete(name, _sync=True)  # type: ignore[call-arg]
        except (ValueError, Exception):  # not saved
            pass


@pytest.fixture
def clean_blocks(prefect_harness: None) -> Iterator[None]:
    """The harness's Prefect server is shared by the whole run: no other test may see these blocks."""
    _delete_blocks()
    yield
    _delete_blocks()


@pytest.fixture
def server_blocks(prefect_server: str) -> Iterator[str]:
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        _delete_blocks()
    yield prefect_server
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        _delete_blocks()


def test_a_threshold_saved_in_the_settings_block_decides_the_next_watchdog_verdict(
    settings: Settings, env_for, clean_blocks: None
) -> None:
    from flows.watchdog import watchdog

    env_for(settings)
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(conn, [sample_event(i) for i in range(3)])
    assert watchdog()["states"]["outbox_depth"] == "ok"  # 3 waiting, the default limit is 10,000

    limit = LedgerSettingsBlock(stage="dev", outbox_depth_alert=2)
    limit.save("compliance-settings", overwrite=True, _sync=True)  # type: ignore[call-arg]
    result = watchdog()
    assert result["states"]["outbox_depth"] == "breached"
    assert "compliance.watchdog.outbox_depth.breached" in result["events"]

    block = LedgerSettingsBlock.load("compliance-settings", _sync=True)  # type: ignore[call-arg]
    block.outbox_depth_alert = 5
    block.save("compliance-settings", overwrite=True, _sync=True)  # type: ignore[call-arg]
    assert watchdog()["states"]["outbox_depth"] == "ok"


def test_the_environment_overrides_a_block_and_a_block_fills_what_it_leaves_unset(
    settings: Settings, clean_blocks: None
) -> None:
    AnchorStoreBlock(anchor_bucket="from-the-block", export_bucket="exports-from-the-block", retention_days=30).save(
        "compliance-anchor-store", overwrite=True, _sync=True  # type: ignore[call-arg]
    )
    env = settings_env({"COMPLIANCE_ANCHOR_BUCKET": "from-the-environment"})
    resolved = Settings.from_env(env)
    assert resolved.anchor_bucket == "from-the-environment"  # the worker pinned it
    assert resolved.export_bucket == "exports-from-the-block" and resolved.retention_days == 30


def test_a_misspelt_threshold_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="COMPLIANCE_THRESHOLD_.*'outbox_dept'"):
        Settings.from_env({"COMPLIANCE_THRESHOLD_OUTBOX_DEPT": "5"})
    with pytest.raises(SettingsError, match="COMPLIANCE_THRESHOLD_OUTBOX_DEPTH='many' is not a number"):
        Settings.from_env({"COMPLIANCE_THRESHOLD_OUTBOX_DEPTH": "many"})


def test_roles_rotate_writes_the_block_and_the_next_drain_run_logs_in_with_it(
    settings: Settings, env_for, server_blocks: str
) -> None:
    from flows.drain import drain_outbox

    env = {**env_for(settings), "PREFECT_API_URL": server_blocks}
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(conn, [sample_event(i) for i in range(5)])
    first = run_cli(["roles", "rotate"], env)
    assert first.returncode == 0, first.stderr
    with temporary_settings({PREFECT_API_URL: server_blocks}):
        before = load_settings().role_urls["compliance_drainer"]
        with psycopg.connect(before, autocommit=True) as open_session:
            second = run_cli(["roles", "rotate"], env)
            assert second.returncode == 0, second.stderr
            assert open_session.execute("SELECT session_user::text").fetchone() == ("compliance_drainer",)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(before).close()  # the old password is gone
        after = load_settings()
        assert after.role_urls["compliance_drainer"] != before
        assert drain_outbox(run_seconds=0)["drained"] == 5  # logged in with the URL the block now holds
        with connect(after, "compliance_drainer", autocommit=True) as drainer:
            assert drainer.execute("SELECT session_user::text").fetchone() == ("compliance_drainer",)


def test_an_aws_credentials_block_with_keys_is_what_s3_is_called_with(settings: Settings, clean_blocks: None) -> None:
    from dataclasses import replace

    from prefect_aws import AwsCredentials

    AwsCredentials(aws_access_key_id="AKIAFROMTHEBLOCK0001", aws_secret_access_key=SecretStr("block-secret")).save(
        "ledger-aws", overwrite=True, _sync=True  # type: ignore[call-arg]
    )
    AwsCredentials().save("ledger-aws-empty", overwrite=True, _sync=True)  # type: ignore[call-arg]
    try:
        s3 = s3_client(replace(settings, aws_credentials_block="ledger-aws"))
        assert s3._request_signer._credentials.access_key == "AKIAFROMTHEBLOCK0001"
        assert s3.head_bucket(Bucket=settings.anchor_bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
        ambient = s3_client(replace(settings, aws_credentials_block="ledger-aws-empty"))
        assert ambient._request_signer._credentials.access_key != "AKIAFROMTHEBLOCK0001"  # no keys: default chain
        with pytest.raises(SettingsError, match="'no-such-block', which is not saved"):
            s3_client(replace(settings, aws_credentials_block="no-such-block"))
    finally:
        for name in ("ledger-aws", "ledger-aws-empty"):
            AwsCredentials.delete(name, _sync=True)  # type: ignore[call-arg]
