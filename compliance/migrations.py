"""Migration files (docs/architecture.md, Migrations): ``sql/NNNN_name.sql`` with ``-- creates: <kind> <name>`` headers.

A later migration that removes an object an earlier one created says so with ``-- drops: <kind> <name>``,
so that drift expects it gone rather than reporting it MISSING.

>>> m = parse_migration("0001_x.sql", "-- creates: table compliance.t\\nCREATE TABLE compliance.t ();")
>>> m.version, m.creates
(1, (CreatedObject(kind='table', name='compliance.t'),))
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import NamedTuple

__all__ = ["KINDS", "CreatedObject", "Migration", "MigrationError", "load_migrations", "parse_migration"]

KINDS = ("schema", "table", "index", "view", "sequence", "function", "trigger", "constraint", "role", "type")
_FILE_RE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_MARKER_RE = re.compile(r"^--\s*(creates|drops):\s*(\S+)\s+(\S+)\s*$", re.MULTILINE)


class MigrationError(ValueError):
    """A migration file is misnamed or has a malformed marker."""


class CreatedObject(NamedTuple):
    kind: str
    name: str


class Migration(NamedTuple):
    version: int
    name: str
    filename: str
    sql: str
    sha256: str
    creates: tuple[CreatedObject, ...]
    drops: tuple[CreatedObject, ...] = ()


def parse_migration(filename: str, text: str) -> Migration:
    match = _FILE_RE.fullmatch(filename)
    if match is None:
        raise MigrationError(f"{filename}: migration files are named NNNN_name.sql (lower-case name)")
    markers: dict[str, list[CreatedObject]] = {"creates": [], "drops": []}
    for verb, kind, name in _MARKER_RE.findall(text):
        if kind not in KINDS:
            raise MigrationError(f"{filename}: '-- {verb}: {kind} {name}': kind must be one of {', '.join(KINDS)}")
        if kind in ("trigger", "constraint") and "/" not in name:
            raise MigrationError(f"{filename}: {kind} markers are written <schema.table>/<{kind}>, got {name!r}")
        markers[verb].append(CreatedObject(kind, name))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Migration(
        int(match.group(1)),
        match.group(2),
        filename,
        text,
        digest,
        tuple(markers["creates"]),
        tuple(markers["drops"]),
    )


def load_migrations(directory: Path) -> list[Migration]:
    """Every migration under ``directory``, in version order; refuses duplicate versions."""
    migrations = [parse_migration(p.name, p.read_text("utf-8")) for p in sorted(directory.glob("*.sql"))]
    seen: dict[int, str] = {}
    for m in migrations:
        if m.version in seen:
            raise MigrationError(f"{m.filename} and {seen[m.version]} share version {m.version:04d}")
        seen[m.version] = m.filename
    return migrations
