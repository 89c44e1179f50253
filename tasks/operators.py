"""Operator enrolment (with the owner's connection) and the code check every operator action makes first.

Every enrolment change commits together with its ledger event (``admin.operator_changed``, tenant
``ledger:platform``). :func:`authenticate` runs in a transaction of its own, so the failure count of a refused
code commits even though the caller then stops.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg

from compliance.operators import (
    TENANT_ID,
    OperatorRefused,
    checked_address,
    enrolment_uri,
    new_secret,
    normalise_address,
)
from compliance.settings import Settings
from tasks.db import connect, owner_connection
from tasks.outbox import emit

__all__ = [
    "LEDGER_TENANT",
    "Enrolment",
    "OperatorRow",
    "authenticate",
    "enrol",
    "grant",
    "list_operators",
    "remove",
    "revoke",
]

LEDGER_TENANT = "ledger:platform"


class OperatorRow(NamedTuple):
    address: str
    cross_tenant: bool
    tenants: list[str]
    enrolled_at: datetime
    changed_at: datetime
    locked_until: datetime | None


class Enrolment(NamedTuple):
    address: str
    secret: bytes
    uri: str


class OperatorError(ValueError):
    """An enrolment command that cannot be done as asked; the message says what to change. Nothing written."""


def authenticate(
    settings: Settings, address: str | None, code: str | None, *, tenants: Sequence[str] = (), cross_tenant: bool
) -> str:
    """Check ``code`` for ``address`` and its grants on ``tenants`` (or across tenants); the normalised address.
    Raises :class:`OperatorRefused`."""
    addr = normalise_address(address)
    with connect(settings, "compliance_operator", autocommit=True) as conn:
        verdict = conn.execute(
            "SELECT compliance.operator_authenticate(%s, %s, %s, %s)",
            (addr, (code or "").strip(), list(tenants), cross_tenant),
        ).fetchone()[0]  # type: ignore[index]
    if verdict != "OK":
        raise OperatorRefused.from_verdict(verdict)
    return addr


def _changed(
    conn: psycopg.Connection,
    address: str,
    change: str,
    *,
    tenants: Sequence[str],
    cross_tenant: bool,
    by: str | None,
) -> None:
    emit(
        conn,
        {
            "tenant_id": LEDGER_TENANT,
            "occurred_at": datetime.now(UTC),
            "actor_type": "operator",
            "actor_id": by or _login(),
            "source": "compliance-operators",
            "event_type": "admin.operator_changed",
            "payload": {
                "operator": address,
                "change": change,
                "tenants": sorted(tenants),
                "crossTenant": cross_tenant,
                "by": by or _login(),
            },
        },
        ledger=True,
    )


def _login() -> str:
    """Who made an enrolment change: the login running the command (a container may have no name for it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown-login"


def _tenants(tenants: Sequence[str]) -> list[str]:
    bad = [t for t in tenants if not TENANT_ID.fullmatch(t)]
    if bad:
        raise OperatorError(f"tenant {bad[0]!r}: use 1 to 128 characters of A-Z a-z 0-9 . _ : -")
    return sorted(set(tenants))


def _current(conn: psycopg.Connection, address: str) -> tuple[bool, list[str]]:
    row = conn.execute(
        "SELECT cross_tenant, tenants FROM compliance.operators WHERE address = %s FOR UPDATE", (address,)
    ).fetchone()
    if row is None:
        raise OperatorError(f"{address} is not enrolled; enrol it with `compliance operators add {address}`")
    return bool(row[0]), list(row[1])


def enrol(
    settings: Settings,
    address: str,
    *,
    cross_tenant: bool = False,
    tenants: Sequence[str] = (),
    rotate: bool = False,
    by: str | None = None,
) -> Enrolment:
    """Enrol ``address`` with a new secret (or, with ``rotate``, give an enrolled one a new secret, keeping its
    grants and clearing its lock-out). The secret is returned once and never readable again."""
    addr = checked_address(address)
    wanted = _tenants(tenants)
    secret = new_secret()
    with owner_connection(settings) as conn, conn.transaction():
        exists = conn.execute("SELECT 1 FROM compliance.operators WHERE address = %s", (addr,)).fetchone()
        if rotate:
            if exists is None:
                raise OperatorError(f"{addr} is not enrolled; enrol it with `compliance operators add {addr}`")
            if wanted or cross_tenant:
                raise OperatorError("--rotate keeps the grants; change them with `compliance operators grant/revoke`")
            cross_tenant, wanted = _current(conn, addr)
            conn.execute(
                "UPDATE compliance.operator_secrets SET secret = %s, last_step = NULL, locked_until = NULL "
                "WHERE address = %s",
                (secret, addr),
            )
            conn.execute("DELETE FROM compliance.operator_failures WHERE address = %s", (addr,))
            conn.execute("UPDATE compliance.operators SET changed_at = clock_timestamp() WHERE address = %s", (addr,))
            change = "secret-rotated"
        else:
            if exists is not None:
                raise OperatorError(
                    f"{addr} is already enrolled; for a lost authenticator use `compliance operators add {addr} "
                    "--rotate`, to change grants `compliance operators grant/revoke`"
                )
            conn.execute(
                "INSERT INTO compliance.operators (address, cross_tenant, tenants) VALUES (%s, %s, %s)",
                (addr, cross_tenant, wanted),
            )
            conn.execute("INSERT INTO compliance.operator_secrets (address, secret) VALUES (%s, %s)", (addr, secret))
            change = "enrolled"
        _changed(conn, addr, change, tenants=wanted, cross_tenant=cross_tenant, by=by)
    return Enrolment(addr, secret, enrolment_uri(addr, secret))


def grant(
    settings: Settings, address: str, *, tenants: Sequence[str] = (), cross_tenant: bool = False, by: str | None = None
) -> OperatorRow:
    return _regrant(settings, address, tenants, cross_tenant, adding=True, by=by)


def revoke(
    settings: Settings, address: str, *, tenants: Sequence[str] = (), cross_tenant: bool = False, by: str | None = None
) -> OperatorRow:
    return _regrant(settings, address, tenants, cross_tenant, adding=False, by=by)


def _regrant(
    settings: Settings,
    address: str,
    tenants: Sequence[str],
    cross_tenant: bool,
    *,
    adding: bool,
    by: str | None,
) -> OperatorRow:
    addr = normalise_address(address)
    named = _tenants(tenants)
    verb = "grant" if adding else "revoke"
    if not named and not cross_tenant:
        raise OperatorError(f"name what to {verb}: --tenant T (repeatable) and/or --cross-tenant")
    with owner_connection(settings) as conn, conn.transaction():
        cross, held = _current(conn, addr)
        if adding:
            new_cross, new_tenants = cross or cross_tenant, sorted(set(held) | set(named))
        else:
            new_cross, new_tenants = cross and not cross_tenant, sorted(set(held) - set(named))
        conn.execute(
            "UPDATE compliance.operators SET cross_tenant = %s, tenants = %s, changed_at = clock_timestamp() "
            "WHERE address = %s",
            (new_cross, new_tenants, addr),
        )
        _changed(conn, addr, "granted" if adding else "revoked", tenants=named, cross_tenant=cross_tenant, by=by)
    return next(r for r in list_operators(settings) if r.address == addr)


def remove(settings: Settings, address: str, *, by: str | None = None) -> None:
    """Unenrol ``address``: its secret, grants and failure count are deleted; the ledger keeps the event."""
    addr = normalise_address(address)
    with owner_connection(settings) as conn, conn.transaction():
        cross, held = _current(conn, addr)
        conn.execute("DELETE FROM compliance.operators WHERE address = %s", (addr,))
        _changed(conn, addr, "removed", tenants=held, cross_tenant=cross, by=by)


def list_operators(settings: Settings) -> list[OperatorRow]:
    with owner_connection(settings) as conn:
        rows: list[Any] = conn.execute(
            "SELECT o.address, o.cross_tenant, o.tenants, o.enrolled_at, o.changed_at, "
            "CASE WHEN s.locked_until > clock_timestamp() THEN s.locked_until END "
            "FROM compliance.operators o JOIN compliance.operator_secrets s USING (address) ORDER BY o.address"
        ).fetchall()
    return [OperatorRow(r[0], r[1], list(r[2]), r[3], r[4], r[5]) for r in rows]
