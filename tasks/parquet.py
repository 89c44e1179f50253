"""Parquet export files (docs/format.md §4): batches of rows become row groups, written by polars as they come.

The file is never whole in memory nor on disk. :class:`ParquetSink` takes the export's batches in the
calling thread (which keeps the database, the audit paths and the progress callback there) and hands them,
through a queue two batches deep, to ``LazyFrame.sink_parquet`` running in a thread of its own: polars pulls
them from an IO source (``polars.io.plugins.register_io_source``) and writes each row group into ``out`` as
soon as it is full, so what is held at once is a row group and the batches queued behind it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Any

import polars as pl
from ledger_verify.parquet import polars_schema
from polars.io.plugins import register_io_source

__all__ = ["ROW_GROUP_ROWS", "ParquetSink"]

ROW_GROUP_ROWS = 20_000  # rows per row group: bounds the writer's memory; readers skip groups by their statistics

_END = object()


class _Aborted(Exception):
    """The export stopped before its last batch; the half-written file is discarded with its upload."""


class _Hashing:
    """``out`` with every byte written also fed to ``digest``; the first error from ``out`` is kept, since
    polars hands it on only as the text of its own error."""

    def __init__(self, out: Any, digest: Any) -> None:
        self.out, self.digest = out, digest
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        try:
            self.out.write(data)
        except BaseException as exc:
            self.error = self.error or exc
            raise
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        pass


class ParquetSink:
    """Writes the export's rows as one Parquet file into ``out`` (anything with ``write(bytes)``), feeding
    ``digest`` with its bytes. Call :meth:`add` per batch, then :meth:`close`; :meth:`abort` on failure."""

    def __init__(self, out: Any, digest: Any, *, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        self.schema = polars_schema()
        self.out: Any = _Hashing(out, digest)  # a file-like object to polars
        self.batches: queue.Queue[Any] = queue.Queue(maxsize=2)
        self.failure: BaseException | None = None
        self.row_group_rows = row_group_rows
        self.thread = threading.Thread(target=self._write, name="export-parquet", daemon=True)
        self.thread.start()

    def _source(self, with_columns: list[str] | None, predicate: Any, n_rows: int | None, batch_size: int | None) -> Any:
        while True:
            item = self.batches.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item if with_columns is None else item.select(with_columns)

    def _write(self) -> None:
        try:
            register_io_source(self._source, schema=self.schema).sink_parquet(
                self.out, row_group_size=self.row_group_rows, statistics=True
            )
        except BaseException as exc:
            self.failure = self.out.error or exc

    def _put(self, item: Any) -> None:
        while True:
            if not self.thread.is_alive():
                raise self.failure or RuntimeError("the Parquet writer stopped before the export's end")
            try:
                self.batches.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def add(self, rows: Sequence[Sequence[Any]], cells: Sequence[tuple[str | None, str | None, int | None]]) -> None:
        """One batch: the stored events ``rows`` (as ``csv_row`` takes them) and each one's located cells
        (the audit path joined by ';', the cadence id, the index in its anchored range)."""
        if not rows:
            return
        columns = list(zip(*rows))
        paths, cadences, indices = zip(*cells)
        frame = {name: pl.Series(name, column, dtype) for (name, dtype), column in zip(self.schema.items(), columns)}
        frame["cadence_id"] = pl.Series("cadence_id", cadences, pl.String)
        frame["event_index"] = pl.Series("event_index", indices, pl.Int64)
        frame["event_path"] = pl.Series("event_path", paths, pl.String)
        path = pl.col("event_path")
        df = pl.DataFrame(frame).with_columns(
            pl.when(path.is_null() | (path == ""))
            .then(pl.lit([], pl.List(pl.String)))
            .otherwise(path.str.split(";"))
            .alias("event_path")
        )
        self._put(df)

    def close(self) -> None:
        """Write the file's end (a file of no rows is a valid Parquet file with the export's columns); raises
        what stopped the writer, if anything did."""
        self._put(_END)
        self.thread.join()
        if self.failure is not None:
            raise self.failure

    def abort(self) -> None:
        """Stop the writer without finishing the file (it is discarded with its upload)."""
        while self.thread.is_alive():
            try:
                self.batches.put_nowait(_Aborted("the export stopped"))
            except queue.Full:
                try:
                    self.batches.get_nowait()
                except queue.Empty:
                    pass
            self.thread.join(0.05)
