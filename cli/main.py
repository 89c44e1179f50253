"""The `compliance` command line (the README, Command line). Every subcommand exits 0 on success, 1 when a check fails,
2 when the input is refused (the message names the field and what to change)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC
from typing import Any, NoReturn

from cli.operators import (
    add_operator_arguments,
    cmd_events_list,
    cmd_events_show,
    cmd_export_list,
    cmd_export_status,
    cmd_export_url,
)
from ledger_verify.cli import add_export_arguments

from cli.operators import add_parsers as add_operator_parsers
from cli.verify import add_trust_commands, cmd_verify_export
from compliance.bucket import IAM_ROLES
from compliance.settings import Settings, SettingsError

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def resolve_settings(*, s3: bool = False, prefect: bool = False) -> Settings:
    """Settings from the environment. In dev an unset database or S3 endpoint means the local stack (started if
    needed); in staging and prod nothing local is started and a missing database URL (``prefect``: the Prefect
    API) refuses, by name, before anything runs."""
    try:
        settings = Settings.from_env()
        if settings.stage != "dev":
            require_deployed(settings, prefect=prefect)
            return settings
    except SettingsError as exc:
        fail(str(exc))
    updates: dict[str, Any] = {}
    if settings.database_url is None:
        from cli.devstack import Stack

        stack = Stack()
        updates["database_url"] = stack.up_postgres()
        _migrate_quietly(updates["database_url"])
        if stack.prefect_url_if_running() and not os.environ.get("PREFECT_API_URL"):
            os.environ["PREFECT_API_URL"] = stack.prefect_url_if_running()  # type: ignore[assignment]
    if s3 and settings.s3_endpoint_url is None:
        from cli.devstack import Stack

        updates["s3_endpoint_url"] = Stack().up_s3()
    if updates:
        from dataclasses import replace

        settings = replace(settings, **updates)
        # Flows and subprocesses read the environment: let them see the local stack too.
        for key, var in (
            ("database_url", "COMPLIANCE_DATABASE_URL"),
            ("s3_endpoint_url", "COMPLIANCE_S3_ENDPOINT_URL"),
        ):
            if key in updates:
                os.environ[var] = updates[key]
        if "s3_endpoint_url" in updates:
            _provision_buckets(settings)
    return settings


def require_deployed(settings: Settings, *, prefect: bool) -> None:
    """Outside dev: a database URL (the owner's, or the roles' own) and, for commands that run flows, the
    Prefect API must be configured; nothing local stands in for them."""
    if not settings.database_url and not settings.role_urls:
        raise SettingsError(
            f"COMPLIANCE_DATABASE_URL is not set: in {settings.stage} no local PostgreSQL is started; set it to the "
            "owner's PostgreSQL URL, or set each role's own COMPLIANCE_<ROLE>_DATABASE_URL"
        )
    if prefect and not os.environ.get("PREFECT_API_URL"):
        raise SettingsError(
            f"PREFECT_API_URL is not set: in {settings.stage} no local Prefect server is started; set it to the "
            "Prefect API the deployments run on (and PREFECT_API_KEY or PREFECT_API_AUTH_STRING as it requires)"
        )


def ensure_prefect_api() -> None:
    """PREFECT_API_URL as configured; unset, the local stack's Prefect server in dev (started if needed), and a
    refusal naming it in staging and prod."""
    if os.environ.get("PREFECT_API_URL"):
        return
    try:
        settings = Settings.from_env()
        if settings.stage != "dev":
            require_deployed(settings, prefect=True)
    except SettingsError as exc:
        fail(str(exc))
    from cli.devstack import Stack

    os.environ["PREFECT_API_URL"] = Stack().up_prefect()


def refuse_outside_dev(what: str) -> None:
    """Commands that start local servers run only in dev."""
    try:
        stage = Settings.from_env().stage
    except SettingsError as exc:
        fail(str(exc))
    if stage != "dev":
        fail(f"{what} starts local servers, which COMPLIANCE_STAGE={stage} never does; unset it or use dev")


def _migrate_quietly(url: str) -> None:
    import psycopg

    from tasks.schema import apply_migrations

    with psycopg.connect(url, autocommit=True) as conn:
        apply_migrations(conn)


def _provision_buckets(settings: Settings) -> None:
    from tasks.storage import provision_anchor_bucket, provision_export_bucket, s3_client

    s3 = s3_client(settings)
    provision_anchor_bucket(
        s3,
        settings.anchor_bucket,
        mode=settings.lock_mode,
        retention_days=settings.retention_days,
        kms_key_id=settings.anchor_kms_key_id,
    )
    provision_export_bucket(s3, settings.export_bucket)


# ---------------------------------------------------------------- dev stack


def cmd_dev_up(args: argparse.Namespace) -> int:
    from cli.devstack import Stack, StackError, dev_env

    refuse_outside_dev("`compliance dev up`")
    stack = Stack()
    try:
        pg_url = stack.up_postgres()
        _migrate_quietly(pg_url)
        s3_url = stack.up_s3()
        prefect_url = stack.prefect_url_if_running() if args.no_prefect else stack.up_prefect()
    except StackError as exc:
        fail(str(exc), EXIT_FAILED)
    env = dev_env(pg_url, s3_url, prefect_url)
    os.environ.update(env)
    settings = Settings.from_env()
    _provision_buckets(settings)
    if prefect_url:
        _register_in_prefect(env)
    try:
        env["COMPLIANCE_INGEST_URL"], env["COMPLIANCE_INGEST_TOKEN"] = stack.up_ingest(env)
    except StackError as exc:
        fail(str(exc), EXIT_FAILED)
    for name, value in env.items():
        print(f"export {name}={value}")
    if prefect_url:
        print(f"# Prefect UI: {prefect_url.removesuffix('/api')}", file=sys.stderr)
    print(
        "# Emit over HTTP: POST $COMPLIANCE_INGEST_URL/v1/events with 'Authorization: Bearer "
        "$COMPLIANCE_INGEST_TOKEN' (the dev-shell source: every tenant and type)",
        file=sys.stderr,
    )
    return EXIT_OK


def _register_in_prefect(env: dict[str, str]) -> None:
    """Blocks, the signing key, the alert automations and the six deployments, in the stack's Prefect server."""
    from blocks.ledger import register_and_fill
    from deployments.alerts import apply_alerts
    from deployments.definitions import specs
    from tasks.signing import load_signing_key

    register_and_fill(env)
    load_signing_key(Settings.from_env())
    apply_alerts()
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for spec in specs():
            try:  # a deployment already there (e.g. served by `make run` with demo schedules) is left as it is
                client.read_deployment_by_name(f"{spec.name}/{spec.name}")
            except ObjectNotFound:
                spec.to_deployment().apply()


def cmd_dev_down(args: argparse.Namespace) -> int:
    from cli.devstack import Stack

    Stack().down(purge=args.purge)
    print("local stack stopped" + (" and its data deleted" if args.purge else "; data kept"), file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------- schema


def cmd_migrate(args: argparse.Namespace) -> int:
    from tasks.db import owner_connection
    from tasks.schema import apply_migrations

    settings = resolve_settings()
    with owner_connection(settings) as conn:
        applied = apply_migrations(conn)
    print("\n".join(f"applied {f}" for f in applied) or "nothing to apply")
    return EXIT_OK


def cmd_drift(args: argparse.Namespace) -> int:
    from tasks.db import owner_connection
    from tasks.schema import drift_problems, drift_report

    settings = resolve_settings()
    with owner_connection(settings) as conn:
        rows = drift_report(conn)
    bad = drift_problems(rows)
    if args.json:
        print(json.dumps({"ok": not bad, "objects": [r._asdict() for r in rows]}, indent=2))
    else:
        for r in rows:
            print(f"{r.status:<10} {r.migration:<24} {r.kind:<9} {r.name} {r.detail}".rstrip())
        print(f"{len(bad)} problem(s)" if bad else "all APPLIED")
    return EXIT_FAILED if bad else EXIT_OK


def cmd_roles_rotate(args: argparse.Namespace) -> int:
    import secrets

    from psycopg import sql

    from tasks.db import ROLES, owner_connection

    from blocks.ledger import save_role_urls
    from tasks.db import database_url, login_url

    settings = resolve_settings()
    ensure_prefect_api()
    owner = database_url(settings)
    passwords = {role: secrets.token_urlsafe(32) for role in ROLES}
    with owner_connection(settings) as conn:
        for role, password in passwords.items():
            # Open sessions keep running: PostgreSQL checks passwords only at login.
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )
    # The passwords are changed first: should saving the block fail, the command is run again, and no block
    # ever holds a password the database does not know.
    block = save_role_urls(owner, {role: login_url(owner, role, pw) for role, pw in passwords.items()})
    print(
        f"new passwords for {', '.join(ROLES)}; their URLs are in the Prefect block '{block}' at "
        f"{os.environ['PREFECT_API_URL']}, which every flow run reads when it starts. A worker that sets "
        "COMPLIANCE_<ROLE>_DATABASE_URL itself overrides the block: update it there too."
    )
    return EXIT_OK


# ---------------------------------------------------------------- write side


def cmd_emit(args: argparse.Namespace) -> int:
    from compliance.events import EventRefused
    from compliance.jcs import loads_strict
    from tasks.db import connect
    from tasks.outbox import emit

    try:
        payload = loads_strict(args.payload)
    except (ValueError, RecursionError) as exc:
        fail(f'payload: not valid JSON ({exc}); pass a JSON object, e.g. --payload \'{{"userId": "u-1"}}\'')
    event = {
        "tenant_id": args.tenant_id,
        "event_type": args.event_type,
        "actor_type": args.actor_type,
        "actor_id": args.actor_id,
        "source": args.source,
        "payload": payload,
        "occurred_at": args.occurred_at or _now_text(),
    }
    if args.event_id:
        event["event_id"] = args.event_id
    settings = resolve_settings()
    conn = connect(settings, "compliance_writer")
    try:
        with conn.transaction():
            result = emit(conn, event)
    except EventRefused as exc:
        fail(f"{exc.field}: {exc.reason}")
    finally:
        conn.close()
    print(result.event_id)
    if result.duplicate:
        print(f"duplicate: event {result.event_id} is already stored; not stored again", file=sys.stderr)
    return EXIT_OK


def _now_text() -> str:
    from datetime import datetime

    from compliance.timefmt import utc_text

    return utc_text(datetime.now(UTC))


def cmd_drain(args: argparse.Namespace) -> int:
    from flows.drain import drain_outbox

    settings = resolve_settings(prefect=True)
    _ensure_prefect_env()
    result = drain_outbox(run_seconds=0, batch_size=args.batch_size or settings.drain_batch_size)
    print(json.dumps(result))
    return EXIT_OK


def cmd_anchor(args: argparse.Namespace) -> int:
    from flows.anchor import anchor

    resolve_settings(s3=True, prefect=True)
    _ensure_prefect_env()
    result = anchor(allow_lowered_retention=args.i_understand_retention_is_lowered)
    for a in result["anchors"]:
        print(f"anchored {a['cadence_id']}: {a['tenants']} tenants, {a['events']} events, root {a['merkle_root']}")
    if not result["anchors"]:
        print("no tenant grew since the last anchor: nothing written")
    return EXIT_OK


def _ensure_prefect_env() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


# ---------------------------------------------------------------- verification


def cmd_verify_chain(args: argparse.Namespace) -> int:
    from tasks.verify import verify_chain

    settings = resolve_settings(s3=True)
    report = verify_chain(settings, tenant=args.tenant, anchors=True)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_bucket_check(args: argparse.Namespace) -> int:
    from compliance.posture import judge_configured
    from tasks.storage import bucket_facts, s3_client

    settings = resolve_settings(s3=True)
    findings = judge_configured(bucket_facts(s3_client(settings), settings.anchor_bucket), settings)
    ok = all(f.ok for f in findings)
    if args.json:
        print(
            json.dumps(
                {"bucket": settings.anchor_bucket, "ok": ok, "findings": [f._asdict() for f in findings]}, indent=2
            )
        )
    else:
        print(
            f"anchor bucket {settings.anchor_bucket} (stage {settings.stage}, configured {settings.lock_mode} "
            f"{settings.retention_days} days)"
        )
        for f in findings:
            mark = "N/A " if not f.applicable else "OK  " if f.ok else "FAIL"
            print(f"  {mark} {f.check:<20} {f.detail}")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_bucket_provision(args: argparse.Namespace) -> int:
    from tasks.storage import provision_anchor_bucket, s3_client

    settings = resolve_settings(s3=True)
    bucket = args.bucket or settings.anchor_bucket
    created = provision_anchor_bucket(
        s3_client(settings),
        bucket,
        mode=settings.lock_mode,
        retention_days=settings.retention_days,
        kms_key_id=settings.anchor_kms_key_id,
    )
    encryption = f"SSE-KMS {settings.anchor_kms_key_id}" if settings.anchor_kms_key_id else "SSE-S3"
    if created:
        print(f"created: {bucket} ({settings.lock_mode}, {settings.retention_days} days, {encryption})")
    else:
        print(
            f"already exists: {bucket}; policy, encryption ({encryption}), lifecycle and public access block "
            "applied, Object Lock default left as it is (`compliance bucket lock-mode` changes it)"
        )
    return EXIT_OK


def cmd_bucket_lock_mode(args: argparse.Namespace) -> int:
    """Flip the anchor bucket's default Object Lock mode, after the stage is named twice: ``--stage`` must be
    COMPLIANCE_STAGE, and the operator types it again (``--confirm-stage`` in scripts). Recorded as the
    ledger event ``admin.lock_mode_changed``, in the same transaction (no record, no flip)."""
    from dataclasses import replace

    from botocore.exceptions import ClientError

    from tasks.db import owner_connection
    from tasks.operators import LEDGER_TENANT
    from tasks.outbox import emit
    from tasks.sources import default_actor
    from tasks.storage import bucket_facts, s3_client, set_lock_mode

    settings = resolve_settings(s3=True)
    if args.stage != settings.stage:
        fail(f"--stage {args.stage}: this is COMPLIANCE_STAGE={settings.stage}; nothing changed")
    try:
        replace(settings, lock_mode=args.mode).check()
    except SettingsError as exc:
        fail(f"{args.mode}: {exc}; nothing changed")
    typed = args.confirm_stage
    if typed is None:
        print(
            f"This sets the default Object Lock mode of s3://{settings.anchor_bucket} to {args.mode}. Objects "
            "written in COMPLIANCE mode cannot be deleted or shortened by anyone until their retention ends.",
            file=sys.stderr,
        )
        try:
            typed = input(f"Type the stage name ({settings.stage}) to confirm: ").strip()
        except EOFError:
            typed = ""
    if typed != settings.stage:
        fail(f"confirmation {typed!r} is not the stage name {settings.stage!r}; nothing changed")
    by = default_actor()
    s3 = s3_client(settings)
    facts = bucket_facts(s3, settings.anchor_bucket)
    before, days = facts.default_mode, facts.default_days
    with owner_connection(settings) as conn:
        try:
            with conn.transaction():  # the event first: refused, nothing is flipped; the flip refused, no event
                emit(
                    conn,
                    {
                        "tenant_id": LEDGER_TENANT,
                        "occurred_at": _now_text(),
                        "actor_type": "operator",
                        "actor_id": by,
                        "source": "compliance-bucket",
                        "event_type": "admin.lock_mode_changed",
                        "payload": {
                            "bucket": settings.anchor_bucket,
                            "fromMode": before,
                            "toMode": args.mode,
                            "retentionDays": days,
                            "stage": settings.stage,
                            "by": by,
                        },
                    },
                    ledger=True,
                )
                set_lock_mode(s3, settings.anchor_bucket, args.mode)
        except ClientError as exc:
            fail(f"s3://{settings.anchor_bucket} refused the change ({exc}); nothing changed", EXIT_FAILED)
    print(f"s3://{settings.anchor_bucket}: default Object Lock {before} -> {args.mode}, {days} days (recorded)")
    if args.mode != settings.lock_mode:
        print(f"set COMPLIANCE_OBJECT_LOCK_MODE={args.mode} for the anchor flow: it locks each object explicitly")
    return EXIT_OK


def cmd_bucket_policy(args: argparse.Namespace) -> int:
    from compliance.bucket import iam_policy_template

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        fail(str(exc))
    print(json.dumps(iam_policy_template(args.role, settings.anchor_bucket, settings.anchor_kms_key_id), indent=2))
    return EXIT_OK


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from compliance.anchor import public_key_key, public_key_pem
    from tasks.signing import rotate_signing_key, rotation_refusal
    from tasks.storage import s3_client

    settings = resolve_settings(s3=True)
    refusal = rotation_refusal(settings)
    if refusal:
        fail(refusal)
    ensure_prefect_api()
    key = rotate_signing_key()
    s3_client(settings).put_object(
        Bucket=settings.anchor_bucket,
        Key=public_key_key(key.key_id),
        Body=public_key_pem(key.key),
        ContentType="application/x-pem-file",
    )
    print(
        f"new signing key {key.key_id}; public key at s3://{settings.anchor_bucket}/{public_key_key(key.key_id)}; "
        "older keys stay published, so older anchors keep verifying"
    )
    return EXIT_OK


def cmd_export_request(args: argparse.Namespace) -> int:
    from compliance.exports import ExportRefused
    from compliance.operators import OperatorRefused
    from tasks.exports import request_export

    settings = resolve_settings(s3=True)
    try:
        job_id = request_export(
            settings, operator=args.operator, code=args.code, fmt=args.format, filter_text=args.filter
        )
    except (ExportRefused, OperatorRefused) as exc:
        fail(f"{exc.code}: {exc.message}")
    print(job_id)
    if args.run:
        return cmd_export_run(argparse.Namespace(job_id=job_id))
    started = _start_runner_deployment(job_id)
    print(started, file=sys.stderr)
    return EXIT_OK


def _start_runner_deployment(job_id: str) -> str:
    if not os.environ.get("PREFECT_API_URL"):
        return f"queued; no Prefect server configured: run it with `compliance export run {job_id}`"
    try:
        from prefect.deployments import run_deployment

        run = run_deployment("export-runner/export-runner", parameters={"job_id": job_id}, timeout=0)
        return f"queued; export-runner flow run {run.name} started"
    except Exception as exc:  # no deployment yet: the job stays queued, nothing is lost
        return f"queued; could not start the export-runner deployment ({exc}): run `compliance export run {job_id}`"


def cmd_export_run(args: argparse.Namespace) -> int:
    from flows.export import export_runner

    resolve_settings(s3=True, prefect=True)
    _ensure_prefect_env()
    result = export_runner(job_id=args.job_id)
    print(json.dumps(result, indent=2))
    return EXIT_OK if result.get("status") == "complete" else EXIT_FAILED




def cmd_watchdog(args: argparse.Namespace) -> int:
    from flows.watchdog import watchdog

    resolve_settings(s3=True, prefect=True)
    _ensure_prefect_env()
    result = watchdog()
    for figure, state in result["states"].items():
        print(f"{state:<9} {figure:<28} {result['figures'].get(figure)}")
    return EXIT_FAILED if "critical" in result["states"].values() else EXIT_OK


def cmd_alerts_apply(args: argparse.Namespace) -> int:
    from deployments.alerts import apply_alerts

    ensure_prefect_api()
    for name, what in apply_alerts():
        print(f"{what:<8} {name}")
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    from cli.health import collect, render

    settings = resolve_settings()
    report = collect(settings)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        render(report)
    return EXIT_FAILED if report["critical"] else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compliance", description="Tamper-evident compliance ledger.")
    sub = p.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="the local stack").add_subparsers(dest="dev_command", required=True)
    up = dev.add_parser("up", help="start PostgreSQL, S3 and Prefect locally; print export lines")
    up.add_argument("--no-prefect", action="store_true", help="skip the Prefect server")
    up.set_defaults(func=cmd_dev_up)
    down = dev.add_parser("down", help="stop the local stack (keeps data)")
    down.add_argument("--purge", action="store_true", help="also delete its data")
    down.set_defaults(func=cmd_dev_down)

    sub.add_parser("migrate", help="apply pending sql/ migrations").set_defaults(func=cmd_migrate)
    drift = sub.add_parser("drift", help="check every '-- creates:' object exists")
    drift.add_argument("--json", action="store_true")
    drift.set_defaults(func=cmd_drift)
    roles = sub.add_parser("roles").add_subparsers(dest="roles_command", required=True)
    roles.add_parser(
        "rotate", help="new passwords for every role; their URLs go into the compliance-database block"
    ).set_defaults(func=cmd_roles_rotate)

    emit = sub.add_parser("emit", help="emit one event")
    emit.add_argument("--tenant-id", required=True)
    emit.add_argument("--event-type", required=True)
    emit.add_argument("--actor-type", required=True)
    emit.add_argument("--actor-id", required=True)
    emit.add_argument("--source", required=True)
    emit.add_argument("--occurred-at")
    emit.add_argument("--event-id")
    emit.add_argument("--payload", required=True, help="a JSON object")
    emit.set_defaults(func=cmd_emit)

    drain = sub.add_parser("drain", help="run the drain-outbox flow once, now")
    drain.add_argument("--batch-size", type=int)
    drain.set_defaults(func=cmd_drain)
    anchor = sub.add_parser("anchor", help="run the anchor flow once, now")
    anchor.add_argument(
        "--i-understand-retention-is-lowered",
        action="store_true",
        help="in prod, lock new anchors for less than the last one (recorded as admin.retention_lowered)",
    )
    anchor.set_defaults(func=cmd_anchor)
    sub.add_parser("watchdog", help="run the watchdog flow once, now").set_defaults(func=cmd_watchdog)
    alerts = sub.add_parser("alerts", help="the alert automations").add_subparsers(dest="alerts_command", required=True)
    alerts.add_parser("apply", help="create or update every alert automation (idempotent)").set_defaults(
        func=cmd_alerts_apply
    )

    export = sub.add_parser("export", help="exports for auditors").add_subparsers(dest="export_command", required=True)
    er = export.add_parser("request", help="queue an export (and start the export-runner deployment)")
    add_operator_arguments(er)
    er.add_argument("--format", required=True, choices=["csv", "ndjson", "parquet"])
    er.add_argument("--filter", required=True, help='JSON, e.g. {"since": "...", "until": "...", "tenant_id": "t"}')
    er.add_argument("--run", action="store_true", help="run the job here and now instead of via the deployment")
    er.set_defaults(func=cmd_export_request)
    es = export.add_parser("status", help="state, format, rows and age")
    es.add_argument("job_id")
    es.add_argument("--json", action="store_true")
    es.set_defaults(func=cmd_export_status)
    el = export.add_parser("list", help="the newest jobs: id, operator, format, state, rows and age")
    el.add_argument("--limit", type=int, default=50)
    el.add_argument("--json", action="store_true")
    el.set_defaults(func=cmd_export_list)
    eu = export.add_parser("url", help="a fresh 15-minute download link for a complete export (audited, not stored)")
    eu.add_argument("job_id")
    add_operator_arguments(eu)
    eu.set_defaults(func=cmd_export_url)
    erun = export.add_parser("run", help="run a queued export job here and now")
    erun.add_argument("job_id")
    erun.set_defaults(func=cmd_export_run)

    events = sub.add_parser("events").add_subparsers(dest="events_command", required=True)
    ls = events.add_parser("list", help="list chained events, newest first (by default the last 7 days)")
    add_operator_arguments(ls)
    ls.add_argument("--tenant", help="one tenant (without it: every tenant, which needs a cross-tenant grant)")
    ls.add_argument("--since", help="RFC 3339; default 7 days before --until")
    ls.add_argument("--until", help="RFC 3339; default now")
    ls.add_argument("--event-type", action="append")
    ls.add_argument("--actor-type", action="append")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_events_list)
    show = events.add_parser("show", help="one event with its chain position and anchor status")
    show.add_argument("event_id", nargs="?", help="the event's id (or give --tenant and --seq)")
    add_operator_arguments(show)
    show.add_argument("--tenant")
    show.add_argument("--seq", type=int, help="the event's position in the tenant's chain")
    show.add_argument("--prev", action="store_true", help="show the event before it in its chain")
    show.add_argument("--payload", action="store_true", help="also show the payload (recorded in the ledger)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_events_show)

    verify = sub.add_parser("verify").add_subparsers(dest="verify_command", required=True)
    vc = verify.add_parser("chain", help="recompute every hash and link from the database")
    vc.add_argument("--tenant")
    vc.add_argument("--json", action="store_true")
    vc.set_defaults(func=cmd_verify_chain)
    ve = verify.add_parser("export", help="check an export against the anchors its trust file pins (as ledger-verify)")
    add_export_arguments(ve)
    ve.set_defaults(func=cmd_verify_export)
    add_trust_commands(sub)

    bucket = sub.add_parser("bucket", help="the anchor bucket's posture").add_subparsers(
        dest="bucket_command", required=True
    )
    bc = bucket.add_parser(
        "check", help="Object Lock, retention, versioning, public access, encryption, policy, TLS, lifecycle"
    )
    bc.add_argument("--json", action="store_true")
    bc.set_defaults(func=cmd_bucket_check)
    bp = bucket.add_parser("provision", help="create the anchor bucket in its WORM posture")
    bp.add_argument("--bucket", help="name (default COMPLIANCE_ANCHOR_BUCKET)")
    bp.set_defaults(func=cmd_bucket_provision)
    blm = bucket.add_parser("lock-mode", help="change the bucket's default Object Lock mode (typed confirmation)")
    blm.add_argument("mode", choices=["GOVERNANCE", "COMPLIANCE"])
    blm.add_argument("--stage", required=True, help="the stage this is meant for; must be COMPLIANCE_STAGE")
    blm.add_argument("--confirm-stage", help="the stage name again, instead of typing it at the prompt")
    blm.set_defaults(func=cmd_bucket_lock_mode)
    bpol = bucket.add_parser("policy", help="print the IAM policy template of a role that uses the bucket (JSON)")
    bpol.add_argument("--role", required=True, choices=IAM_ROLES)
    bpol.set_defaults(func=cmd_bucket_policy)
    keys = sub.add_parser("keys", help="the anchor signing key").add_subparsers(dest="keys_command", required=True)
    keys.add_parser("rotate", help="a new signing key; the old public keys stay published").set_defaults(
        func=cmd_keys_rotate
    )

    add_operator_parsers(sub)
    from cli.sources import register as register_sources

    register_sources(sub)

    health = sub.add_parser("health", help="one screen of the ledger's state; exit 1 when anything is critical")
    health.add_argument("--json", action="store_true")
    health.set_defaults(func=cmd_health)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
