"""`compliance roles rotate` and `compliance keys rotate`, run as real commands against the real Prefect server."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks.ledger import DatabaseBlock

from compliance.settings import Settings
from tasks.anchoring import anchor_once
from tasks.db import ROLES
from tasks.drain import drain_pending
from tasks.signing import load_signing_key
from tasks.storage import s3_client
from tasks.verify import verify_chain
from tests.conftest import run_cli
from tests.test_drain import emit_many


def role_url(prefect_server: str, role: str) -> str:
    """``role``'s URL as `roles rotate` left it in the compliance-database block."""
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        block = DatabaseBlock.load("compliance-database", _sync=True)  # type: ignore[call-arg]
        return str(getattr(block, f"{role.removeprefix('compliance_')}_url").get_secret_value())


@pytest.fixture
def database_block(prefect_server: str) -> Iterator[str]:
    """The shared Prefect server's compliance-database block, removed afterwards (other tests share it)."""
    yield prefect_server
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        DatabaseBlock.delete("compliance-database", _sync=True)  # type: ignore[call-arg]


def test_roles_rotate_stores_new_role_urls_and_rotating_again_keeps_open_sessions(
    settings: Settings, env_for, database_block: str
) -> None:
    env = {**env_for(settings), "PREFECT_API_URL": database_block}
    emit_many(settings, 3, 1)
    drain_pending.fn(settings)

    first = run_cli(["roles", "rotate"], env)
    assert first.returncode == 0, first.stderr
    assert "their URLs are in the Prefect block 'compliance-database'" in first.stdout
    old = role_url(database_block, "compliance_reader")
    assert urlsplit(old).username == "compliance_reader"
    with psycopg.connect(old, autocommit=True) as open_session:
        second = run_cli(["roles", "rotate"], env)
        assert second.returncode == 0, second.stderr
        new = role_url(database_block, "compliance_reader")
        password = urlsplit(old).password or ""
        assert new != old and password not in second.stdout + second.stderr  # never printed
        # the open session keeps working; a new login needs the new password
        assert open_session.execute("SELECT count(*) FROM compliance.events").fetchone()[0] == 3
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(old).close()
    for role in ROLES:
        with psycopg.connect(role_url(database_block, role)) as conn:
            assert conn.execute("SELECT session_user::text").fetchone() == (role,)


def test_keys_rotate_publishes_the_new_key_and_old_anchors_still_verify(
    settings: Settings, env_for, prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**env_for(settings), "PREFECT_API_URL": prefect_server}
    env.pop("COMPLIANCE_SIGNING_KEY")
    monkeypatch.delenv("COMPLIANCE_SIGNING_KEY")
    refused = run_cli(["keys", "rotate"], {**env, "COMPLIANCE_SIGNING_KEY": "00" * 32})
    assert refused.returncode != 0 and "unset it first" in refused.stderr

    with temporary_settings({PREFECT_API_URL: prefect_server}):
        emit_many(settings, 10, 2)
        drain_pending.fn(settings)
        before = load_signing_key(settings)
        anchor_once(settings, before)

        rotated = run_cli(["keys", "rotate"], env)
        assert rotated.returncode == 0, rotated.stderr
        after = load_signing_key(settings)  # what the anchor flow loads from now on
        assert after.key_id != before.key_id and f"new signing key {after.key_id}" in rotated.stdout
        keys = s3_client(settings).list_objects_v2(Bucket=settings.anchor_bucket, Prefix="keys/")["Contents"]
        assert any(after.key_id in k["Key"] for k in keys)

        emit_many(settings, 10, 2, start=10)
        drain_pending.fn(settings)
        [outcome] = anchor_once(settings, after)
    report = verify_chain(settings)
    assert report.ok and report.anchors == 2, report.summary()  # one anchor under each key
