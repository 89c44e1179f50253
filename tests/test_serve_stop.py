"""`make run` stops cleanly: Ctrl-C (in a terminal) or SIGTERM cancels the flow runs it is executing, so no run
is left Crashed or Running, and a second `make run` on the same stack runs its deployments without waiting on
runs the first one left behind. Real processes: `python -m deployments.serve` under a pseudo-terminal, its own
local stack (PostgreSQL, S3, Prefect server), states read through the Prefect API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, TEST_SIGNING_KEY, run_cli

pytestmark = pytest.mark.timeout(900)
CTRL_C = b"\x03"


class Serving:
    """`python -m deployments.serve` in a pseudo-terminal of its own (`script`), as a person runs `make run`."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.stack_file = Path(env["COMPLIANCE_DEV_DIR"]) / "stack.json"
        self.log = log
        self.out = open(log, "ab")
        self.proc = subprocess.Popen(
            # `exec`: the shell `script` starts becomes the serving process. A shell that stayed as its parent (dash,
            # /bin/sh where $SHELL is unset) would itself die of the Ctrl-C, and `script` report that (130).
            ["script", "-qfec", f"exec {sys.executable} -m deployments.serve --demo-rate 5", "/dev/null"],
            stdin=subprocess.PIPE,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, what: str, seconds: float = 240) -> None:
        deadline = time.monotonic() + seconds
        while what not in self.text():
            assert self.proc.poll() is None, f"`make run` exited before printing {what!r}:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"`make run` did not print {what!r}:\n{self.text()[-3000:]}"
            time.sleep(0.5)

    def ctrl_c(self) -> None:
        """Type Ctrl-C into its terminal: the terminal sends SIGINT to its foreground process group."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(CTRL_C)
        self.proc.stdin.flush()

    def serve_pid(self) -> int:
        return int(json.loads(self.stack_file.read_text())["serve"]["pid"])

    def wait(self) -> int:
        code = self.proc.wait(300)
        self.out.close()
        return code


@pytest.fixture
def stack_env(workdir: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("COMPLIANCE_DATABASE_URL", "PREFECT_API_URL")}
    env.update(
        COMPLIANCE_DEV_DIR=str(workdir / f"serve-{uuid.uuid4().hex[:8]}"),
        COMPLIANCE_SIGNING_KEY=TEST_SIGNING_KEY,
        PREFECT_LOGGING_LEVEL="INFO",
    )
    env.pop("COMPLIANCE_S3_ENDPOINT_URL", None)
    yield env
    run_cli(["dev", "down", "--purge"], env, timeout=300)


def start(env: dict[str, str], log: Path) -> Serving:
    serving = Serving(env, log)
    serving.wait_for("Ctrl-C to stop.")
    return serving


def api(env: dict[str, str]) -> str:
    state = json.loads((Path(env["COMPLIANCE_DEV_DIR"]) / "stack.json").read_text())
    return f"http://127.0.0.1:{state['prefect']['port']}/api"


def runs(env: dict[str, str]) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api(env)}), get_client(sync_client=True) as client:
        return list(client.read_flow_runs(limit=200))


def start_run(env: dict[str, str], deployment: str, **parameters: Any) -> Any:
    """Start a run of ``deployment`` once the runner has registered it."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + 120
    with temporary_settings({PREFECT_API_URL: api(env)}):
        with get_client(sync_client=True) as client:
            while True:
                try:
                    client.read_deployment_by_name(deployment)
                    break
                except ObjectNotFound:
                    assert time.monotonic() < deadline, f"the runner did not register {deployment}"
                    time.sleep(1)
        return run_deployment(deployment, parameters=parameters, timeout=0).id


def wait_state(env: dict[str, str], run_id: Any, wanted: set[str], seconds: float = 240) -> str:
    deadline = time.monotonic() + seconds
    while True:
        [run] = [r for r in runs(env) if r.id == run_id]
        if run.state_type.value in wanted:
            return str(run.state_type.value)
        assert time.monotonic() < deadline, f"run {run.name} stayed {run.state_type.value}, not one of {wanted}"
        time.sleep(1)


def test_ctrl_c_then_sigterm_leave_no_run_crashed_and_a_second_run_is_not_blocked(
    stack_env: dict[str, str], workdir: Path
) -> None:
    logs = workdir / f"serve-{uuid.uuid4().hex[:8]}"
    first = start(stack_env, logs.with_suffix(".first.log"))
    long_drain = start_run(stack_env, "drain-outbox/drain-outbox", run_seconds=600)
    wait_state(stack_env, long_drain, {"RUNNING"})

    first.ctrl_c()
    assert first.wait() == 0, first.text()[-3000:]
    said = first.text()
    assert "Still running, with their data: PostgreSQL" in said and "`make down` stops them" in said

    first_runs = runs(stack_env)
    states = {r.name: r.state_type.value for r in first_runs}
    assert "CRASHED" not in states.values(), states
    assert not {"RUNNING", "PENDING", "CANCELLING", "SCHEDULED"} & set(states.values()), states
    [drain] = [r for r in first_runs if r.id == long_drain]
    assert drain.state_type.value == "CANCELLED"

    # A second `make run` on the same stack: its runs are submitted, nothing waits on the first one's leftovers.
    second = start(stack_env, logs.with_suffix(".second.log"))
    anchor = start_run(stack_env, "anchor/anchor")
    assert wait_state(stack_env, anchor, {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}) == "COMPLETED"
    another_drain = start_run(stack_env, "drain-outbox/drain-outbox", run_seconds=600)
    wait_state(stack_env, another_drain, {"RUNNING"})

    os.kill(second.serve_pid(), signal.SIGTERM)  # as a process manager stops a service
    assert second.wait() == 0, second.text()[-3000:]
    aborted = [line for line in second.text().splitlines() if "Aborted submission" in line]
    assert not [line for line in aborted if any(str(r.id) in line for r in first_runs)], aborted
    states = {r.name: r.state_type.value for r in runs(stack_env)}
    assert "CRASHED" not in states.values(), states
    [drain] = [r for r in runs(stack_env) if r.id == another_drain]
    assert drain.state_type.value == "CANCELLED"


def test_dev_down_stops_a_serving_make_run_first_and_its_runs_end_cancelled(
    stack_env: dict[str, str], workdir: Path
) -> None:
    serving = start(stack_env, workdir / f"serve-{uuid.uuid4().hex[:8]}.log")
    long_drain = start_run(stack_env, "drain-outbox/drain-outbox", run_seconds=600)
    wait_state(stack_env, long_drain, {"RUNNING"})
    prefect_api = api(stack_env)

    down = run_cli(["dev", "down"], stack_env, timeout=600)
    assert down.returncode == 0, down.stderr
    assert serving.wait() == 0, serving.text()[-3000:]
    assert "stopped serving: running flow runs cancelled" in serving.text()

    up = run_cli(["dev", "up"], stack_env, timeout=300)  # the same Prefect database, to read what it recorded
    assert up.returncode == 0, up.stderr
    assert api(stack_env) == prefect_api
    states = {r.name: r.state_type.value for r in runs(stack_env)}
    assert "CRASHED" not in states.values() and "RUNNING" not in states.values(), states
    [drain] = [r for r in runs(stack_env) if r.id == long_drain]
    assert drain.state_type.value == "CANCELLED"
