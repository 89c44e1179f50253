"""The local stack: where `compliance dev up` keeps its PostgreSQL cluster, and the S3 server's objects kept
across `dev down` / `dev up` and a restart."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cli.devstack import Stack, pid_alive
from compliance.anchor import load_private_key
from compliance.settings import Settings
from tasks.anchoring import anchor_once
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.outbox import emit_batch
from tasks.signing import SigningKey
from tasks.storage import s3_client
from tests.conftest import TEST_SIGNING_KEY, run_cli, sample_event

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the postgres user only matters when run as root")


@as_root
def test_a_project_the_postgres_user_can_reach_keeps_its_cluster_in_dot_dev(workdir: Path) -> None:
    root = workdir / "reachable" / ".dev"  # the test run's directory is 0755
    assert Stack(root).pg_data_dir == root / "pg" / "data"


@as_root
def test_a_project_in_a_private_directory_keeps_its_cluster_under_the_postgres_home() -> None:
    private = Path(tempfile.mkdtemp())  # 0700, as `mktemp -d` makes it, or /root
    try:
        stack = Stack(private / "p" / ".dev")
        chosen = stack.pg_data_dir
        assert chosen.is_relative_to(pwd.getpwnam("postgres").pw_dir) and chosen.name == "data"
        assert Stack(private / "q" / ".dev").pg_data_dir != chosen  # one cluster per project
        stack.save()
        assert Stack(private / "p" / ".dev").pg_data_dir == chosen  # remembered in the stack's state
    finally:
        shutil.rmtree(private, ignore_errors=True)


# ---------------------------------------------------------------- the local S3 server keeps its objects

STACK_SETTINGS = ("COMPLIANCE_DATABASE_URL", "COMPLIANCE_S3_ENDPOINT_URL", "PREFECT_API_URL")


@pytest.fixture
def dev_stack(workdir: Path) -> Iterator[dict[str, str]]:
    """The environment of a shell that runs `compliance ...` with no configuration, against a local stack of its
    own (its own directory, ports and processes); the stack is purged at the end."""
    env = {k: v for k, v in os.environ.items() if k not in STACK_SETTINGS}
    env.update(
        COMPLIANCE_DEV_DIR=str(workdir / f"dev-{uuid.uuid4().hex[:8]}"),
        COMPLIANCE_SIGNING_KEY=TEST_SIGNING_KEY,
        COMPLIANCE_RETENTION_DAYS="1",
    )
    yield env
    run_cli(["dev", "down", "--purge"], env)


def dev_up(env: dict[str, str]) -> dict[str, str]:
    """`compliance dev up --no-prefect`; the settings it prints."""
    out = run_cli(["dev", "up", "--no-prefect"], env, timeout=180)
    assert out.returncode == 0, out.stderr
    return dict(line.removeprefix("export ").split("=", 1) for line in out.stdout.splitlines())


def anchor_some_events(printed: dict[str, str]) -> Settings:
    settings = replace(
        Settings.from_env(),
        database_url=printed["COMPLIANCE_DATABASE_URL"],
        s3_endpoint_url=printed["COMPLIANCE_S3_ENDPOINT_URL"],
        anchor_bucket=printed["COMPLIANCE_ANCHOR_BUCKET"],
        export_bucket=printed["COMPLIANCE_EXPORT_BUCKET"],
        retention_days=1,
    )
    key = SigningKey(load_private_key(TEST_SIGNING_KEY))
    for start in (0, 20):  # two anchors, so that the bucket holds several objects
        with connect(settings, "compliance_writer") as conn, conn.transaction():
            emit_batch(conn, [sample_event(i, tenant=f"t{i % 3}") for i in range(start, start + 20)])
        drain_pending.fn(settings)
        assert anchor_once(settings, key)
    return settings


def bucket_objects(settings: Settings) -> dict[tuple[str, str], tuple[Any, ...]]:
    """Every object version of the anchor bucket: its bytes' ETag, last-modified time, lock mode and retain-until."""
    s3 = s3_client(settings)
    found = {}
    for version in s3.list_object_versions(Bucket=settings.anchor_bucket).get("Versions", []):
        head = s3.head_object(Bucket=settings.anchor_bucket, Key=version["Key"], VersionId=version["VersionId"])
        found[(version["Key"], version["VersionId"])] = (
            head["ETag"],
            head["LastModified"],
            head["ObjectLockMode"],
            head["ObjectLockRetainUntilDate"],
        )
    return found


def test_anchors_survive_dev_down_and_up_and_verify_chain_passes(dev_stack: dict[str, str]) -> None:
    settings = anchor_some_events(dev_up(dev_stack))
    before = bucket_objects(settings)
    assert len(before) >= 4 and {lock[2] for lock in before.values()} == {"GOVERNANCE"}

    down = run_cli(["dev", "down"], dev_stack)
    assert down.returncode == 0, down.stderr
    printed = dev_up(dev_stack)
    assert printed["COMPLIANCE_S3_ENDPOINT_URL"] == settings.s3_endpoint_url

    assert bucket_objects(settings) == before  # same version ids, bytes, times, lock modes and retain-until dates
    verify = run_cli(["verify", "chain", "--json"], {**dev_stack, **printed})  # as after `eval "$(dev up)"`
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["anchors"] == 2


def test_anchors_survive_a_machine_restart(dev_stack: dict[str, str]) -> None:
    settings = anchor_some_events(dev_up(dev_stack))
    before = bucket_objects(settings)
    state = json.loads((Path(dev_stack["COMPLIANCE_DEV_DIR"]) / "stack.json").read_text())
    # A shutdown: every process is told to stop (SIGTERM), PostgreSQL is stopped as by a power cut.
    os.killpg(state["s3"]["pid"], signal.SIGTERM)
    Stack(Path(dev_stack["COMPLIANCE_DEV_DIR"])).postgres.stop("immediate")
    while pid_alive(state["s3"]["pid"]):
        time.sleep(0.1)

    printed = dev_up(dev_stack)  # the stack's state names processes that are gone: everything starts again
    assert bucket_objects(settings) == before
    verify = run_cli(["verify", "chain"], {**dev_stack, **printed})
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_dev_down_purge_wipes_the_buckets(dev_stack: dict[str, str]) -> None:
    settings = anchor_some_events(dev_up(dev_stack))
    assert bucket_objects(settings)
    purge = run_cli(["dev", "down", "--purge"], dev_stack)
    assert purge.returncode == 0, purge.stderr
    assert not Path(dev_stack["COMPLIANCE_DEV_DIR"]).exists()
    printed = dev_up(dev_stack)
    assert bucket_objects(replace(settings, s3_endpoint_url=printed["COMPLIANCE_S3_ENDPOINT_URL"])) == {}


def test_dev_up_starts_the_ingest_service_and_prints_a_working_token(dev_stack: dict[str, str]) -> None:
    import urllib.request

    printed = dev_up(dev_stack)
    url, token = printed["COMPLIANCE_INGEST_URL"], printed["COMPLIANCE_INGEST_TOKEN"]
    request = urllib.request.Request(
        url + "/v1/events",
        data=json.dumps(sample_event(1, tenant="acme")).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 202
    again = dev_up(dev_stack)  # reuses the running service and prints the same token
    assert (again["COMPLIANCE_INGEST_URL"], again["COMPLIANCE_INGEST_TOKEN"]) == (url, token)
    pid = json.loads((Path(dev_stack["COMPLIANCE_DEV_DIR"]) / "stack.json").read_text())["ingest"]["pid"]
    assert run_cli(["dev", "down"], dev_stack).returncode == 0
    assert not pid_alive(pid)
