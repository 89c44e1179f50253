"""The export stage: an export file, its signed manifest and the anchors it names, against a trust file.

    from ledger_verify import DirectoryStore, ExportVerifier, S3Store, Trust
    trust = Trust.load(Path("trust.json"))
    verifier = ExportVerifier(S3Store(trust.anchor_bucket), trust, manifest)
    report = verifier.verify_file(Path("events.csv"))
    print(report.summary())

For every row: the event hash recomputed from the row's own fields (CSV
cells restored from their neutralised form first); the link to the previous
row of the same tenant when it is the previous seq; its ``event_path`` from
the event to its tenant's ``events_root`` in the anchor it names (each
distinct node of the shared paths hashed once), that tenant record's path to
the anchor's ``merkle_root``, and the anchor itself (see
:mod:`ledger_verify.anchors`). A row not yet anchored fails (``pending``)
unless pending rows are allowed. The manifest must be signed by a pinned key
(a v1 manifest only when unsigned ones are allowed), name the trusted bucket,
and list exactly the file's rows, their count and the file's SHA-256; its
tenant records must equal the bucket's ``proofs/`` lines. The first failure
stops the check and is named.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger_verify.anchors import AnchorChecker, VerifiedAnchor
from ledger_verify.chain import GENESIS_HASH, hashable_as_given, quoted_field, stored_body
from ledger_verify.errors import InclusionError, VerificationFailure
from ledger_verify.jcs import CanonicalError, canonical, loads_as_doubles
from ledger_verify.manifest import check_manifest
from ledger_verify.merkle import check_inclusion, tree_levels
from ledger_verify.parallel import available_cpus, start_segments
from ledger_verify.rows import EXPORT_COLUMNS, PathRenderer, restore
from ledger_verify.store import AnchorStore
from ledger_verify.trust import Trust

__all__ = ["ExportReport", "ExportVerifier", "read_rows"]

RANGE_AT_ONCE = 65_536  # an anchored range up to this many rows is proven at once; longer ones row by row
READ_BUFFER = 1 << 20  # rows are read through a buffer this large: a read a few hundred rows, not a few
# The decimal text of 0 .. RANGE_AT_ONCE - 1: a seq or event_index cell that reads as the number expected
# there is known without parsing it (int() of a short text costs more than hashing a Merkle leaf).
_DECIMALS = [str(i) for i in range(RANGE_AT_ONCE)]
_NO_ROW: Any = object()  # equal to no cell (not even a null one)


def _fail(
    code: str, row: int | None, detail: str, tenant: str | None = None, seq: int | None = None
) -> VerificationFailure:
    return VerificationFailure(code, detail, row=row, tenant_id=tenant, seq=seq)


@dataclass
class ExportReport:
    file: str
    rows: int = 0
    anchored: int = 0
    pending: int = 0
    tenants: int = 0
    cadences: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    manifest: str = "not given: dropped or added rows cannot be detected"  # or "signed by <key_id>", or unsigned
    storage_checked: bool = True
    notes: list[str] = field(default_factory=list)
    failure: VerificationFailure | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None

    def add_anchor(self, verified: VerifiedAnchor) -> None:
        """An anchor the file's rows name, met for the first time: its cadence, notes and signing key."""
        self.cadences.append(verified.cadence_id)
        self.notes.extend(verified.notes)
        if verified.key_id not in self.keys:
            self.keys.append(verified.key_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "file": self.file,
            "rows": self.rows,
            "anchored_rows": self.anchored,
            "pending_rows": self.pending,
            "tenants": self.tenants,
            "cadences": self.cadences,
            "keys": self.keys,
            "manifest": self.manifest,
            "lock_retention_versions_checked": self.storage_checked,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "failure": None if self.failure is None else self.failure.as_dict(),
        }

    def summary(self) -> str:
        lines = [
            f"Export verification of {self.file}: {'PASSED' if self.ok else 'FAILED'}",
            f"  rows checked:            {self.rows} ({self.tenants} tenants)",
            f"  anchored and proven:     {self.anchored}, through {len(self.cadences)} anchor(s): "
            + (", ".join(self.cadences) or "-"),
            f"  not yet anchored:        {self.pending}",
            f"  signing keys (pinned):   {', '.join(self.keys) or '-'}",
            f"  manifest:                {self.manifest}",
            "  lock mode, retention, versions: "
            + ("checked" if self.storage_checked else "NOT checked (a local copy of the bucket cannot show them)"),
        ]
        lines += [f"  note: {n}" for n in self.notes]
        if self.failure is not None:
            lines.append(f"  FIRST FAILURE: {self.failure}")
        return "\n".join(lines)


def read_rows(path: Path, span: tuple[int, int] | None = None) -> Iterator[list[Any]]:
    """Rows of an export as lists in SPEC §4 column order; CSV cells are strings restored from their
    neutralised form, NDJSON keeps its types. Raises ``malformed_row`` / ``malformed_file`` as the rows are
    read.

    ``span``: only the lines that begin in the bytes [start, end) of a CSV or NDJSON file, ``start`` being
    the beginning of a line (a CSV header is read only from offset 0); rows are then numbered from 1."""
    from ledger_verify.parquet import is_parquet, read_parquet_rows  # Parquet: rows of the same shape

    if is_parquet(path):
        if span is not None:
            raise ValueError("a Parquet export is read whole")
        return read_parquet_rows(path)
    with open(path, "rb") as fh:
        head = fh.read(1)
    start, end = span if span is not None else (0, -1)
    if head == b"{":
        return _ndjson_rows(path, start, end)
    return _csv_rows(path, start, end)


def _bounded(lines: Iterator[bytes], pos: int, end: int) -> Iterator[bytes]:
    """The ``lines``, the first beginning at byte ``pos``, up to the first that begins at or after ``end``
    (all of them when ``end`` is negative)."""
    for raw in lines:
        if 0 <= end <= pos:
            return
        yield raw
        pos += len(raw)


def _ndjson_rows(path: Path, start: int, end: int) -> Iterator[list[Any]]:
    with open(path, "rb", buffering=READ_BUFFER) as fh:
        fh.seek(start)
        for n, line in enumerate(fh if end < 0 else _bounded(iter(fh), start, end), 1):
            try:
                row = loads_as_doubles(line)  # a row naming a key twice is refused: readers disagree on its value
            except (ValueError, RecursionError) as exc:
                raise _fail("malformed_row", n, f"not strict JSON: {exc}") from None
            if not isinstance(row, dict) or len(row) != len(EXPORT_COLUMNS):
                raise _fail("malformed_row", n, "not an object with the export's fields")
            try:
                yield [row[k] for k in EXPORT_COLUMNS]
            except KeyError as exc:
                raise _fail("malformed_row", n, f"field {exc} is missing") from None


# The header as the export writes it: a file that begins with exactly these bytes is read line by line below.
_HEADER_LINE = (",".join(EXPORT_COLUMNS) + "\r\n").encode()


def _csv_rows(path: Path, start: int, end: int) -> Iterator[list[Any]]:
    """The CSV rows of the lines that begin in [start, end) (the header first when ``start`` is 0). Lines in
    the export's own form are read, decoded and split in this one generator; from the first line that is
    not (or a header that is not the export's own bytes) on, the rest of the span is read by
    :func:`_csv_records`, which reads exactly as the ``csv`` module."""
    width = len(EXPORT_COLUMNS)
    n = 0
    with open(path, "rb", buffering=READ_BUFFER) as fh:
        fh.seek(start)
        lines = iter(fh)
        pos = start
        if start == 0:
            first = next(lines, b"")
            if first != _HEADER_LINE:  # (b"" for an empty file: no line at all)
                head: tuple[bytes, ...] = (first,) if first else ()
                yield from _csv_records(_bounded(itertools.chain(head, lines), 0, end), True, 0)
                return
            pos = len(first)
        for raw in lines:
            if 0 <= end <= pos:
                return
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                values = None  # not UTF-8: the reader below names the line
            else:
                # Only a line whose one CR is its CRLF end can be a whole record in the export's form.
                values = _split_export_line(line) if line.find("\r") == len(line) - 2 else None
            if values is None or len(values) != width:
                yield from _csv_records(_bounded(itertools.chain((raw,), lines), pos, end), False, n)
                return
            pos += len(raw)
            n += 1
            yield _restored(values) if "'" in line else values


def _csv_records(raw: Iterator[bytes], header: bool, n: int) -> Iterator[list[Any]]:
    """CSV rows read record by record exactly as ``csv`` reads them, numbered after row ``n``."""
    lines = _text_lines(raw)
    try:
        if header:
            first = _record(lines)
            if first is None:
                return
            if tuple(first[0]) != EXPORT_COLUMNS:
                raise _fail("malformed_file", None, "the CSV header is not the export columns of SPEC §4")
        width = len(EXPORT_COLUMNS)
        while (record := _record(lines)) is not None:
            values, quoted = record
            n += 1
            if len(values) != width:
                raise _fail("malformed_row", n, f"{len(values)} fields, expected {width}")
            yield _restored(values) if quoted else values
    except (csv.Error, UnicodeDecodeError) as exc:
        raise _fail("malformed_row", n + 1, str(exc)) from None


def _restored(values: list[str]) -> list[str]:
    """``values`` with each cell that begins with the neutralising ``'`` restored (in place)."""
    for i, value in enumerate(values):
        if value.startswith("'"):
            values[i] = restore(value)
    return values


def _text_lines(fh: Iterator[bytes]) -> Iterator[str]:
    """The lines of a UTF-8 file as ``open(path, newline="", encoding="utf-8")`` reads them (each ending at
    CR LF, CR or LF, kept). Read by LF from the bytes and decoded line by line: cheaper than a text stream,
    which looks at every character for a line end."""
    for raw in fh:
        line = raw.decode("utf-8")
        cr = line.find("\r")
        if cr < 0 or cr == len(line) - 2 and line.endswith("\n"):
            yield line
            continue
        start = 0
        while cr >= 0:  # a CR not before the line's LF ends a line too
            end = cr + 2 if line.startswith("\n", cr + 1) else cr + 1
            yield line[start:end]
            start = end
            cr = line.find("\r", start)
        if start < len(line):
            yield line[start:]


def _record(lines: Iterator[str]) -> tuple[list[str], bool] | None:
    """The next CSV record, exactly as the standard ``csv`` module reads it, and whether any of its cells may
    begin with a neutralising ``'`` (so that most rows skip looking). A line in the form the export writes
    is split directly; anything else (a field spanning lines, odd quoting, a blank line) is handed to
    ``csv``, which reads exactly that record's lines and no more."""
    line = next(lines, None)
    if line is None:
        return None
    fields = _split_export_line(line)
    if fields is not None:
        return fields, "'" in line
    got = next(csv.reader(itertools.chain((line,), lines)), None)
    return None if got is None else (got, True)


def _split_export_line(line: str) -> list[str] | None:
    """A whole CSV record on one line as :func:`_text_lines` yields it (no CR or LF but its CRLF end), split
    as ``csv`` would split it, or None when the line is not in the export's own form: every field plain
    (no quote, no comma) but the payload and redacted_fields, which may be quoted with their inner quotes
    doubled. Cells that are each one well-formed field, joined by commas, are what ``csv`` reads, however
    the commas were found; here each is found by one search in C (the last five from the end)."""
    end = len(line) - 2
    if end < 0 or line[end] != "\r" or line[end + 1] != "\n":  # (indexing: cheaper than endswith)
        return None
    c5 = line.rfind(",", 0, end)  # before event_path
    c4 = line.rfind(",", 0, c5)  # event_index
    c3 = line.rfind(",", 0, c4)  # cadence_id
    c2 = line.rfind(",", 0, c3)  # event_hash
    c1 = line.rfind(",", 0, c2)  # prev_hash
    if c1 < 0 or line.rfind('"', c1, end) >= 0:
        return None
    out = line[:c1].split(",", 9)  # tenant_id ... event_type, and the payload and redacted_fields
    if len(out) != 10:
        return None
    rest = out[9]
    if line.find('"', 0, c1 - len(rest)) >= 0:  # a quote before the payload
        return None
    # A quoted redacted_fields cell holds a JSON list, and ',"[' cannot occur inside a well-formed quoted cell.
    cut = rest.rfind(',"[') if rest and rest[-1] == '"' else rest.rfind(",")
    if cut < 0:
        return None
    payload = _cell(rest[:cut])
    redacted = _cell(rest[cut + 1 :])
    if payload is None or redacted is None:
        return None
    out[9] = payload
    out.extend(
        (redacted, line[c1 + 1 : c2], line[c2 + 1 : c3], line[c3 + 1 : c4], line[c4 + 1 : c5], line[c5 + 1 : end])
    )
    return out


def _cell(text: str) -> str | None:
    """The value of one CSV field: plain (no quote, no comma), or quoted with its inner quotes doubled;
    None when it is neither."""
    if not text or text[0] != '"':
        return None if '"' in text or "," in text else text
    if len(text) < 2 or text[-1] != '"':
        return None
    inner = text[1:-1]
    quotes = inner.count('"')
    if not quotes:
        return inner
    value = inner.replace('""', '"')
    if 2 * (len(inner) - len(value)) != quotes:
        return None  # a run of an odd number of quotes: not one quoted field
    return value


def _json_text(value: Any, what: str, row: int) -> str:
    """The RFC 8785 text of a payload or redacted-field list given as JSON text (CSV) or as JSON (NDJSON)."""
    try:
        if isinstance(value, str):
            value = loads_as_doubles(value)
        return canonical(value).decode("utf-8")
    except (ValueError, CanonicalError, RecursionError) as exc:
        raise _fail("malformed_row", row, f"{what} is not canonicalizable JSON: {exc}") from None


class ExportVerifier:
    """Verifies export files against ``store`` (the trusted bucket or a copy of it) and ``trust``.
    ``manifest``: the parsed manifest, or None (completeness then cannot be checked, and the report says so);
    ``allow_pending``: rows not yet anchored pass, counted; ``allow_unsigned_manifest``: a v1 manifest passes;
    ``jobs``: how many processes may check one CSV or NDJSON file (default: the CPUs this process may use; see
    :mod:`ledger_verify.parallel`)."""

    def __init__(
        self,
        store: AnchorStore,
        trust: Trust,
        manifest: Mapping[str, Any] | None = None,
        *,
        allow_pending: bool = False,
        allow_unsigned_manifest: bool = False,
        anchors: AnchorChecker | None = None,
        jobs: int | None = None,
    ) -> None:
        self.store = store
        self.jobs = jobs if jobs is not None else available_cpus()
        self.trust = trust
        self.manifest = manifest
        self.allow_pending = allow_pending
        self.allow_unsigned_manifest = allow_unsigned_manifest
        self.anchors = anchors or AnchorChecker(store, trust)
        self._seen: set[str] = set()
        self._records: dict[tuple[str, str], dict[str, Any]] = {}
        self._proven_for: Any = None
        self._proven: dict[tuple[int, int], bytes] = {}
        # The anchored range being read (its tenant record, and that record's fields as typed values) and its
        # rows, proven together when it ends (see _flush_range): consecutive rows of the file from row
        # _range_n0 on, as their event hashes, event_index and event_path values (each a list, so that a
        # row adds no object of its own); _range_texts: whether every path is CSV text.
        self._range: Any = None
        self._range_cid = ""
        self._range_tenant = ""
        self._range_first = 0
        self._range_last = 0
        self._range_head = ""
        self._range_n0 = 0
        self._range_hashes: list[bytes] = []
        self._range_indexes: list[Any] = []
        self._range_paths: list[Any] = []
        self._range_texts = True

    # -- anchors --------------------------------------------------------------------------------------------

    def _anchor(self, cid: str, row: int, tenant: str, seq: int, report: ExportReport) -> dict[str, Any]:
        """The tenant record of ``tenant`` in the checked anchor ``cid`` (one dict per pair, so that rows of
        one range share it)."""
        key = (cid, tenant)
        cached = self._records.get(key)
        if cached is not None:
            return cached
        try:
            verified = self.anchors.check(cid)
        except VerificationFailure as exc:
            raise exc.where(row=row, tenant_id=tenant, seq=seq) from None
        if cid not in self._seen:
            self._seen.add(cid)
            report.add_anchor(verified)
            if self.manifest is not None:
                cadences = self.manifest.get("cadences")
                listed = cadences.get(cid) if isinstance(cadences, dict) else None
                if not isinstance(listed, dict):
                    raise _fail("manifest", row, f"cadence {cid} is referenced by the file but not in the manifest")
                lines = listed.get("tenant_records")
                for line in lines if isinstance(lines, list) else [None]:
                    if not isinstance(line, dict) or verified.proof_lines.get(str(line.get("tenant_id"))) != line:
                        raise _fail(
                            "manifest",
                            row,
                            f"a tenant record of cadence {cid} in the manifest differs from the bucket's proofs/ line",
                        )
        record = verified.record(tenant)
        if record is None:
            raise _fail("bad_proof", row, f"anchor {cid} has no record of this tenant", tenant, seq)
        self._records[key] = record
        return record

    # -- rows -----------------------------------------------------------------------------------------------

    def verify_file(self, path: Path, *, clock: Callable[[], float] | None = None) -> ExportReport:
        """Check ``path``; never raises a VerificationFailure, the report holds the first one."""
        import time

        timer = clock or time.perf_counter
        started = timer()
        report = ExportReport(str(path))
        hashing = None
        segments = None
        try:
            expected_rows = None
            if self.manifest is not None:
                report.manifest = check_manifest(
                    self.manifest, self.trust, self.store, allow_unsigned=self.allow_unsigned_manifest
                )
                expected_rows = self._expected_rows()
            # Worker processes, when the file is worth cutting, are forked before this process starts a thread.
            segments = start_segments(self, path, self.jobs)
            if self.manifest is not None:
                # The file's SHA-256 is computed by a second thread while the rows are checked (hashlib and
                # file reads release the GIL): one pass over the file's bytes fewer on the critical path.
                hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-sha256")
                digest_future = hashing.submit(_file_sha256, path)
            if segments is None or not segments.finish(report, expected_rows):
                # One process, or a cut file that did not pass: read whole, which names the first failure.
                self._verify_rows(read_rows(path), report, expected_rows)
            if self.manifest is not None:
                digest = digest_future.result()
                if report.rows != self.manifest.get("row_count"):
                    raise _fail(
                        "row_count",
                        None,
                        f"the file has {report.rows} rows, the manifest says {self.manifest.get('row_count')}",
                    )
                if digest != self.manifest.get("data_sha256"):
                    raise _fail("data_sha256", None, "the file's SHA-256 differs from the manifest's")
        except VerificationFailure as exc:
            report.failure = exc
        finally:
            if segments is not None:
                segments.stop()
            if hashing is not None:
                hashing.shutdown(wait=True, cancel_futures=True)
            report.storage_checked = self.anchors.storage_checked
        report.seconds = timer() - started
        return report

    def _expected_rows(self) -> list[tuple[str, int, int]]:
        """The runs of (tenant, first seq, last seq) the manifest lists, in order; raises ``manifest`` when
        they are malformed (checked before the first row is read)."""
        assert self.manifest is not None
        rows = self.manifest.get("rows")
        if not isinstance(rows, dict) or not all(
            isinstance(runs, list)
            and all(
                isinstance(run, list) and len(run) == 2 and all(type(s) is int for s in run) and 1 <= run[0] <= run[1]
                for run in runs
            )
            for runs in rows.values()
        ):
            raise _fail(
                "manifest", None, "the manifest's rows are not an object of tenant -> [[first, last], ...] runs"
            )
        return [(tenant, run[0], run[1]) for tenant, runs in rows.items() for run in runs]

    def _verify_rows(
        self,
        rows: Iterator[list[Any]],
        report: ExportReport,
        expected: list[tuple[str, int, int]] | None,
        seen: list[list[Any]] | None = None,
    ) -> tuple[str | None, int, bytes]:
        """Check ``rows`` (raising the first failure); returns the last row's tenant, seq and event hash.
        ``seen``, when given, collects the rows' [tenant, first seq, last seq] runs in order."""
        self._range = None  # nothing left over from an earlier file
        self._range_hashes, self._range_indexes, self._range_paths = [], [], []
        self._range_cid = self._range_tenant = ""
        prev_tenant: str | None = None
        prev_seq = 0
        prev_hash = GENESIS_HASH
        prev_text: Any = _NO_ROW  # the previous row's event_hash as written; prev_hash is its bytes
        sha256 = hashlib.sha256
        # The run of consecutive seqs being read, for ``seen``.
        run_tenant: str | None = None
        run_first = run_last = 0
        # The manifest's next row: want_seq of want_tenant, in the run ending at want_last (the next run
        # is expected[run]).
        want_tenant, want_seq, want_last, run = "", 1, 0, 0
        n = 0
        for r in rows:
            n += 1
            (
                tenant,
                seq_value,
                event_id,
                occurred_at,
                recorded_at,
                actor_type,
                actor_id,
                source,
                event_type,
                payload,
                redacted,
                prev_hex,
                hash_hex,
                cid,
                index_value,
                path_value,
            ) = r
            try:
                seq = prev_seq + 1
                if seq_value != (_DECIMALS[seq] if 0 <= seq < RANGE_AT_ONCE else str(seq)):
                    seq = int(seq_value)
                event_hash = bytes.fromhex(hash_hex)
                # A prev_hash written as the previous row's event_hash was: its bytes are that row's, known.
                stored_prev = prev_hash if prev_hex == prev_text else bytes.fromhex(prev_hex)
            except (ValueError, TypeError) as exc:
                raise _fail("malformed_row", n, f"seq, prev_hash or event_hash is malformed: {exc}") from None
            if (
                type(tenant) is not str
                or type(event_id) is not str
                or type(occurred_at) is not str
                or type(recorded_at) is not str
                or type(actor_type) is not str
                or type(actor_id) is not str
                or type(source) is not str
                or type(event_type) is not str
                or len(event_hash) != 32
                or len(stored_prev) != 32
                or type(seq_value) is bool
            ):
                raise _fail("malformed_row", n, "a field has the wrong type or length", str(tenant), seq)
            quoted = quoted_field(tenant, event_id, occurred_at, recorded_at, actor_type, event_type)
            if quoted is not None:
                raise _fail("malformed_row", n, f"{quoted} holds a quote, which its form never does", tenant, seq)
            if expected is not None:
                if want_seq > want_last:
                    if run == len(expected):
                        raise _fail("dropped_or_added_row", n, "the manifest lists no more rows", tenant, seq)
                    want_tenant, want_seq, want_last = expected[run]
                    run += 1
                if seq != want_seq or tenant != want_tenant:
                    raise _fail(
                        "dropped_or_added_row",
                        n,
                        f"expected tenant {want_tenant} seq {want_seq} here (per the manifest)",
                        tenant,
                        seq,
                    )
                want_seq += 1
            if seen is not None:
                if tenant == run_tenant and seq == run_last + 1:
                    run_last = seq
                else:
                    if run_tenant is not None:
                        seen.append([run_tenant, run_first, run_last])
                    run_tenant, run_first, run_last = tenant, seq, seq
            if tenant != prev_tenant:
                if prev_tenant is not None and tenant.encode() < prev_tenant.encode():
                    raise _fail("order", n, "rows are not ordered by tenant_id, seq", tenant, seq)
                prev_tenant, prev_seq = tenant, 0
                report.tenants += 1
            elif seq <= prev_seq:
                raise _fail("order", n, f"seq {seq} after seq {prev_seq}", tenant, seq)
            elif seq == prev_seq + 1 and stored_prev != prev_hash:
                raise _fail("broken_link", n, "prev_hash is not the previous row's event_hash", tenant, seq)
            if seq == 1 and stored_prev != GENESIS_HASH:
                raise _fail("broken_link", n, "seq 1 must follow 32 zero bytes", tenant, seq)
            # The text as written is what was hashed (the export writes the canonical text), unless the
            # redacted-field list could move the fields' boundaries (ledger_verify.chain.quoted_field); otherwise
            # the payload and redacted_fields are read as JSON and canonicalised first.
            try:
                differs = (
                    type(payload) is not str
                    or type(redacted) is not str
                    or not hashable_as_given(redacted)
                    or sha256(stored_prev + stored_body(r, seq, payload, redacted)).digest() != event_hash
                ) and sha256(
                    stored_prev
                    + stored_body(
                        r, seq, _json_text(payload, "payload", n), _json_text(redacted, "redacted_fields", n)
                    )
                ).digest() != event_hash
            except UnicodeEncodeError:  # an NDJSON string escaping half a surrogate pair
                raise _fail("malformed_row", n, "a text field is not valid Unicode", tenant, seq) from None
            if differs:
                raise _fail(
                    "hash_mismatch",
                    n,
                    "the event_hash recomputed from the row's fields differs (a field was changed)",
                    tenant,
                    seq,
                )
            self._check_inclusion(n, tenant, seq, event_hash, cid, index_value, path_value, report)
            prev_seq, prev_hash, prev_text = seq, event_hash, hash_hex
            report.rows += 1
        self._flush_range(report)
        if seen is not None and run_tenant is not None:
            seen.append([run_tenant, run_first, run_last])
        if expected is not None:
            if want_seq <= want_last:
                missing: tuple[str, int] | None = (want_tenant, want_seq)
            else:
                missing = (expected[run][0], expected[run][1]) if run < len(expected) else None
            if missing is not None:
                raise _fail(
                    "dropped_or_added_row",
                    report.rows + 1,
                    "the manifest lists this row but the file ends",
                    missing[0],
                    missing[1],
                )
        return prev_tenant, prev_seq, prev_hash

    def _check_inclusion(
        self,
        n: int,
        tenant: str,
        seq: int,
        event_hash: bytes,
        cid_value: Any,
        index_value: Any,
        path_value: Any,
        report: ExportReport,
    ) -> None:
        cid = cid_value or None
        if cid is None:
            self._flush_range(report)  # the range's rows are the file's consecutive rows: it ends here
            if path_value not in ("", [], None) or index_value not in ("", None):
                raise _fail("malformed_row", n, "an event_path or event_index without a cadence_id", tenant, seq)
            if not self.allow_pending:
                raise _fail(
                    "pending",
                    n,
                    "this row is not anchored yet, so nothing proves it; ask for the export again after the next "
                    "anchor, or pass --allow-pending to accept such rows unproven",
                    tenant,
                    seq,
                )
            report.pending += 1
            return
        if type(cid) is not str:
            raise _fail("malformed_row", n, "cadence_id is not text", tenant, seq)
        if cid != self._range_cid or tenant != self._range_tenant:
            record = self._anchor(cid, n, tenant, seq, report)
            self._flush_range(report)  # the rows of the range before
            self._range, self._range_cid, self._range_tenant = record, cid, tenant
            self._range_first, self._range_last = int(record["first_seq"]), int(record["last_seq"])
            self._range_head = str(record["head_hash"])
        first, last = self._range_first, self._range_last
        if not first <= seq <= last:
            raise _fail("bad_proof", n, f"anchor {cid} has no range of this tenant covering this seq", tenant, seq)
        index = seq - first
        if index >= RANGE_AT_ONCE or index_value != _DECIMALS[index]:  # else: the text of the index expected
            try:
                index = int(index_value)
            except (TypeError, ValueError):
                raise _fail("malformed_row", n, "event_path or event_index is malformed", tenant, seq) from None
            if index != seq - first or type(index_value) is bool:
                raise _fail("bad_proof", n, f"event_index {index} does not match seq {seq}", tenant, seq)
        if seq == last and event_hash.hex() != self._range_head:
            raise _fail("bad_proof", n, "the last event of the range is not the anchored head", tenant, seq)
        if last - first + 1 > RANGE_AT_ONCE:
            self._prove_row(n, tenant, seq, event_hash, cid, index_value, path_value, self._range, report)
            return
        hashes = self._range_hashes
        if not hashes:
            self._range_n0 = n
            self._range_texts = True
        hashes.append(event_hash)
        self._range_indexes.append(index_value)
        self._range_paths.append(path_value)
        if type(path_value) is not str:
            self._range_texts = False

    def _flush_range(self, report: ExportReport) -> None:
        """Prove the buffered rows of one anchored range. When they are the whole range (an unfiltered
        export), the range's tree is rebuilt from their hashes: its root must be the anchored events_root,
        and each row's event_path must be the audit path of its leaf in that tree, compared as text. Any
        row whose path reads differently (or a partial range) is proven on its own, path element by path
        element (RFC 9162), which names the row when it fails."""
        hashes, indexes, paths = self._range_hashes, self._range_indexes, self._range_paths
        if not hashes:
            return
        self._range_hashes, self._range_indexes, self._range_paths = [], [], []
        record, tenant, cid = self._range, self._range_tenant, self._range_cid
        first, n0, count = self._range_first, self._range_n0, len(hashes)
        whole = count == self._range_last - first + 1  # seqs strictly increase inside [first, last]: all present
        expected: PathRenderer | None = None
        if whole:
            levels = tree_levels(hashes)
            if levels[-1][0].hex() == record["events_root"]:
                expected = PathRenderer([[h.hex() for h in level] for level in levels[:-1]], ";")
                # Every row's path as the tree gives it, compared at once: the common case, a pass.
                texts = paths if self._range_texts else [p if isinstance(p, str) else _joined(p) for p in paths]
                if texts == expected.paths(count):
                    report.anchored += count
                    return
        proven = 0
        try:
            for i in range(count):
                index_value, path_value = indexes[i], paths[i]
                seq = first + int(index_value)  # event_index was checked to be seq - first_seq
                if expected is not None:
                    text = path_value if isinstance(path_value, str) else _joined(path_value)
                    if text is not None and expected.renders(seq - first, text):
                        proven += 1
                        continue
                self._prove_row(n0 + i, tenant, seq, hashes[i], cid, index_value, path_value, record, report)
        finally:
            report.anchored += proven

    def _prove_row(
        self,
        n: int,
        tenant: str,
        seq: int,
        event_hash: bytes,
        cid: str,
        index_value: Any,
        path_value: Any,
        record: dict[str, Any],
        report: ExportReport,
    ) -> None:
        try:
            if isinstance(path_value, str):
                path = [bytes.fromhex(p) for p in path_value.split(";")] if path_value else []
            else:
                path = [bytes.fromhex(p) for p in path_value or []]
            index = int(index_value)
        except (TypeError, ValueError):
            raise _fail("malformed_row", n, "event_path or event_index is malformed", tenant, seq) from None
        size = record["last_seq"] - record["first_seq"] + 1
        if self._proven_for is not record:  # rows come range by range: keep one range's nodes at a time
            self._proven_for, self._proven = record, {}
        try:
            check_inclusion(event_hash, index, size, path, bytes.fromhex(record["events_root"]), proven=self._proven)
        except InclusionError as exc:
            raise _fail(
                "bad_proof", n, f"the event_path does not reach the events_root of cadence {cid}: {exc}", tenant, seq
            ) from None
        report.anchored += 1


def _joined(path_value: Any) -> str | None:
    """An NDJSON event_path (a list of hex strings) as the CSV form, or None when it is not such a list."""
    if type(path_value) is not list or any(type(p) is not str for p in path_value):
        return None
    return ";".join(path_value)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
