"""Stages: `staging` and `prod` never start anything local and refuse a missing setting by name; AWS
credentials come from boto3's default chain; an unset stage is `dev` only while nothing points off this
machine. Real subprocesses of the command line; the process table is read with psutil."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from compliance.settings import Settings, SettingsError, stage_from_env
from tests.conftest import REPO

# Every command that reads the ledger's configuration, with the arguments it needs to get that far.
COMMANDS = [
    ["migrate"],
    ["drift"],
    ["health"],
    ["drain"],
    ["anchor"],
    ["watchdog"],
    ["emit", "--tenant-id", "acme", "--event-type", "auth.signin.success", "--actor-type", "user", "--actor-id", "u-1",
     "--source", "web", "--payload", "{}"],
    ["events", "list", "--operator", "ops@example.com", "--code", "123456"],
    ["events", "show", "--operator", "ops@example.com", "--code", "123456", "--tenant", "acme", "--seq", "1"],
    ["export", "list"],
    ["export", "request", "--operator", "ops@example.com", "--code", "123456", "--format", "csv", "--filter", "{}"],
    ["verify", "chain"],
    ["bucket", "check"],
    ["bucket", "provision"],
    ["keys", "rotate"],
    ["roles", "rotate"],
    ["operators", "list"],
    ["sources", "list"],
    ["trust", "show"],
]


def _unset_everything(env: dict[str, str]) -> dict[str, str]:
    drop = ("COMPLIANCE_", "PREFECT_API_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE")
    return {k: v for k, v in env.items() if not k.startswith(drop)}


def _local_servers(dev_dir: Path) -> list[str]:
    """Processes started for a local stack in ``dev_dir`` (PostgreSQL, the S3 server, a Prefect server)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(dev_dir) in cmdline:
            found.append(cmdline)
    return found


@pytest.fixture
def prod_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    dev_dir = tmp_path / f"stack-{uuid.uuid4().hex[:8]}"
    env = _unset_everything(dict(os.environ)) | {
        "COMPLIANCE_STAGE": "prod",
        "COMPLIANCE_ANCHOR_BUCKET": "acme-ledger-anchors",
        "COMPLIANCE_EXPORT_BUCKET": "acme-ledger-exports",
        "COMPLIANCE_ANCHOR_KMS_KEY_ID": "alias/acme-ledger-anchors",
        "COMPLIANCE_DEV_DIR": str(dev_dir),  # where a local stack would live, were one started
    }
    yield env
    assert not _local_servers(dev_dir)


def test_prod_without_a_database_url_refuses_every_command_naming_it_and_starts_nothing(
    prod_env: dict[str, str],
) -> None:
    dev_dir = Path(prod_env["COMPLIANCE_DEV_DIR"])
    with ThreadPoolExecutor(4) as pool:  # separate processes; four at a time
        results = list(pool.map(lambda args: (args, _run(args, prod_env)), COMMANDS))
    for args, done in results:
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "COMPLIANCE_DATABASE_URL is not set" in done.stderr, (args, done.stderr)
        assert "in prod" in done.stderr, (args, done.stderr)
    assert not _local_servers(dev_dir)
    assert not dev_dir.exists() or not any(dev_dir.iterdir()), list(dev_dir.iterdir())


def test_prod_refuses_dev_up_and_a_flow_command_without_the_prefect_api(
    prod_env: dict[str, str], db_url: str
) -> None:
    up = _run(["dev", "up"], prod_env)
    assert up.returncode == 2 and "COMPLIANCE_STAGE=prod never does" in up.stderr, up.stderr
    with_db = prod_env | {"COMPLIANCE_DATABASE_URL": db_url}
    for args in (["drain"], ["anchor"], ["watchdog"], ["alerts", "apply"]):
        done = _run(args, with_db)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "PREFECT_API_URL is not set" in done.stderr, (args, done.stderr)
    assert not _local_servers(Path(prod_env["COMPLIANCE_DEV_DIR"]))


def test_prod_refuses_an_unset_bucket_name_by_name() -> None:
    with pytest.raises(SettingsError, match="COMPLIANCE_ANCHOR_BUCKET is not set: in prod"):
        Settings.from_env({"COMPLIANCE_STAGE": "prod"})
    with pytest.raises(SettingsError, match="COMPLIANCE_EXPORT_BUCKET is not set: in staging"):
        Settings.from_env({"COMPLIANCE_STAGE": "staging", "COMPLIANCE_ANCHOR_BUCKET": "a"})
    with pytest.raises(SettingsError, match="COMPLIANCE_ANCHOR_KMS_KEY_ID is not set: in prod"):
        Settings.from_env(
            {"COMPLIANCE_STAGE": "prod", "COMPLIANCE_ANCHOR_BUCKET": "a", "COMPLIANCE_EXPORT_BUCKET": "e"}
        )
    dev = Settings.from_env({"COMPLIANCE_STAGE": "dev"})
    assert (dev.anchor_bucket, dev.export_bucket) == ("compliance-anchors", "compliance-exports")


@pytest.mark.parametrize(
    "env",
    [
        {"COMPLIANCE_DATABASE_URL": "postgresql://ledger@db.internal.example:5432/ledger"},
        {"COMPLIANCE_DRAINER_DATABASE_URL": "postgresql://compliance_drainer@ledger.cluster-1.rds.example/ledger"},
        {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc"},
        {"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/token", "AWS_ROLE_ARN": "arn:aws:iam::1:role/x"},
        {"AWS_PROFILE": "ledger-prod"},
        {"COMPLIANCE_S3_ENDPOINT_URL": "https://s3.eu-west-1.example.com"},
    ],
)
def test_an_unset_stage_with_a_production_setting_is_refused_not_guessed(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="COMPLIANCE_STAGE is not set") as refused:
        stage_from_env(env)
    assert next(iter(env)) in str(refused.value)


def test_an_unset_stage_on_a_bare_checkout_or_the_local_stack_is_dev() -> None:
    assert stage_from_env({}) == "dev"
    assert stage_from_env({"COMPLIANCE_DATABASE_URL": "postgresql://postgres@127.0.0.1:55432/compliance"}) == "dev"
    assert stage_from_env({"COMPLIANCE_S3_ENDPOINT_URL": "http://localhost:55433"}) == "dev"
    assert stage_from_env({"AWS_PROFILE": "me", "COMPLIANCE_STAGE": "dev"}) == "dev"  # said on purpose


class _ContainerCredentials(http.server.BaseHTTPRequestHandler):
    """The container credentials endpoint (ECS task role) as boto3 asks it."""

    served = 0

    def do_GET(self) -> None:  # noqa: N802
        type(self).served += 1
        body = json.dumps(
            {
                "AccessKeyId": "ASIACONTAINERROLE01",
                "SecretAccessKey": "container-secret",
                "Token": "container-session-token",
                "Expiration": "2099-01-01T00:00:00Z",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _staging_env(settings: Settings, dev_dir: Path) -> dict[str, str]:
    return _unset_everything(dict(os.environ)) | {
        "COMPLIANCE_STAGE": "staging",
        "COMPLIANCE_DATABASE_URL": settings.database_url or "",
        "COMPLIANCE_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "COMPLIANCE_ANCHOR_BUCKET": settings.anchor_bucket,
        "COMPLIANCE_EXPORT_BUCKET": settings.export_bucket,
        "COMPLIANCE_ANCHOR_KMS_KEY_ID": "alias/staging-anchors",
        "COMPLIANCE_RETENTION_DAYS": "1",
        "COMPLIANCE_DEV_DIR": str(dev_dir),
    }


def _bucket_check(env: dict[str, str], settings: Settings) -> dict[str, object]:
    done = _run(["bucket", "check", "--json"], env)
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert report["bucket"] == settings.anchor_bucket
    findings = {f["check"]: f for f in report["findings"]}
    assert findings["versioning"]["ok"] and findings["object_lock"]["ok"], findings  # read from the real bucket
    return report


def test_staging_takes_credentials_from_a_shared_credentials_file(settings: Settings, tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = AKIAFILECREDENTIALS1\naws_secret_access_key = from-a-file\n")
    dev_dir = tmp_path / "stack"
    env = _staging_env(settings, dev_dir) | {
        "AWS_SHARED_CREDENTIALS_FILE": str(creds),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
    }
    _bucket_check(env, settings)
    assert not _local_servers(dev_dir) and not dev_dir.exists()


def test_staging_takes_credentials_from_the_container_endpoint(settings: Settings, tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ContainerCredentials)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dev_dir = tmp_path / "stack"
        env = _staging_env(settings, dev_dir) | {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{server.server_port}/creds",
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
        }
        before = _ContainerCredentials.served
        _bucket_check(env, settings)
        assert _ContainerCredentials.served > before  # boto3's chain asked the endpoint, not a built-in key
        assert not _local_servers(dev_dir) and not dev_dir.exists()
    finally:
        server.shutdown()


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`compliance ARGS` with exactly ``env`` (nothing inherited from the test run's own settings)."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
