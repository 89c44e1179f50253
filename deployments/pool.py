"""A process work pool and its `prefect worker` processes, on this machine.

The dev stack's `make run WORKERS=2` (``python -m deployments.serve --workers 2``) deploys the deployments
to a process pool and starts workers for it, so runs spread over workers as they do over machines in
production (ECS or Kubernetes pools there, docs/architecture.md). Each worker is a real
``prefect worker start`` process; it hands its own environment (COMPLIANCE_*, PREFECT_API_URL) to the flow
runs it starts, and loads the flows from the deployment's source.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["WORKER_QUERY_SECONDS", "ensure_process_pool", "executed_by", "start_worker", "stop_worker"]

WORKER_QUERY_SECONDS = 2  # how often a local worker asks for runs (Prefect's default: 10)


def ensure_process_pool(name: str) -> None:
    """Create the process work pool ``name`` with Prefect's default job template, unless it exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(
                WorkPoolCreate(
                    name=name, type="process", base_job_template=ProcessWorker.get_default_base_job_template()
                )
            )
        except ObjectAlreadyExists:
            pass


def start_worker(
    pool: str, name: str, env: dict[str, str], log: Path, limit: int | None = None
) -> subprocess.Popen[bytes]:
    """``prefect worker start`` for ``pool`` in a session of its own (its output in ``log``); ``env`` is laid
    over this process's environment and handed on to every flow run it starts."""
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--name", name, "--type", "process"]
    if limit:
        command += ["--limit", str(limit)]
    worker_env = {"PREFECT_WORKER_QUERY_SECONDS": str(WORKER_QUERY_SECONDS), **os.environ, **env}
    with log.open("ab") as out:
        return subprocess.Popen(command, env=worker_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(worker: subprocess.Popen[bytes], seconds: float = 60) -> None:
    """SIGTERM the worker and wait for it to exit (SIGKILL after ``seconds``)."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(seconds)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def executed_by(flow_run_ids: Iterable[Any], seconds: float = 60) -> dict[str, str]:
    """Which worker submitted each of ``flow_run_ids`` (flow run id -> worker name), as the workers reported
    it to the Prefect API (their ``prefect.worker.submitted-flow-run`` events). Waits up to ``seconds`` for
    the events of every run to be recorded."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    wanted = {str(i) for i in flow_run_ids}
    found: dict[str, str] = {}
    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_events(
                EventFilter(event=EventNameFilter(name=["prefect.worker.submitted-flow-run"])), limit=50
            )
            while True:
                for event in page.events:
                    for related in event.related:
                        run = related.id.removeprefix("prefect.flow-run.")
                        if related.role == "flow-run" and run in wanted:
                            found[run] = event.resource.name or event.resource.id
                if not page.next_page:
                    break
                page = client.read_events_page(page.next_page)
            if set(found) >= wanted or time.monotonic() >= deadline:
                return found
            time.sleep(1)
