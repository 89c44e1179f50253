"""Parquet exports (docs/format.md §4): the column types, and a file's rows as the CSV and NDJSON readers give them.

    from ledger_verify.parquet import is_parquet, read_parquet_rows
    if is_parquet(path):
        for row in read_parquet_rows(path):   # lists in the export's column order
            ...

Reading needs polars, the package's ``parquet`` extra (``pip install 'ledger-verify[parquet]'``); without
it :class:`ParquetUnavailable` says so. Rows are read a batch at a time, so memory does not grow with the
file. Each row is a list in :data:`~ledger_verify.rows.EXPORT_COLUMNS` order: ``seq`` and ``event_index``
ints (``event_index`` None while unanchored), ``payload`` and ``redacted_fields`` their RFC 8785 text (as
in CSV), ``cadence_id`` None while unanchored, ``event_path`` a list of hex strings (as in NDJSON).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ledger_verify.errors import VerificationFailure
from ledger_verify.rows import EXPORT_COLUMNS

__all__ = ["PARQUET_COLUMNS", "PARQUET_MAGIC", "ParquetUnavailable", "is_parquet", "polars_schema", "read_parquet_rows"]

PARQUET_MAGIC = b"PAR1"  # a Parquet file's first (and last) four bytes

# The Parquet type of each export column, in the export's order (docs/format.md §4). Every text the event's
# hash covers is kept as the exact text hashed: timestamps in the §1 form, payload and redacted_fields as
# their JCS text, hashes as lower-case hex.
PARQUET_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (name, {"seq": "int64", "event_index": "int64", "event_path": "list<string>"}.get(name, "string"))
    for name in EXPORT_COLUMNS
)

READ_BATCH_ROWS = 50_000


class ParquetUnavailable(RuntimeError):
    """A Parquet export was given but polars, which reads it, is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "reading a Parquet export needs polars: install the extra with "
            "`pip install 'ledger-verify[parquet]'` (or verify the CSV or NDJSON export of the same rows)"
        )


def _polars() -> Any:
    try:
        return importlib.import_module("polars")
    except ImportError:
        raise ParquetUnavailable() from None


def is_parquet(path: Path) -> bool:
    """Whether ``path`` begins as a Parquet file does (CSV and NDJSON exports never do)."""
    with open(path, "rb") as fh:
        return fh.read(4) == PARQUET_MAGIC


def polars_schema() -> Any:
    """The export's columns as a ``polars.Schema``, in order; raises :class:`ParquetUnavailable`."""
    pl = _polars()
    types = {"string": pl.String(), "int64": pl.Int64(), "list<string>": pl.List(pl.String())}
    return pl.Schema([(name, types[kind]) for name, kind in PARQUET_COLUMNS])


def read_parquet_rows(path: Path, batch_rows: int = READ_BATCH_ROWS) -> Iterator[list[Any]]:
    """The rows of a Parquet export, in file order. Raises :class:`ParquetUnavailable`, or ``malformed_file``
    when the file is not a Parquet file with exactly the export's columns and types."""
    pl = _polars()
    expected = polars_schema()
    try:
        found = pl.read_parquet_schema(path)
    except Exception as exc:  # polars' errors for an unreadable file have no common base of their own
        raise VerificationFailure("malformed_file", f"not a readable Parquet file: {exc}") from None
    if list(found.items()) != list(expected.items()):
        raise VerificationFailure(
            "malformed_file",
            "the Parquet columns are not the export's of docs/format.md §4 ("
            + ", ".join(f"{name} {kind}" for name, kind in PARQUET_COLUMNS)
            + "); found "
            + ", ".join(f"{name} {dtype}" for name, dtype in found.items()),
        )
    # One slice at a time: a scan's own batches run ahead of the reader and pile up in memory.
    scan = pl.scan_parquet(path)
    n = 0
    try:
        total = scan.select(pl.len()).collect().item()
    except Exception as exc:
        raise VerificationFailure("malformed_file", f"not a readable Parquet file: {exc}") from None
    while n < total:
        try:
            frame = scan.slice(n, batch_rows).collect()
        except Exception as exc:
            raise VerificationFailure("malformed_row", f"the Parquet file cannot be read past here: {exc}", row=n + 1) from None
        if frame.height == 0:
            return
        for row in frame.iter_rows():
            n += 1
            yield list(row)
