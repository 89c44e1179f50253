"""The operator commands: enrolment (`compliance operators ...`) and the actions that carry an operator's address
and one-time code (`compliance events list/show`, `compliance export url/status`). Every refusal exits 2 with its
docs/format.md §4 code."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from compliance.display import safe_text
from compliance.operators import OperatorRefused, normalise_address

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
T = TypeVar("T")


def _fail(message: str, code: int = EXIT_REFUSED) -> Any:
    from cli.main import fail

    return fail(message, code)


def _settings(*, s3: bool = False) -> Any:
    from cli.main import resolve_settings

    return resolve_settings(s3=s3)


def add_operator_arguments(parser: argparse.ArgumentParser) -> None:
    """--operator and --code, as every operator action takes them."""
    parser.add_argument("--operator", required=True, metavar="EMAIL", help="your enrolled operator address")
    parser.add_argument(
        "--code", required=True, metavar="CODE", help="the 6-digit code your authenticator app shows now (used once)"
    )


# ---------------------------------------------------------------- enrolment (owner)


def cmd_operators_add(args: argparse.Namespace) -> int:
    from tasks.operators import OperatorError, enrol

    settings = _settings()
    try:
        enrolment = enrol(
            settings, args.email, cross_tenant=args.cross_tenant, tenants=args.tenant or [], rotate=args.rotate
        )
    except (OperatorError, ValueError) as exc:
        _fail(str(exc))
    print_enrolment(enrolment.address, enrolment.uri)
    return EXIT_OK


def print_enrolment(address: str, uri: str) -> None:
    from compliance.operators import enrolment_qr

    print(f"operator {address} enrolled; scan this into an authenticator app now (it is shown only once):")
    print(enrolment_qr(uri))
    print(uri)


def cmd_operators_grant(args: argparse.Namespace) -> int:
    return _regrant(args, adding=True)


def cmd_operators_revoke(args: argparse.Namespace) -> int:
    return _regrant(args, adding=False)


def _regrant(args: argparse.Namespace, *, adding: bool) -> int:
    from tasks.operators import OperatorError, grant, revoke

    settings = _settings()
    try:
        row = (grant if adding else revoke)(
            settings, args.email, tenants=args.tenant or [], cross_tenant=args.cross_tenant
        )
    except OperatorError as exc:
        _fail(str(exc))
    print(f"{row.address}: {_grants(row.cross_tenant, row.tenants)}")
    return EXIT_OK


def _grants(cross_tenant: bool, tenants: list[str]) -> str:
    if cross_tenant:
        return "cross-tenant (every tenant)"
    return "tenants " + ", ".join(tenants) if tenants else "no grants"


def cmd_operators_remove(args: argparse.Namespace) -> int:
    from tasks.operators import OperatorError, remove

    settings = _settings()
    try:
        remove(settings, args.email)
    except OperatorError as exc:
        _fail(str(exc))
    print(f"{normalise_address(args.email)}: removed (its secret and grants are deleted; the ledger keeps the event)")
    return EXIT_OK


def cmd_operators_list(args: argparse.Namespace) -> int:
    from compliance.timefmt import utc_text
    from tasks.operators import list_operators

    rows = list_operators(_settings())
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "address": r.address,
                        "cross_tenant": r.cross_tenant,
                        "tenants": r.tenants,
                        "enrolled_at": utc_text(r.enrolled_at),
                        "locked_until": utc_text(r.locked_until) if r.locked_until else None,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return EXIT_OK
    for r in rows:
        locked = f"\tLOCKED until {r.locked_until:%Y-%m-%dT%H:%M:%SZ}" if r.locked_until else ""
        print(f"{r.address}\t{_grants(r.cross_tenant, r.tenants)}{locked}")
    print(f"{len(rows)} operator(s)", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------- operator actions


def _refused(exc: OperatorRefused) -> Any:
    return _fail(f"{exc.code}: {exc.message}")


def _as_operator(call: Callable[[], T], value_error_exit: int = EXIT_REFUSED) -> T:
    """``call()``, an operator's read or link: a refused code or grant exits 2 naming its code; a request that
    cannot be answered as asked (ValueError) exits ``value_error_exit`` with its message."""
    try:
        return call()
    except OperatorRefused as exc:
        return _refused(exc)  # type: ignore[no-any-return]
    except ValueError as exc:
        return _fail(str(exc), value_error_exit)  # type: ignore[no-any-return]


def cmd_events_list(args: argparse.Namespace) -> int:
    from tasks.reads import list_events

    settings = _settings()
    listed = _as_operator(
        lambda: list_events(
            settings,
            operator=args.operator,
            code=args.code,
            tenant=args.tenant,
            since=args.since,
            until=args.until,
            event_types=args.event_type,
            actor_types=args.actor_type,
            limit=args.limit,
        )
    )
    if args.json:
        print(json.dumps(listed, indent=2))
        return EXIT_OK
    for r in listed["events"]:
        print(
            "\t".join(
                safe_text(v)
                for v in (
                    r["tenant_id"],
                    r["seq"],
                    r["occurred_at"],
                    r["event_type"],
                    f"{r['actor_type']}:{r['actor_id']}",
                    r["event_id"],
                    r["anchor"],
                )
            )
        )
    default = " (the last 7 days; --since/--until to change)" if not (args.since or args.until) else ""
    print(
        f"{len(listed['events'])} event(s) from {listed['since']} to {listed['until']}{default}, newest first",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_events_show(args: argparse.Namespace) -> int:
    from tasks.reads import show_event

    if bool(args.event_id) == bool(args.tenant and args.seq):
        _fail("name one event: EVENT_ID, or --tenant T --seq N")
    settings = _settings()
    detail = _as_operator(
        lambda: show_event(
            settings,
            operator=args.operator,
            code=args.code,
            event_id=args.event_id,
            tenant=args.tenant,
            seq=args.seq,
            prev=args.prev,
            payload=args.payload,
        )
    )
    if not detail.get("found"):
        _fail(detail.get("reason", "not found"), EXIT_FAILED)
    if args.json:
        print(json.dumps(detail, indent=2))
        return EXIT_OK
    for key, value in detail.items():
        if key not in ("found", "range_first_seq", "range_last_seq"):
            print(f"{key:>16}: {safe_text(value)}")
    return EXIT_OK


def cmd_export_url(args: argparse.Namespace) -> int:
    from tasks.exports import fresh_url

    settings = _settings(s3=True)
    url, expires = _as_operator(lambda: fresh_url(settings, args.job_id, args.operator, args.code), EXIT_FAILED)
    print(url)
    print(f"valid until {expires}; this link was recorded in the ledger and is not stored", file=sys.stderr)
    return EXIT_OK


def cmd_export_status(args: argparse.Namespace) -> int:
    from tasks.exports import public_status

    status = public_status(_settings(), args.job_id)
    if status is None:
        _fail(f"no export job {args.job_id}", EXIT_FAILED)
    if args.json:
        print(json.dumps(status, indent=2))
        return EXIT_OK
    print(f"{'job_id':>8}: {status['job_id']}")
    print(f"{'state':>8}: {status['status']}")
    print(f"{'format':>8}: {status['format']}")
    print(f"{'rows':>8}: {'' if status['rows'] is None else status['rows']}")
    print(f"{'age':>8}: {_age(status['age_seconds'])}")
    return EXIT_OK


def cmd_export_list(args: argparse.Namespace) -> int:
    from tasks.exports import recent_jobs

    jobs = recent_jobs(_settings(), args.limit)
    if args.json:
        print(json.dumps(jobs, indent=2))
        return EXIT_OK
    for job in jobs:
        rows = "" if job["rows"] is None else job["rows"]
        print(
            f"{job['job_id']}\t{job['operator']}\t{job['format']}\t{job['status']}\t{rows}\t{_age(job['age_seconds'])}"
        )
    print(f"{len(jobs)} job(s), newest first", file=sys.stderr)
    return EXIT_OK


def _age(seconds: int) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m{s:02d}s" if hours else f"{m}m{s:02d}s"


def add_parsers(sub: Any) -> None:
    """`compliance operators ...`."""
    ops = sub.add_parser("operators", help="enrol operators and their grants (needs the owner's database URL)")
    osub = ops.add_subparsers(dest="operators_command", required=True)
    add = osub.add_parser("add", help="enrol an operator; prints its one-time-code secret once (URI and QR code)")
    add.add_argument("email")
    add.add_argument("--cross-tenant", action="store_true", help="may read and export every tenant")
    add.add_argument("--tenant", action="append", metavar="T", help="a tenant it may read and export (repeatable)")
    add.add_argument("--rotate", action="store_true", help="a new secret for an enrolled operator (lost device)")
    add.set_defaults(func=cmd_operators_add)
    for name, func, verb in (
        ("grant", cmd_operators_grant, "add"),
        ("revoke", cmd_operators_revoke, "take away"),
    ):
        p = osub.add_parser(name, help=f"{verb} tenant or cross-tenant grants")
        p.add_argument("email")
        p.add_argument("--cross-tenant", action="store_true")
        p.add_argument("--tenant", action="append", metavar="T")
        p.set_defaults(func=func)
    rm = osub.add_parser("remove", help="unenrol an operator (secret and grants deleted)")
    rm.add_argument("email")
    rm.set_defaults(func=cmd_operators_remove)
    ls = osub.add_parser("list", help="enrolled operators, their grants and lock-outs")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_operators_list)
