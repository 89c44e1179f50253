"""What every benchmark starts with: its own PostgreSQL cluster (migrated) and, if asked, an S3 server."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from cli.devstack import Postgres, free_port, start_s3_server
from compliance.settings import Settings
from tasks.schema import apply_migrations
from tasks.signing import SigningKey


class BenchStack(NamedTuple):
    database_url: str
    s3_endpoint_url: str | None
    workdir: Path


@contextmanager
def bench_stack(*, s3: bool = False) -> Iterator[BenchStack]:
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    os.chmod(work, 0o755)
    pg = Postgres(work / "pg" / "data", free_port())
    s3_pid = None
    try:
        pg.start()
        with psycopg.connect(pg.url, autocommit=True) as conn:
            apply_migrations(conn)
        endpoint = None
        if s3:
            port = free_port()
            s3_pid = start_s3_server(port, work / "s3.log")
            endpoint = f"http://127.0.0.1:{port}"
        yield BenchStack(pg.url, endpoint, work)
    finally:
        pg.stop("immediate")
        if s3_pid:
            os.killpg(s3_pid, 15)
        shutil.rmtree(work, ignore_errors=True)


def provisioned_settings(stack: BenchStack) -> Settings:
    """Settings for a bench stack, with its anchor bucket ("anchors", GOVERNANCE, one day) and export bucket
    ("exports") provisioned."""
    from tasks.storage import provision_anchor_bucket, provision_export_bucket, s3_client

    settings = Settings(
        database_url=stack.database_url,
        s3_endpoint_url=stack.s3_endpoint_url,
        anchor_bucket="anchors",
        export_bucket="exports",
        retention_days=1,
    )
    s3 = s3_client(settings)
    provision_anchor_bucket(s3, "anchors", mode="GOVERNANCE", retention_days=1)
    provision_export_bucket(s3, "exports")
    return settings


def anchored_ledger(stack: BenchStack, events: int, tenants: int) -> tuple[Settings, SigningKey]:
    """:func:`provisioned_settings`, with ``events`` events over ``tenants`` tenants chained and anchored by a
    new signing key (returned: exports sign their manifests with it)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from drain import load_outbox

    from tasks.anchoring import anchor_once
    from tasks.drain import drain_pending

    settings = provisioned_settings(stack)
    load_outbox(stack.database_url, events, tenants)
    drain_pending.fn(settings)
    key = SigningKey(Ed25519PrivateKey.generate())
    anchor_once(settings, key)
    return settings, key
