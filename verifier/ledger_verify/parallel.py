"""One export checked by several processes: the file is cut at line starts into one segment per process.

Each worker (forked, so nothing is pickled on the way in) checks its segment's rows exactly as a single
process checks a file: hashes, links, ordering and audit paths. Anchors are checked once, by this process,
which answers the workers' requests for them; so is everything that spans segments: the link and order
where two segments meet, and the manifest's list of rows against the runs of rows each worker saw.

This is the fast path of a file that verifies. When anything does not pass (a worker's failure, a seam, the
manifest's rows, a worker that died), the caller checks the whole file in one process, which names the
first failure exactly as it always does: a failing file costs one more pass, a passing one is checked once.
Only CSV and NDJSON files are cut (one record per line, as every valid export is: SPEC §1 refuses control
characters in text fields); Parquet files are read whole. Where ``fork`` is not available (Windows), one
process checks the file.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import os
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger_verify.anchors import AnchorChecker, VerifiedAnchor
from ledger_verify.errors import VerificationFailure

if TYPE_CHECKING:
    from ledger_verify.export import ExportReport, ExportVerifier

__all__ = ["MIN_SEGMENT_BYTES", "Segments", "available_cpus", "cut", "start_segments"]

MIN_SEGMENT_BYTES = 8 * 2**20  # a file is cut only into segments at least this long: smaller ones cost more to fork


def available_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cut(path: Path, parts: int) -> list[tuple[int, int]]:
    """[start, end) byte spans of ``path``, at most ``parts`` of them, each beginning at a line's start."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as fh:
        for k in range(1, parts):
            fh.seek(max(size * k // parts - 1, cuts[-1]))
            fh.readline()  # to the end of the line holding that byte
            at = fh.tell()
            if at >= size:
                break
            if at > cuts[-1]:
                cuts.append(at)
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def start_segments(verifier: ExportVerifier, path: Path, jobs: int) -> Segments | None:
    """Workers started on ``path``'s segments, or None when one process should check it: one job, a file too
    small to cut, a Parquet file, or no ``fork`` here."""
    from ledger_verify.parquet import is_parquet

    if jobs < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    try:
        size = path.stat().st_size
    except OSError:
        return None  # read_rows, in one process, says what is wrong with the path
    parts = min(jobs, size // MIN_SEGMENT_BYTES)
    if parts < 2 or is_parquet(path):
        return None
    spans = cut(path, parts)
    if len(spans) < 2:
        return None
    return Segments(verifier, path, spans)


class _AnchorsOfParent(AnchorChecker):
    """A worker's anchors: asked of the process that started it, which checks each one once."""

    def __init__(self, conn: Connection) -> None:  # no store here: nothing is read by the worker itself
        self.conn = conn
        self.checked: dict[str, VerifiedAnchor] = {}
        self.storage_checked = True

    def check(self, cid: str) -> VerifiedAnchor:
        got = self.checked.get(cid)
        if got is None:
            self.conn.send(("anchor", cid))
            kind, value = self.conn.recv()
            if kind == "failure":
                raise VerificationFailure(**value)
            got = self.checked[cid] = value
        return got


def _fields(exc: VerificationFailure) -> dict[str, Any]:
    return {
        "code": exc.code,
        "detail": exc.detail,
        "tenant_id": exc.tenant_id,
        "seq": exc.seq,
        "row": exc.row,
        "anchor": exc.anchor,
    }


def _work(conn: Connection, verifier: ExportVerifier, path: Path, span: tuple[int, int]) -> None:
    """A worker: check the rows of ``span`` and send what the parent needs to join the segments."""
    from ledger_verify.export import ExportReport, ExportVerifier, read_rows

    # What the worker inherited is never garbage here: kept out of every collection, so that none walks the
    # parent's whole heap (and copies its pages on the way).
    gc.freeze()
    try:
        mine = ExportVerifier(
            verifier.store,
            verifier.trust,
            verifier.manifest,
            allow_pending=verifier.allow_pending,
            allow_unsigned_manifest=verifier.allow_unsigned_manifest,
            anchors=_AnchorsOfParent(conn),
            jobs=1,
        )
        report = ExportReport(str(path))
        rows = read_rows(path, span)
        first = next(rows, None)
        seen: list[list[Any]] = []
        outcome: dict[str, Any] = {"passed": False}
        if first is None:
            conn.send(("done", outcome))  # a span of no rows: nothing a valid export has
            return

        try:
            last = mine._verify_rows(itertools.chain((first,), rows), report, None, seen)
        except VerificationFailure:
            conn.send(("done", outcome))
            return
        outcome = {
            "passed": True,
            "rows": report.rows,
            "anchored": report.anchored,
            "pending": report.pending,
            "tenants": report.tenants,
            "cadences": report.cadences,
            "first": (first[0], first[1], first[11]),  # tenant, seq, prev_hash: checked against the previous span
            "last": last,  # tenant, seq, event hash
            "runs": seen,
        }
        conn.send(("done", outcome))
    except BaseException as exc:  # anything unforeseen: the parent checks the file in one process
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except (OSError, ValueError):
            pass
    finally:
        conn.close()


class Segments:
    """Workers checking the spans of one file; :meth:`finish` serves their anchor requests and joins them."""

    def __init__(self, verifier: ExportVerifier, path: Path, spans: list[tuple[int, int]]) -> None:
        self.verifier = verifier
        ctx = multiprocessing.get_context("fork")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for span in spans:
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_work, args=(theirs, verifier, path, span), daemon=True)
            proc.start()
            theirs.close()
            self.conns.append(mine)
            self.procs.append(proc)

    def finish(self, report: ExportReport, expected: list[tuple[str, int, int]] | None) -> bool:
        """Wait for every worker; fill ``report`` and return True when every segment and every seam passed
        (and the rows are the manifest's), else return False with ``report`` untouched."""
        outcomes: dict[int, dict[str, Any]] = {}
        index = {id(c): i for i, c in enumerate(self.conns)}
        open_conns = list(self.conns)
        while open_conns:
            for conn in wait(open_conns):
                assert isinstance(conn, Connection)
                try:
                    kind, value = conn.recv()
                except (EOFError, OSError):  # the worker died without a word
                    outcomes[index[id(conn)]] = {"passed": False}
                    open_conns.remove(conn)
                    continue
                if kind == "anchor":
                    try:
                        conn.send(("anchor", self.verifier.anchors.check(value)))
                    except VerificationFailure as exc:
                        conn.send(("failure", _fields(exc)))
                    continue
                outcomes[index[id(conn)]] = value if kind == "done" else {"passed": False}
                open_conns.remove(conn)
        parts = [outcomes[i] for i in range(len(self.conns))]
        if not all(p["passed"] for p in parts) or not _seams_hold(parts):
            return False
        runs = _joined_runs(parts)
        if expected is not None and runs != [list(r) for r in expected]:
            return False
        cadences: list[str] = []
        for p in parts:
            cadences += [c for c in p["cadences"] if c not in cadences]
        for cid in cadences:  # as one process adds them: in the order the anchors are first met
            report.add_anchor(self.verifier.anchors.checked[cid])
        report.rows = sum(p["rows"] for p in parts)
        report.anchored = sum(p["anchored"] for p in parts)
        report.pending = sum(p["pending"] for p in parts)
        # A tenant whose rows continue across a seam was counted by both workers.
        report.tenants = sum(p["tenants"] for p in parts) - sum(
            a["last"][0] == b["first"][0] for a, b in zip(parts, parts[1:])
        )
        return True

    def stop(self) -> None:
        for conn in self.conns:
            conn.close()
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _seams_hold(parts: list[dict[str, Any]]) -> bool:
    """Where two segments meet, the rows are in order and, within one tenant's next seq, linked."""
    for a, b in zip(parts, parts[1:]):
        tenant, seq, event_hash = a["last"]
        first_tenant, first_seq, first_prev = b["first"]
        try:
            first_seq = int(first_seq)
            prev = bytes.fromhex(first_prev)
        except (TypeError, ValueError):
            return False
        if first_tenant != tenant:
            if first_tenant.encode() < tenant.encode():
                return False
        elif first_seq <= seq or (first_seq == seq + 1 and prev != event_hash):
            return False
    return True


def _joined_runs(parts: list[dict[str, Any]]) -> list[list[Any]]:
    """The [tenant, first seq, last seq] runs of the whole file: each segment's, joined across the seams."""
    runs: list[list[Any]] = []
    for p in parts:
        for tenant, first, last in p["runs"]:
            if runs and runs[-1][0] == tenant and runs[-1][2] + 1 == first:
                runs[-1][2] = last
            else:
                runs.append([tenant, first, last])
    return runs
