"""The signing key from a file outside Prefect (a Secret block in dev only), and `compliance health` critical
when the Prefect API answers a caller without credentials."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from compliance.anchor import key_id_for, load_private_key
from compliance.settings import Settings
from tests.conftest import TEST_SIGNING_KEY

TEST_KEY_ID = key_id_for(load_private_key(TEST_SIGNING_KEY))


def test_the_signing_key_comes_from_a_file_as_hex_or_pem(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.signing import load_signing_key

    staging = replace(settings, stage="staging")
    pem = load_private_key(TEST_SIGNING_KEY).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for name, body in (("key.hex", TEST_SIGNING_KEY + "\n"), ("key.pem", pem.decode())):
        path = tmp_path / name
        path.write_text(body)
        monkeypatch.setenv("COMPLIANCE_SIGNING_KEY_FILE", str(path))
        assert load_signing_key(staging).key_id == TEST_KEY_ID


def test_a_missing_or_unreadable_key_file_is_refused_naming_the_variable(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.signing import SigningKeyError, load_signing_key

    monkeypatch.setenv("COMPLIANCE_SIGNING_KEY_FILE", str(tmp_path / "absent"))
    with pytest.raises(SigningKeyError, match="COMPLIANCE_SIGNING_KEY_FILE=.*absent: cannot read"):
        load_signing_key(settings)
    (tmp_path / "garbage").write_text("not a key")
    monkeypatch.setenv("COMPLIANCE_SIGNING_KEY_FILE", str(tmp_path / "garbage"))
    with pytest.raises(SigningKeyError, match="does not hold an Ed25519 private key"):
        load_signing_key(settings)


def test_a_secret_block_is_the_key_in_dev_and_refused_outside_dev(
    settings: Settings, prefect_harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    from tasks import signing

    monkeypatch.setattr(signing, "SECRET_BLOCK", f"signing-key-{uuid.uuid4().hex[:8]}")
    Secret(value=TEST_SIGNING_KEY).save(signing.SECRET_BLOCK, _sync=True)  # type: ignore[call-arg]
    assert signing.load_signing_key(settings).key_id == TEST_KEY_ID
    for stage in ("staging", "prod"):
        with pytest.raises(signing.SigningKeyError, match="no signing key: set COMPLIANCE_SIGNING_KEY_FILE"):
            signing.load_signing_key(replace(settings, stage=stage))
    assert "COMPLIANCE_SIGNING_KEY_FILE" in (signing.rotation_refusal(replace(settings, stage="prod")) or "")


def test_health_outside_dev_is_critical_when_the_prefect_api_answers_without_credentials(
    settings: Settings, prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.health import collect
    from tests.test_server_rules import login_url

    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    staging = replace(
        settings,
        stage="staging",
        role_urls={"compliance_reader": login_url(settings, "compliance_reader", "pw-reader")},
    )
    report = collect(staging)
    assert report["prefect_api_auth"]["state"] == "open"
    assert any("answers without authentication" in c for c in report["critical"])
    assert collect(settings)["prefect_api_auth"]["state"] == "not checked"  # dev


def test_a_prefect_api_with_authentication_is_closed_to_a_caller_without_it(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.devstack import free_port, start_prefect_server
    from cli.health import prefect_api_auth
    from tasks.prefect_api import probe_without_credentials

    port = free_port()
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "admin:s3cret-test")
    pid = start_prefect_server(port, workdir / "prefect-auth-home", workdir / "prefect-auth.log")
    try:
        url = f"http://127.0.0.1:{port}/api"
        monkeypatch.setenv("PREFECT_API_URL", url)
        assert probe_without_credentials(url) == 401
        state = prefect_api_auth(Settings(stage="prod", lock_mode="COMPLIANCE"))
        assert state["state"] == "closed", state
    finally:
        os.killpg(pid, 15)
