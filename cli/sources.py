"""`compliance sources ...`: the ingest service's per-source API tokens (the service: `python -m ingest`).

    compliance sources add billing-worker --tenant acme --tenant globex [--event-type auth.signout ...]
    compliance sources add demo --all-tenants          # every tenant, every registered type
    compliance sources rotate billing-worker           # a new token; the old one fails at once
    compliance sources revoke billing-worker           # the token fails at once
    compliance sources list [--json]

`add` and `rotate` print the token once, on stdout; only its SHA-256 is kept. Each change is an
`admin.source_changed` event of tenant `ledger:platform`. Refusals exit 2 naming what to change.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    """Add `sources` (and `ingest`) to the top-level subparsers of `compliance`."""
    sources = sub.add_parser("sources", help="the ingest service's per-source API tokens").add_subparsers(
        dest="sources_command", required=True
    )
    add = sources.add_parser("add", help="a new source and its token (printed once)")
    add.add_argument("name")
    scope = add.add_mutually_exclusive_group(required=True)
    scope.add_argument("--tenant", action="append", help="a tenant it may write (repeat for more)")
    scope.add_argument("--all-tenants", action="store_true", help="it may write every tenant")
    add.add_argument("--event-type", action="append", help="a type it may write (repeat; default: every type)")
    add.add_argument("--by", help="who makes the change (recorded; default: cli:<login>)")
    add.set_defaults(func=cmd_sources_add)
    rotate = sources.add_parser("rotate", help="a new token for a source; the old one fails at once")
    rotate.add_argument("name")
    rotate.add_argument("--by")
    rotate.set_defaults(func=cmd_sources_rotate)
    revoke = sources.add_parser("revoke", help="refuse a source's token from now on")
    revoke.add_argument("name")
    revoke.add_argument("--by")
    revoke.set_defaults(func=cmd_sources_revoke)
    ls = sources.add_parser("list", help="the sources, their scopes and states (never a token)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_sources_list)


def _settings() -> Any:
    from cli.main import resolve_settings

    return resolve_settings()


def _change(change: Any, done: str) -> int:
    """Run one source change; print its token (if it makes one) on stdout and ``done`` on stderr. A refusal
    exits 2 with its message."""
    from cli.main import EXIT_OK, fail
    from tasks.sources import SourceError

    try:
        token = change(_settings())
    except SourceError as exc:
        fail(str(exc))
    if token is not None:
        print(token)
    print(done, file=sys.stderr)
    return EXIT_OK


def cmd_sources_add(args: argparse.Namespace) -> int:
    from cli.main import fail
    from compliance.events import Registry
    from compliance.ingest import SourceNameError, check_scope_lists, check_source_name
    from tasks.sources import add_source

    try:
        check_source_name(args.name)
        scope = check_scope_lists(None if args.all_tenants else args.tenant, args.event_type)
    except SourceNameError as exc:
        fail(str(exc))
    unknown = sorted(set(scope.event_types or ()) - set(Registry.default().names()))
    if unknown:
        fail(f"--event-type {unknown[0]!r} is not a registered event type")
    return _change(
        lambda settings: add_source(settings, args.name, scope, by=args.by),
        f"source {args.name!r} added; the token above is shown once (export COMPLIANCE_INGEST_TOKEN=...)",
    )


def cmd_sources_rotate(args: argparse.Namespace) -> int:
    from tasks.sources import rotate_source

    return _change(
        lambda settings: rotate_source(settings, args.name, by=args.by),
        f"source {args.name!r}: new token above (shown once); the old token is refused from now on",
    )


def cmd_sources_revoke(args: argparse.Namespace) -> int:
    from tasks.sources import revoke_source

    return _change(
        lambda settings: revoke_source(settings, args.name, by=args.by),
        f"source {args.name!r} revoked; its token is refused from now on",
    )


def cmd_sources_list(args: argparse.Namespace) -> int:
    from cli.main import EXIT_OK
    from tasks.sources import list_sources

    rows = [s._asdict() for s in list_sources(_settings())]
    for r in rows:
        r["state"] = "revoked" if r["revoked_at"] else "active"
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return EXIT_OK
    for r in rows:
        tenants = "*" if r["tenants"] is None else ",".join(r["tenants"])
        types = "*" if r["event_types"] is None else ",".join(r["event_types"])
        print(f"{r['name']}\t{r['state']}\ttenants={tenants}\ttypes={types}\tcreated={r['created_at']:%Y-%m-%d %H:%M}")
    if not rows:
        print("no sources; `compliance sources add NAME --tenant T` makes one", file=sys.stderr)
    return EXIT_OK
