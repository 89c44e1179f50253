"""Applying migrations and probing for drift (docs/architecture.md, Migrations)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import psycopg

from compliance.migrations import CreatedObject, Migration, load_migrations

__all__ = ["SQL_DIR", "DriftRow", "apply_migrations", "drift_report"]

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_LOCK_KEY = 0x636F6D706C  # advisory lock: one migrator at a time

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS compliance;
CREATE TABLE IF NOT EXISTS compliance.schema_migrations (
    version    integer     PRIMARY KEY,
    filename   text        NOT NULL,
    sha256     text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""


def apply_migrations(conn: psycopg.Connection, directory: Path = SQL_DIR) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; returns the files applied."""
    migrations = load_migrations(directory)
    applied: list[str] = []
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        conn.execute(_BOOTSTRAP)
        done = {v for (v,) in conn.execute("SELECT version FROM compliance.schema_migrations")}
        for m in migrations:
            if m.version in done:
                continue
            with conn.transaction():
                conn.execute(m.sql)  # type: ignore[arg-type]
                conn.execute(
                    "INSERT INTO compliance.schema_migrations (version, filename, sha256) VALUES (%s, %s, %s)",
                    (m.version, m.filename, m.sha256),
                )
            applied.append(m.filename)
        sync_event_types(conn)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


def sync_event_types(conn: psycopg.Connection) -> int:
    """Make compliance.event_types (read by the SQL emit function) equal the registry data."""
    import json

    from compliance.events import registry_data

    if conn.execute("SELECT to_regclass('compliance.event_types')").fetchone()[0] is None:  # type: ignore[index]
        return 0
    types = registry_data()
    with conn.transaction():
        conn.execute("DELETE FROM compliance.event_types WHERE NOT (event_type = ANY(%s))", (list(types),))
        for name, spec in types.items():
            conn.execute(
                "INSERT INTO compliance.event_types (event_type, keep, caps, urls) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (event_type) DO UPDATE SET keep = excluded.keep, caps = excluded.caps, urls = excluded.urls",
                (name, list(spec.get("keep", [])), json.dumps(spec.get("caps", {})), list(spec.get("urls", []))),
            )
    return len(types)


class DriftRow(NamedTuple):
    migration: str
    kind: str
    name: str
    status: str  # APPLIED, MISSING, MODIFIED, UNVERIFIED, PENDING
    detail: str


def _split(name: str) -> tuple[str, str]:
    schema, _, obj = name.rpartition(".")
    return (schema or "public"), obj


# The catalog of a table's named members and the test for one of them, by marker kind.
_MEMBER_CATALOGS = {
    "trigger": ("pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid", "t.tgname = %s AND NOT t.tgisinternal"),
    "constraint": ("pg_constraint t JOIN pg_class c ON c.oid = t.conrelid", "t.conname = %s"),
}


def _probe(conn: psycopg.Connection, obj: CreatedObject) -> bool:
    kind, name = obj
    if kind == "schema":
        q, args = "SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)
    elif kind == "role":
        q, args = "SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)
    elif kind in _MEMBER_CATALOGS:
        table, _, member = name.partition("/")
        schema, rel = _split(table)
        catalog, named = _MEMBER_CATALOGS[kind]
        q = (
            f"SELECT 1 FROM {catalog} JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE n.nspname = %s AND c.relname = %s AND {named}"
        )
        args = (schema, rel, member)
    elif kind == "function":
        schema, fn = _split(name.split("(")[0])
        q = "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname = %s"
        args = (schema, fn)
    elif kind == "type":
        schema, typ = _split(name)
        q = "SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = %s AND t.typname = %s"
        args = (schema, typ)
    else:
        relkind = {"table": ("r", "p"), "index": ("i", "I"), "view": ("v", "m"), "sequence": ("S",)}[kind]
        schema, rel = _split(name)
        q = (
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = ANY(%s)"
        )
        args = (schema, rel, list(relkind))
    return conn.execute(q, args).fetchone() is not None


def drift_problems(rows: list[DriftRow]) -> list[DriftRow]:
    """The rows that stop a deploy and fail the drift check: anything but APPLIED. A PENDING migration is
    code that expects a schema the database does not have yet; UNVERIFIED cannot be probed at all."""
    return [r for r in rows if r.status != "APPLIED"]


def drift_report(conn: psycopg.Connection, directory: Path = SQL_DIR) -> list[DriftRow]:
    """Every declared object probed by kind; changed files MODIFIED; unapplied files PENDING."""
    migrations: list[Migration] = load_migrations(directory)
    recorded: dict[int, str] = {}
    if conn.execute("SELECT to_regclass('compliance.schema_migrations')").fetchone()[0] is not None:  # type: ignore[index]
        recorded = dict(conn.execute("SELECT version, sha256 FROM compliance.schema_migrations").fetchall())
    # An object that an applied later migration drops is expected gone.
    dropped_by = {obj: m.filename for m in migrations if m.version in recorded for obj in m.drops}
    rows: list[DriftRow] = []
    for m in migrations:
        if m.version not in recorded:
            rows.append(DriftRow(m.filename, "-", "-", "PENDING", "not applied yet; run `compliance migrate`"))
            continue
        if recorded[m.version] != m.sha256:
            rows.append(
                DriftRow(
                    m.filename,
                    "-",
                    "-",
                    "MODIFIED",
                    f"file sha256 {m.sha256[:12]}… differs from applied {recorded[m.version][:12]}…",
                )
            )
        if not m.creates:
            rows.append(DriftRow(m.filename, "-", "-", "UNVERIFIED", "no '-- creates:' marker"))
        for obj in m.creates:
            present = _probe(conn, obj)
            dropper = dropped_by.get(obj)
            if dropper is None:
                rows.append(DriftRow(m.filename, obj.kind, obj.name, "APPLIED" if present else "MISSING", ""))
            elif present:
                rows.append(DriftRow(m.filename, obj.kind, obj.name, "MODIFIED", f"present, but {dropper} drops it"))
            else:
                rows.append(DriftRow(m.filename, obj.kind, obj.name, "APPLIED", f"dropped by {dropper}"))
    return rows
