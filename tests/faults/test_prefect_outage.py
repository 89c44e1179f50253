"""The Prefect server stopped while flows run: what happens, and what brings it back (docs/oncall.md)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.devstack import free_port, start_prefect_server
from tasks.verify import verify_chain
from tests.faults.conftest import FaultStack
from tests.faults.ledger import emit_many, exact_chain


class PrefectServer:
    def __init__(self, home: Path) -> None:
        self.home, self.port, self.pid = home, free_port(), 0

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        self.pid = start_prefect_server(self.port, self.home, self.home.parent / "prefect-server.log")

    def kill(self) -> None:
        os.killpg(self.pid, signal.SIGKILL)
        self.pid = 0

    def flow_runs(self) -> list[dict]:
        req = urllib.request.Request(
            f"{self.api}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


@pytest.fixture
def own_prefect(workdir: Path) -> Iterator[PrefectServer]:
    server = PrefectServer(workdir / f"prefect-{uuid.uuid4().hex[:8]}" / "home")
    server.start()
    yield server
    if server.pid:
        server.kill()


def test_a_running_drain_keeps_chaining_while_the_prefect_server_is_down(
    fault_stack: FaultStack, own_prefect: PrefectServer
) -> None:
    fault_stack.env["PREFECT_API_URL"] = own_prefect.api
    proc = fault_stack.worker("drain-for", "20")  # a scheduled drain run, polling the outbox
    emit_many(fault_stack.settings, 1000, 10)
    fault_stack.wait_for("SELECT count(*) = 1000 FROM compliance.events", proc=proc)

    own_prefect.kill()
    for i in range(1, 4):  # events keep coming, and keep being chained: task runs need no server
        emit_many(fault_stack.settings, 1000, 10, start=1000 * i)
        fault_stack.wait_for(f"SELECT count(*) = {1000 * (i + 1)} FROM compliance.events", seconds=15, proc=proc)
    assert proc.poll() is None

    own_prefect.start()  # same database, same port: the run reports its end to it
    emit_many(fault_stack.settings, 1000, 10, start=4000)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1])["drained"] == 5000
    assert exact_chain(fault_stack.settings, 5000)
    assert verify_chain(fault_stack.settings).ok
    runs = [r for r in own_prefect.flow_runs() if r["name"] and r["state_type"]]
    assert [r["state_type"] for r in runs] == ["COMPLETED"], runs


def test_a_drain_that_ends_while_the_prefect_server_is_down_reports_once_it_is_back(
    fault_stack: FaultStack, own_prefect: PrefectServer
) -> None:
    fault_stack.env["PREFECT_API_URL"] = own_prefect.api
    proc = fault_stack.worker("drain-for", "4")
    emit_many(fault_stack.settings, 1000, 10)
    fault_stack.wait_for("SELECT count(*) = 1000 FROM compliance.events", proc=proc)
    own_prefect.kill()
    emit_many(fault_stack.settings, 1000, 10, start=1000)
    fault_stack.wait_for("SELECT count(*) = 2000 FROM compliance.events", seconds=15, proc=proc)
    time.sleep(6)  # the run's time is up: it tries to report its end, and retries
    assert proc.poll() is None
    own_prefect.start()  # back within the client's retry budget (oncall.md gives its length)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert [r["state_type"] for r in own_prefect.flow_runs()] == ["COMPLETED"]
    assert exact_chain(fault_stack.settings, 2000)
