"""Disk full on the export path.

The runner streams the file into a multipart upload and writes nothing locally, so the disk that can
fill up under an export is the object store's. Both are exercised: the S3 server's disk full in the
middle of an upload (the job fails cleanly, and completes once there is space again), and the runner
with no local disk at all (the export completes).
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.devstack import free_port
from compliance.settings import Settings
from tasks.anchoring import anchor_once
from tasks.exports import run_job
from tasks.storage import provision_anchor_bucket, provision_export_bucket, s3_client
from tests.faults.conftest import FaultStack, RestartablePostgres, disk_full_at
from tests.faults.ledger import drain_all, emit_many, export_objects, job_row, request_job, verified_export
from tests.test_anchor import KEY

EVENTS = 20_000  # about 15 MB of CSV: past moto's 5 MB in-memory buffer, so it goes to the server's disk
S3_DISK_BYTES = 2 * 2**20


@pytest.fixture
def small_disk_s3(workdir: Path) -> Iterator[tuple[str, int]]:
    """A moto S3 server whose files cannot grow past 2 MB: its disk is full for anything larger."""
    home = workdir / f"s3-small-{uuid.uuid4().hex[:8]}"
    home.mkdir()
    port = free_port()
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        cwd=home,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(home), "HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: disk_full_at(S3_DISK_BYTES),
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2).close()
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "the small-disk S3 server did not start"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", proc.pid
    proc.kill()
    proc.wait()


def test_the_s3_servers_disk_full_mid_export_fails_the_job_and_it_completes_once_there_is_space(
    fault_pg: RestartablePostgres, small_disk_s3: tuple[str, int], tmp_path: Path
) -> None:
    endpoint, s3_pid = small_disk_s3
    settings = Settings(
        database_url=fault_pg.url,
        s3_endpoint_url=endpoint,
        anchor_bucket="anchors-small-disk",
        export_bucket="exports-small-disk",
        retention_days=1,
    )
    s3 = s3_client(settings)
    provision_anchor_bucket(s3, settings.anchor_bucket, mode="GOVERNANCE", retention_days=1)
    provision_export_bucket(s3, settings.export_bucket)
    emit_many(settings, EVENTS, 200)
    drain_all(settings)
    anchor_once(settings, KEY)  # small objects: they fit

    job = request_job(settings)
    with pytest.raises(Exception, match="(?i)internal|500"):
        run_job(settings, job, signing_key=KEY)
    status, error, key = job_row(settings, job)
    assert status == "failed" and key is None
    # S3's answer to the part it could not store, for the operator (15 MB goes up as 8 MiB parts)
    assert error is not None and "(500)" in error and "UploadPart" in error
    assert export_objects(settings, job) == []  # nothing half-written was published

    resource.prlimit(s3_pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # space freed
    again = request_job(settings)
    outcome = run_job(settings, again, signing_key=KEY)
    assert outcome is not None and outcome.status == "complete"
    report = verified_export(settings, again, tmp_path)
    assert report.ok and report.rows == EVENTS, report.summary()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])  # polars writes Parquet's row groups into the upload too
def test_the_runner_needs_no_local_disk(fault_stack: FaultStack, tmp_path: Path, fmt: str) -> None:
    settings = fault_stack.settings
    emit_many(settings, EVENTS, 200)
    drain_all(settings)
    anchor_once(settings, KEY)
    job = request_job(settings, fmt)
    proc = fault_stack.worker("export", job, max_file_bytes=0)  # the runner's disk is full from the start
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    report = verified_export(settings, job, tmp_path)
    assert report.ok and report.rows == EVENTS, report.summary()
