"""Where `compliance dev up` keeps its PostgreSQL cluster."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from cli.devstack import Stack

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
