"""`make run`: the local stack up, blocks and alert automations registered, the six deployments served,
demo traffic flowing, and within two minutes completed drain, anchor, watchdog and demo-export runs.

    python -m deployments.serve            # the demo profile (short schedules)
    python -m deployments.serve --production-schedules

Ctrl-C stops the served deployments and the demo traffic; the local stack
(PostgreSQL, S3, Prefect server) keeps running so its data stay: `make down`
(`compliance dev down`) stops it.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import UTC


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--production-schedules", action="store_true")
    parser.add_argument("--demo-rate", type=int, default=20, help="demo events a second (0: none)")
    args = parser.parse_args()

    from cli.devstack import Stack, dev_env
    from cli.main import _migrate_quietly, _provision_buckets

    stack = Stack()
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

    from cli.devstack import dev_dir, free_port
    from deployments.demo import start_ingest

    ingest = start_ingest(settings, env, free_port(8787), dev_dir() / "ingest.log")
    print(f"export COMPLIANCE_INGEST_URL={ingest.url}\nexport COMPLIANCE_INGEST_TOKEN={ingest.token}", flush=True)
    emitter = None
    if args.demo_rate > 0:
        from deployments.demo import DemoEmitter

        emitter = DemoEmitter(settings, args.demo_rate, ingest)
        emitter.start()
    threading.Thread(target=_kick_off, args=(settings, operator), daemon=True, name="kick-off").start()
    print(
        f"\nPrefect UI: {ui}\nserving {len(specs())} deployments"
        + (f"; demo traffic {args.demo_rate} events/s" if emitter else "")
        + ". Ctrl-C to stop.\n",
        flush=True,
    )
    print('In another shell: eval "$(compliance dev up)" to use the same stack.\n', flush=True)

    from prefect import serve

    try:
        serve(*[s.to_deployment() for s in specs(demo=not args.production_schedules)], print_starting_message=False)
    except KeyboardInterrupt:
        pass
    finally:
        if emitter is not None:
            emitter.stop()
        ingest.process.terminate()
        print("\nstopped serving; the local stack keeps running (make down stops it)", file=sys.stderr)
    return 0


def _kick_off(settings: object, operator: str) -> None:
    """Start the first runs now instead of waiting for the schedules, then request a demo export."""
    from prefect.deployments import run_deployment

    def run(name: str, **params: object) -> None:
        try:
            run_deployment(name, parameters=params, timeout=0)
        except Exception as exc:  # the deployment may not be registered yet: retry below
            raise RuntimeError(f"could not start {name}: {exc}") from exc

    for _ in range(30):  # wait until serve() has registered the deployments
        try:
            run("migration-drift/migration-drift")
            break
        except RuntimeError:
            time.sleep(2)
    time.sleep(8)  # let demo traffic accumulate
    run("drain-outbox/drain-outbox", run_seconds=20)
    time.sleep(30)
    run("anchor/anchor")
    run("watchdog/watchdog")
    time.sleep(20)
    from datetime import datetime, timedelta

    from tasks.exports import queue_export

    now = datetime.now(UTC)
    job = queue_export(  # the demo holds the owner's URL, trusted by construction (SPEC §8)
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
    sys.exit(main())
