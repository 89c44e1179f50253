"""PostgreSQL connections, each acting as one least-privilege role.

``connect(settings, role=...)`` opens a psycopg connection. With a per-role URL
configured (``COMPLIANCE_<ROLE>_DATABASE_URL``) it logs in as that role. In
the ``dev`` stage, without one, it logs in with ``COMPLIANCE_DATABASE_URL``
(the owner) and does ``SET ROLE`` before handing the connection over, so every
query still runs with only that role's grants. In ``staging`` and ``prod`` a
role's own URL is required and its absence refuses naming the variable: a
flow that logs in as the owner could disable the immutability triggers, and
``SET ROLE`` is one statement away from ``RESET ROLE``. The owner's URL is for
administration (``compliance migrate``, ``roles rotate``, operator enrolment).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from compliance.settings import Settings, SettingsError

__all__ = ["ROLES", "connect", "database_url", "owner_connection", "role_url", "role_url_variable"]

ROLES = (
    "compliance_writer",
    "compliance_drainer",
    "compliance_reader",
    "compliance_anchorer",
    "compliance_exporter",
    "compliance_watchdog",
    "compliance_operator",
)


def utc_text_sql(column: str) -> str:
    """SQL for a timestamptz ``column`` in the docs/format.md §1 text form (``YYYY-MM-DDTHH:MM:SS.ffffffZ``), whatever
    the session's time zone: the server formats it, so no datetime is built per row."""
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


# The whole days an anchor row's lock runs from its anchored_at: what the anchor was written with.
LOCKED_DAYS_SQL = "floor(extract(epoch FROM retain_until - anchored_at) / 86400)::integer"


def database_url(settings: Settings) -> str:
    if not settings.database_url:
        raise SettingsError(
            "COMPLIANCE_DATABASE_URL (the owner's PostgreSQL URL) is not set"
            + ('; run `eval "$(compliance dev up)"` or point it at PostgreSQL' if settings.stage == "dev" else "")
        )
    return settings.database_url


def login_url(owner_url: str, role: str, password: str) -> str:
    """``owner_url`` with ``role`` and ``password`` as its login (same host, port, database and options)."""
    parts = urlsplit(owner_url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def role_url_variable(role: str) -> str:
    """The environment variable holding ``role``'s own URL, e.g. COMPLIANCE_DRAINER_DATABASE_URL."""
    return f"COMPLIANCE_{role.removeprefix('compliance_').upper()}_DATABASE_URL"


def role_url(settings: Settings, role: str) -> str | None:
    """``role``'s own URL; None in dev when it has none (the owner's login then does SET ROLE). Outside dev a
    missing one raises :class:`SettingsError` naming the variable."""
    url = settings.role_urls.get(role)
    if url is None and settings.stage != "dev":
        raise SettingsError(
            f"{role_url_variable(role)} is not set: in {settings.stage} every flow logs in as its own role, never "
            f"as the owner; create a login for {role} (`compliance roles rotate` sets its password) and set "
            f"{role_url_variable(role)} to its PostgreSQL URL"
        )
    return url


def connect(settings: Settings, role: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
    """A connection acting as ``role`` (None: the owner), with the session in UTC."""
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    url = role_url(settings, role) if role else None
    conn = psycopg.connect(url or database_url(settings), autocommit=True, application_name=role or "compliance")
    try:
        conn.execute("SET TIME ZONE 'UTC'")
        if role and not url:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        conn.autocommit = autocommit
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def owner_connection(settings: Settings) -> Iterator[psycopg.Connection]:
    conn = connect(settings, None, autocommit=True)
    try:
        yield conn
    finally:
        conn.close()
