"""`make run`: the local stack up, blocks and alert automations registered, the six deployments served,
demo traffic flowing, and within two minutes completed drain, anchor, watchdog and demo-export runs.

    python -m deployments.serve            # the demo profile (short schedules)
    python -m deployments.serve --production-schedules
    python -m deployments.serve --workers 2   # `make run WORKERS=2`: a process pool and two workers

Ctrl-C (SIGINT) or SIGTERM stops it cleanly: the demo traffic stops, every flow run still executing is
cancelled (shown Cancelled in the UI, not Crashed), the schedules are paused, and the local stack
(PostgreSQL, S3, Prefect server) keeps running so its data stay: `make down` (`compliance dev down`) stops it.

Two processes: this one (the stack, the demo traffic, the first runs, the stop) and a runner it starts in a
session of its own (``--runner``), which serves the deployments and executes their flow runs. A terminal's
Ctrl-C reaches every process of the foreground group; kept out of that group, the runner and its flow runs
are stopped by this process in order (cancel, then exit) instead of being interrupted mid-run. Under a
process manager, send the signal to this process only (systemd: ``KillMode=mixed``).

With ``--workers N`` there is no runner: the deployments are deployed to the local process work pool
``compliance-dev`` and N ``prefect worker`` processes execute their runs (deployments/pool.py), so the UI
shows runs spread over workers (the drain runs sharing the outbox's shards) as on several machines. On stop,
the schedules are paused, running runs are cancelled through their workers, then the workers stop.

Something else that should live and stop with `make run` goes in ``SERVICES``: each entry is started after
the stack is up and stopped, newest first, before the runner.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

# A service beside the runner: started with the settings once the stack is up; returns its stop function.
Service = Callable[[Any], Callable[[], None]]
SERVICES: list[tuple[str, Service]] = []

RUNNER_STOP_SECONDS = 120  # the runner cancels each run (intent, SIGTERM, state) before it exits
# Runs no runner executes any more once a `make run` has stopped, or was killed without stopping.
ORPHANED_STATES = ("RUNNING", "PENDING", "CANCELLING")
# Runs still waiting to start when it stops (started by hand or waiting for a concurrency slot; the schedules'
# own runs are deleted when they are paused): left Scheduled, the next `make run` would try them every poll.
WAITING_STATES = ("SCHEDULED",)


class AlreadyServing(RuntimeError):
    """Another `make run` serves this stack's deployments; a second runner would share their runs."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--production-schedules", action="store_true")
    parser.add_argument("--demo-rate", type=int, default=20, help="demo events a second (0: none)")
    parser.add_argument(
        "--workers", type=int, default=0, help="deploy to a local process pool run by this many workers (0: serve)"
    )
    parser.add_argument("--runner", action="store_true", help=argparse.SUPPRESS)  # the process started below
    args = parser.parse_args()
    if args.runner:
        from deployments.definitions import specs

        deployments = [spec.to_deployment() for spec in specs(demo=not args.production_schedules)]
        return asyncio.run(serve_deployments(deployments))

    from cli.devstack import Stack, dev_env, pid_alive
    from cli.main import _migrate_quietly, _provision_buckets

    stack = Stack()
    serving = stack.state.get("serve", {}).get("pid")
    if pid_alive(serving):
        raise AlreadyServing(
            f"`make run` is already serving this stack (process {serving}); stop it (Ctrl-C there, or "
            f"`kill {serving}`) before starting another"
        )
    print("starting the local stack (PostgreSQL, S3 with Object Lock, Prefect server) ...", flush=True)
    env = dev_env(stack.up_postgres(), stack.up_s3(), stack.up_prefect())
    os.environ.update(env)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    _migrate_quietly(env["COMPLIANCE_DATABASE_URL"])

    from compliance.settings import Settings

    settings = Settings.from_env()
    _provision_buckets(settings)

    from blocks.ledger import register_and_fill
    from deployments.alerts import apply_alerts
    from deployments.definitions import specs
    from tasks.signing import load_signing_key

    register_and_fill(env)
    key = load_signing_key(settings)  # generated on first use in dev, kept in a Prefect Secret block
    alerts = apply_alerts()
    ui = env["PREFECT_API_URL"].removesuffix("/api")
    print(f"signing key {key.key_id}; {len(alerts)} alert automations applied; blocks registered")
    from deployments.demo import code_command, enrol_demo_operator

    operator, secret = enrol_demo_operator(settings)
    print(
        f"demo operator {operator} (cross-tenant). Its one-time code, for the console forms and --code:\n"
        f"    {code_command(secret)}\n(a code works once; a new one comes every 30 s)",
        flush=True,
    )
    left = settle_left_over_runs(
        ORPHANED_STATES, "Crashed", "the `make run` that executed it was killed without cancelling it"
    )
    if left:
        print(f"{left} flow run(s) left running by an earlier `make run` that was killed: marked Crashed")

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    if args.workers:
        workers = _start_pool(env, args.workers, not args.production_schedules)
        runner = workers[0]
    else:
        workers = []
        runner = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve", "--runner"]
            + (["--production-schedules"] if args.production_schedules else []),
            start_new_session=True,
        )
    stack.state["serve"] = {"pid": os.getpid(), "runner_pid": runner.pid}
    stack.save()
    stoppers: list[tuple[str, Callable[[], None]]] = []
    try:
        for name, start in SERVICES:
            stoppers.append((name, start(settings)))
        from cli.devstack import dev_dir, free_port
        from deployments.demo import start_ingest

        ingest = start_ingest(settings, env, free_port(8787), dev_dir() / "ingest.log")
        stoppers.append(("the ingest service", ingest.process.terminate))
        print(f"export COMPLIANCE_INGEST_URL={ingest.url}\nexport COMPLIANCE_INGEST_TOKEN={ingest.token}", flush=True)
        if args.demo_rate > 0:
            from deployments.demo import DemoEmitter

            emitter = DemoEmitter(settings, args.demo_rate, ingest)
            emitter.start()
            stoppers.append(("demo traffic", emitter.stop))
        threading.Thread(target=_kick_off, args=(settings, operator, stop), daemon=True, name="kick-off").start()
        print(
            f"\nPrefect UI: {ui}\nserving {len(specs())} deployments"
            + (f" on pool {POOL} with {args.workers} workers" if workers else "")
            + (f"; demo traffic {args.demo_rate} events/s" if args.demo_rate > 0 else "")
            + ". Ctrl-C to stop.\n",
            flush=True,
        )
        print('In another shell: eval "$(compliance dev up)" to use the same stack.\n', flush=True)
        while not stop.wait(1):
            ended = [p for p in workers or [runner] if p.poll() is not None]
            if ended:
                what = "a worker" if workers else "the runner"
                print(f"{what} exited (status {ended[0].returncode}); stopping", file=sys.stderr, flush=True)
                break
    finally:
        stop.set()  # the kick-off starts nothing more, whatever ended the loop
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # one stop at a time: a second Ctrl-C must not cut this one short
        print("\nstopping ...", file=sys.stderr, flush=True)
        for name, stop_service in reversed(stoppers):
            stop_service()
            print(f"stopped {name}", file=sys.stderr, flush=True)
        if workers:
            _stop_pool(workers)
        else:
            _stop_runner(runner)
        stack.state.pop("serve", None)
        stack.save()
        left = settle_left_over_runs(ORPHANED_STATES + WAITING_STATES, "Cancelled", "cancelled when `make run` stopped")
        print(
            "stopped serving: running flow runs cancelled"
            + (f" ({left} more, left waiting or running after the runner exited)" if left else "")
            + ", schedules paused.\n"
            + f"Still running, with their data: PostgreSQL on 127.0.0.1:{stack.state['postgres']['port']}, "
            f"the S3 server on 127.0.0.1:{stack.state['s3']['port']}, the Prefect server and UI at {ui}.\n"
            "`make down` stops them (data kept); `make run` serves again.",
            file=sys.stderr,
            flush=True,
        )
    return 0


POOL = "compliance-dev"


def _start_pool(env: dict[str, str], count: int, demo: bool) -> list[subprocess.Popen[bytes]]:
    """Deploy every deployment to the local process pool and start ``count`` workers for it."""
    from cli.devstack import dev_dir
    from deployments.definitions import specs
    from deployments.deploy import deploy_spec
    from deployments.pool import ensure_process_pool, start_worker

    ensure_process_pool(POOL)
    for spec in specs(demo=demo):
        deploy_spec(spec, POOL)
    return [start_worker(POOL, f"dev-worker-{i + 1}", env, dev_dir() / f"worker-{i + 1}.log") for i in range(count)]


def _stop_pool(workers: list[subprocess.Popen[bytes]]) -> None:
    """Pause the schedules, cancel the running runs through their workers (which end the runs' processes),
    then stop the workers."""
    from prefect.client.orchestration import get_client

    from deployments.definitions import specs
    from deployments.pool import stop_worker

    with get_client(sync_client=True) as client:
        for spec in specs():
            deployment = client.read_deployment_by_name(f"{spec.flow.name}/{spec.name}")  # type: ignore[attr-defined]
            client.pause_deployment(deployment.id)
    if settle_left_over_runs(("RUNNING", "PENDING"), "Cancelling", "cancelled when `make run` stopped"):
        deadline = time.monotonic() + RUNNER_STOP_SECONDS
        while time.monotonic() < deadline and _runs_in(("CANCELLING", "RUNNING")):
            time.sleep(1)
    for worker in workers:
        stop_worker(worker)
    print("stopped the workers", file=sys.stderr, flush=True)


def _runs_in(states: tuple[str, ...]) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        return len(
            client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(s) for s in states]))
                )
            )
        )


def _stop_runner(runner: subprocess.Popen[bytes]) -> None:
    if runner.poll() is None:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(RUNNER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            print("the runner did not stop in time: killed", file=sys.stderr, flush=True)
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
    print("stopped the runner", file=sys.stderr, flush=True)


async def serve_deployments(deployments: list[Any]) -> int:
    """The runner process: serve the deployments until SIGTERM or SIGINT, then cancel the runs it is executing
    (Cancelled, through the runner's own cancellation: intent, then SIGTERM), pause the schedules and exit."""
    from prefect.runner import Runner

    runner = Runner(pause_on_shutdown=True)
    for deployment in deployments:
        await runner.aadd_deployment(deployment)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    serving = asyncio.create_task(runner.start())
    while not runner.started and not serving.done():
        await asyncio.sleep(0.05)
    # Runner.start() installs a SIGTERM handler that exits the process at once; ours replaces it, after it.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    stop_wait = asyncio.create_task(stopping.wait())
    await asyncio.wait({serving, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    if not serving.done():
        await runner.astop()
        await serving
    stop_wait.cancel()
    return 0


def settle_left_over_runs(states: tuple[str, ...], state_name: str, message: str) -> int:
    """Move the runs of the served deployments that are in one of ``states`` to ``state_name`` (Cancelled or
    Crashed: no runner will execute them; Cancelling: their worker ends them). Returns how many."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled, Cancelling, Crashed

    from deployments.definitions import specs

    new_state = {"Cancelled": Cancelled, "Cancelling": Cancelling, "Crashed": Crashed}[state_name]
    settled = 0
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(s) for s in states]))
            ),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[s.name for s in specs()])),
        )
        for run in runs:
            # force: the run's process is gone, so no orchestration rule may keep it Running; the slot it holds
            # in its deployment's concurrency limit is released all the same.
            client.set_flow_run_state(run.id, new_state(message=message), force=True)
            settled += 1
    return settled


def _kick_off(settings: object, operator: str, stop: threading.Event) -> None:
    """Start the first runs now instead of waiting for the schedules, then request a demo export. Once ``stop``
    is set it starts nothing more: a run started while `make run` stops would be left Scheduled."""
    from prefect.deployments import run_deployment

    def run(name: str, **params: object) -> None:
        if stop.is_set():
            raise _Stopping
        try:
            run_deployment(name, parameters=params, timeout=0)
        except Exception as exc:  # the deployment may not be registered yet: retry below
            raise RuntimeError(f"could not start {name}: {exc}") from exc

    def wait(seconds: float) -> None:
        if stop.wait(seconds):
            raise _Stopping

    try:
        for _ in range(30):  # wait until the runner has registered the deployments
            try:
                run("migration-drift/migration-drift")
                break
            except RuntimeError:
                wait(2)
        wait(8)  # let demo traffic accumulate
        run("drain-outbox/drain-outbox", run_seconds=20)
        wait(30)
        run("anchor/anchor")
        run("watchdog/watchdog")
        wait(20)
        _demo_export(settings, operator, run)
    except _Stopping:
        return


class _Stopping(Exception):
    """`make run` is stopping: the kick-off starts nothing more."""


def _demo_export(settings: object, operator: str, run: Callable[..., None]) -> None:
    from datetime import datetime, timedelta

    from tasks.exports import queue_export

    now = datetime.now(UTC)
    job = queue_export(  # the demo holds the owner's URL, trusted by construction (docs/operator-runbook.md, Operators)
        settings,
        operator=operator,
        fmt="csv",
        filter_text={  # type: ignore[arg-type]
            "since": (now - timedelta(hours=1)).isoformat(),
            "until": (now + timedelta(minutes=5)).isoformat(),
            "tenant_id": "acme-corp",
        },
    )
    run("export-runner/export-runner", job_id=job)
    print(
        f"demo export {job} requested; `compliance export url {job} --operator {operator} --code CODE` mints its "
        "download link",
        flush=True,
    )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AlreadyServing as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
