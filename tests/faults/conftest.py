"""The fault tests' own parts: a PostgreSQL cluster per test (so it can be restarted), the S3 server behind a
TCP forwarder (so it can be stopped and brought back with its objects), and flows run in real processes
against the real Prefect server, the way a deployment runs them."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cli.devstack import Postgres, free_port
from compliance.settings import Settings
from tasks.db import connect
from tasks.schema import apply_migrations
from tests.conftest import REPO, TEST_SIGNING_KEY


def disk_full_at(max_file_bytes: int) -> None:
    """In a child before exec: writing a file past ``max_file_bytes`` fails (EFBIG) as on a full disk,
    rather than killing the process (SIGXFSZ ignored; an ignored signal stays ignored across exec)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, resource.RLIM_INFINITY))  # soft: can be freed


class RestartablePostgres(Postgres):
    def restart(self, mode: str) -> None:
        """Stop with ``mode`` (fast: clients disconnected, transactions rolled back; immediate: no
        shutdown checkpoint, crash recovery at start), then start again on the same port."""
        self.stop(mode)
        self.start()


@pytest.fixture
def fault_pg(workdir: Path) -> Iterator[RestartablePostgres]:
    pg = RestartablePostgres(workdir / f"fault-{uuid.uuid4().hex[:8]}" / "data", free_port())
    pg.start()
    with psycopg.connect(pg.url, autocommit=True) as conn:
        apply_migrations(conn)
    yield pg
    pg.stop("immediate")


class S3Proxy:
    """The S3 endpoint the code under test sees; ``stop``/``start`` take S3 away and bring it back."""

    def __init__(self, target_url: str) -> None:
        self.target_port = int(target_url.rsplit(":", 1)[1])
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.tcpproxy", str(self.port), str(self.target_port)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def s3_proxy(s3_endpoint: str) -> Iterator[S3Proxy]:
    proxy = S3Proxy(s3_endpoint)
    proxy.start()
    yield proxy
    if proxy.proc is not None:
        proxy.resume()
    proxy.stop()


@dataclass
class FaultStack:
    pg: RestartablePostgres
    s3: S3Proxy
    settings: Settings
    env: dict[str, str]  # what a worker process gets (COMPLIANCE_*, PREFECT_API_URL)

    def worker(self, *args: str, max_file_bytes: int | None = None) -> subprocess.Popen[str]:
        """A flow in its own process (tests/faults/worker.py); ``max_file_bytes``: no file it writes may grow
        past that size (RLIMIT_FSIZE, the disk is full for it)."""
        return subprocess.Popen(
            [sys.executable, "-m", "tests.faults.worker", *args],
            cwd=REPO,
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=None if max_file_bytes is None else lambda: disk_full_at(max_file_bytes),
        )

    def scalar(self, sql: str, params: Any = ()) -> Any:
        with connect(self.settings, None, autocommit=True) as conn:
            return conn.execute(sql, params).fetchone()[0]  # type: ignore[index]

    def wait_for(self, sql: str, seconds: float = 60, proc: subprocess.Popen[str] | None = None) -> None:
        """Until the query answers true (the worker reached the point the test wants to hit)."""
        deadline = time.monotonic() + seconds
        while not self.scalar(sql):
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the worker ended first (exit {proc.returncode}): {proc.stderr.read()[-3000:]}")  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"never true within {seconds:.0f} s: {sql}"
            time.sleep(0.02)


@pytest.fixture
def fault_stack(fault_pg: RestartablePostgres, s3_proxy: S3Proxy, prefect_server: str) -> FaultStack:
    from tasks.storage import provision_anchor_bucket, provision_export_bucket, s3_client

    suffix = uuid.uuid4().hex[:10]
    settings = Settings(
        database_url=fault_pg.url,
        s3_endpoint_url=s3_proxy.url,
        anchor_bucket=f"fault-anchors-{suffix}",
        export_bucket=f"fault-exports-{suffix}",
        retention_days=1,
    )
    s3 = s3_client(settings)
    provision_anchor_bucket(s3, settings.anchor_bucket, mode="GOVERNANCE", retention_days=1)
    provision_export_bucket(s3, settings.export_bucket)
    env = {
        "COMPLIANCE_DATABASE_URL": fault_pg.url,
        "COMPLIANCE_S3_ENDPOINT_URL": s3_proxy.url,
        "COMPLIANCE_ANCHOR_BUCKET": settings.anchor_bucket,
        "COMPLIANCE_EXPORT_BUCKET": settings.export_bucket,
        "COMPLIANCE_RETENTION_DAYS": "1",
        "COMPLIANCE_SIGNING_KEY": TEST_SIGNING_KEY,
        "PREFECT_API_URL": prefect_server,
    }
    return FaultStack(fault_pg, s3_proxy, settings, env)
