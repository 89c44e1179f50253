"""Real parts for the tests: a PostgreSQL 15 cluster and a moto S3 server (an HTTP subprocess), both
started once per run on free ports; each test gets a fresh database cloned from a migrated template."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# A command run without PREFECT_API_URL starts Prefect's ephemeral server, which takes longer than its 20 s
# default to answer on a loaded two-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
for _var in [v for v in os.environ if v.startswith("AWS_CONTAINER_CREDENTIALS") or v.startswith("COMPLIANCE_")]:
    os.environ.pop(_var, None)  # nothing of the machine's own configuration decides a test
for _var in ("COMPLIANCE_DATABASE_URL", "COMPLIANCE_S3_ENDPOINT_URL", "PREFECT_API_URL"):
    os.environ.pop(_var, None)
for _var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "COMPLIANCE_SIGNING_KEY"):
    os.environ.pop(_var, None)  # the tests never reach a real AWS account
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

# The environment above must be set before these imports read it.
from cli.devstack import Postgres, free_port, start_s3_server  # noqa: E402
from compliance.settings import Settings  # noqa: E402
from tasks.schema import apply_migrations  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-examples",
        type=int,
        default=None,
        help="hypothesis examples per property/fuzz test (default 1500; e.g. 100000 for a long run)",
    )


def pytest_configure(config: pytest.Config) -> None:
    examples = config.getoption("--fuzz-examples")
    if examples:
        os.environ["COMPLIANCE_FUZZ_EXAMPLES"] = str(examples)


TEMPLATE = "compliance_template"


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="compliance-tests-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster(workdir: Path) -> Iterator[Postgres]:
    pg = Postgres(workdir / "pg" / "data", free_port())
    pg.start()
    with psycopg.connect(pg.admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    with psycopg.connect(pg.admin_url(TEMPLATE), autocommit=True) as conn:
        apply_migrations(conn)
    yield pg
    pg.stop("immediate")


@pytest.fixture
def db_url(pg_cluster: Postgres) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_cluster.admin_url("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    yield pg_cluster.admin_url(name)
    with psycopg.connect(pg_cluster.admin_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_endpoint(workdir: Path) -> Iterator[str]:
    port = free_port()
    pid = start_s3_server(port, workdir / "s3.log")
    yield f"http://127.0.0.1:{port}"
    try:
        os.killpg(pid, 15)
    except ProcessLookupError:
        pass


TEST_SIGNING_KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"  # the vectors' published test key


@pytest.fixture
def settings(db_url: str, s3_endpoint: str) -> Settings:
    """A fresh database and fresh anchor and export buckets on the S3 server, provisioned as `dev up` does."""
    from tasks.storage import provision_anchor_bucket, provision_export_bucket, s3_client

    suffix = uuid.uuid4().hex[:10]
    s = Settings(
        database_url=db_url,
        s3_endpoint_url=s3_endpoint,
        anchor_bucket=f"anchors-{suffix}",
        export_bucket=f"exports-{suffix}",
        retention_days=1,
    )
    s3 = s3_client(s)
    provision_anchor_bucket(s3, s.anchor_bucket, mode="GOVERNANCE", retention_days=1)
    provision_export_bucket(s3, s.export_bucket)
    return s


@pytest.fixture
def env_for(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the process environment (read by flows and the CLI) at the given settings."""

    def apply(s: Settings) -> dict[str, str]:
        env = {
            "COMPLIANCE_DATABASE_URL": s.database_url or "",
            "COMPLIANCE_ANCHOR_BUCKET": s.anchor_bucket,
            "COMPLIANCE_EXPORT_BUCKET": s.export_bucket,
            "COMPLIANCE_RETENTION_DAYS": str(s.retention_days),
            "COMPLIANCE_SIGNING_KEY": TEST_SIGNING_KEY,
        }
        if s.s3_endpoint_url:
            env["COMPLIANCE_S3_ENDPOINT_URL"] = s.s3_endpoint_url
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        return env

    return apply


@pytest.fixture(scope="session")
def prefect_server(workdir: Path) -> Iterator[str]:
    """A real `prefect server start` (API, UI and services) on a free port, for end-to-end tests."""
    from cli.devstack import start_prefect_server

    port = free_port()
    pid = start_prefect_server(port, workdir / "prefect-home", workdir / "prefect-server.log")
    yield f"http://127.0.0.1:{port}/api"
    try:
        os.killpg(pid, 15)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One offline Prefect server for the whole run (about 11 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def run_cli(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `compliance ...` as a real subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=REPO,
        timeout=timeout,
    )


def sample_event(i: int = 0, tenant: str = "acme", **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "tenant_id": tenant,
        "occurred_at": f"2026-11-22T10:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000000:06d}+00:00",
        "actor_type": "user",
        "actor_id": f"user-{i % 7}",
        "source": "web",
        "event_type": "auth.signin.success",
        "payload": {"userId": f"u-{i}", "method": "password", "ip": "10.0.0.1", "userAgent": "curl/8"},
    }
    event.update(overrides)
    return event
