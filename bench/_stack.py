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
from tasks.schema import apply_migrations


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
