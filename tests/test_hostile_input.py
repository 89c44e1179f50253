"""Hostile input gets a clear refusal, never a crash, and writes nothing.

The example counts are bounded for the normal suite; run long with `pytest --fuzz-examples 100000`
(or COMPLIANCE_FUZZ_EXAMPLES=100000)."""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_verify import DirectoryStore, ExportVerifier, Trust, VerificationFailure

from compliance.events import EventRefused, Registry, prepare_event
from compliance.exports import EXPORT_COLUMNS, ExportRefused, parse_filter
from tests.conftest import sample_event

EXAMPLES = int(os.environ.get("COMPLIANCE_FUZZ_EXAMPLES", "1500"))
REG = Registry.default()
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

any_text = st.text(st.characters(), max_size=40)  # lone surrogates and NULs included
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "tenant_id",
                "occurred_at",
                "actor_type",
                "actor_id",
                "source",
                "event_type",
                "payload",
                "event_id",
                "junk",
            ]
        ),
        json_like | any_text,
        max_size=9,
    )
)
def test_fuzzed_events_are_prepared_or_refused_never_crash(raw: dict) -> None:
    try:
        prepared = prepare_event(raw, REG)
    except EventRefused as exc:
        assert exc.field and exc.reason
    else:
        json.loads(prepared.payload_jcs)
        prepared.payload_jcs.encode("utf-8")


@FUZZ
@given(json_like)
def test_any_payload_of_a_valid_event_is_prepared_or_refused(payload: object) -> None:
    try:
        prepare_event(
            sample_event(1, event_type="policy.evaluated", payload={"subject": payload, "reason": payload}), REG
        )
    except EventRefused as exc:
        assert exc.field.startswith("payload")


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"subject": None}, None),
        ({"reason": "\x00\u2028\ufeff\U0001f600 RTL \u202e"}, None),
        ({"reason": "x" * 70_000}, "payload"),
        ({"subject": 2**64}, "payload.subject"),
        ({"subject": -(2**53)}, "payload.subject"),
        ({"reason": "\udc00"}, "payload"),
    ],
)
def test_edge_payloads(payload: dict, field: str | None) -> None:
    raw = sample_event(1, event_type="policy.evaluated", payload=payload)
    if field is None:
        assert prepare_event(raw, REG)
    else:
        with pytest.raises(EventRefused) as info:
            prepare_event(raw, REG)
        assert info.value.field == field


def test_deeply_nested_payloads_are_refused() -> None:
    deep: object = "leaf"
    for _ in range(5000):
        deep = {"k": deep}
    with pytest.raises(EventRefused, match="nested deeper"):
        prepare_event(sample_event(1, event_type="policy.evaluated", payload={"subject": deep}), REG)
    shallow: object = "leaf"
    for _ in range(30):
        shallow = [shallow]
    assert prepare_event(sample_event(1, event_type="policy.evaluated", payload={"subject": shallow}), REG)


@FUZZ
@given(
    st.one_of(
        any_text,
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.dictionaries(
            st.sampled_from(["since", "until", "tenant_id", "event_types", "actor_types", "x"]), json_like, max_size=6
        ).map(json.dumps),
    )
)
def test_fuzzed_filters_are_parsed_or_refused_with_a_code(text: str) -> None:
    try:
        parse_filter(text)
    except ExportRefused as exc:
        assert exc.code in ("FILTER_INVALID", "FILTER_TOO_LARGE", "FILTER_RANGE_TOO_WIDE")


@pytest.mark.parametrize(
    "text",
    [
        '{"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "tenant_id": "x\' OR 1=1 --"}',
        '{"since": "2026-01-01T00:00:00Z\'; DROP TABLE compliance.events; --", "until": "2026-01-02T00:00:00Z"}',
        '{"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "event_types": ["a.b"'
        + ', "a.b"' * 800
        + "]}",
        '{"since": "2026-01-01T00:00:00+24:00", "until": "2026-01-02T00:00:00Z"}',
        '{"since": "2026-01-01T00:00:00 UTC", "until": "2026-01-02T00:00:00Z"}',
        '{"since": "9999-12-31T23:59:59Z", "until": "10000-01-01T00:00:00Z"}',
        "[" * 100_000,
    ],
)
def test_hostile_filters_are_refused(text: str) -> None:
    with pytest.raises(ExportRefused):
        parse_filter(text)


TRUST = Trust("anchors", {"k": "0" * 64}, "GOVERNANCE", None, 1)


def no_bucket(tmp: Path) -> DirectoryStore:
    (tmp / "empty-bucket").mkdir(exist_ok=True)
    return DirectoryStore(tmp / "empty-bucket")


@FUZZ
@given(st.binary(max_size=400) | st.text(string.printable, max_size=400).map(str.encode))
def test_malformed_export_files_fail_cleanly(tmp_path_factory, data: bytes) -> None:
    path: Path = tmp_path_factory.mktemp("fuzz") / "events.csv"
    path.write_bytes(data)
    report = ExportVerifier(no_bucket(path.parent), TRUST).verify_file(path)  # a report, never an exception
    assert report.rows == 0  # random bytes never make a row whose hash verifies
    assert report.ok or str(report.failure)


@pytest.mark.parametrize(
    "body",
    [
        b'{"tenant_id": 1}\n',
        b"{not json\n",
        b'{"a": [' * 10000 + b"\n",
        b"tenant_id,seq\nx,1\n",
        ",".join(EXPORT_COLUMNS).encode() + b"\r\nt,notanumber,e,o,r,user,a,s,x.y,{},[],00,00,,,\r\n",
    ],
)
def test_specific_malformed_exports_name_what_is_wrong(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(body)
    report = ExportVerifier(no_bucket(tmp_path), TRUST).verify_file(path)
    assert not report.ok and report.failure is not None
    assert report.failure.code in ("malformed_row", "malformed_file")


_CSV_TEXT = st.text(alphabet=st.sampled_from(list('ab,"\r\n é;x0')), max_size=12)


@FUZZ
@given(
    rows=st.lists(st.lists(_CSV_TEXT, min_size=14, max_size=18), max_size=6),
    quote_all=st.booleans(),
    garbage=st.one_of(st.none(), st.text(alphabet=st.sampled_from(list('a,"\r\n')), max_size=30)),
)
def test_verify_export_reads_csv_exactly_as_the_csv_module(
    rows: list[list[str]], quote_all: bool, garbage: str | None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The fast line splitter of `verify export` must yield what csv.reader yields, or refuse where it fails."""
    import csv
    import io

    from ledger_verify import read_rows

    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerow(EXPORT_COLUMNS)
    writer.writerows(rows)
    text = out.getvalue() + (garbage or "")
    path = tmp_path_factory.mktemp("csv") / "export.csv"
    path.write_text(text, encoding="utf-8", newline="")
    try:
        expected: list[list[str]] | None = list(csv.reader(io.StringIO(text, newline="")))[1:]
    except csv.Error:
        expected = None
    width = len(EXPORT_COLUMNS)
    if expected is not None and all(len(r) == width for r in expected):
        assert list(read_rows(path)) == expected
    else:
        with pytest.raises(VerificationFailure):
            list(read_rows(path))


def test_a_span_read_line_by_line_switches_to_the_csv_module_at_the_first_other_record(tmp_path: Path) -> None:
    """Rows in the export's own form are split line by line; from the first record that is not (here a cell
    spanning two lines) the rest is read by the csv module; a span reads just the lines beginning in it."""
    import csv
    import io

    from ledger_verify import read_rows

    def row(i: int, payload: str = '{"k":1}') -> list[str]:
        return [f"t-{i}", str(i), *[f"c{i}-{k}" for k in range(7)], payload, "[]", *[f"h{i}-{k}" for k in range(5)]]

    rows = [row(1), row(2), row(3, 'a "quoted"\r\nsecond line'), row(4), row(5, "'=neutralised")]
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    writer.writerows(rows)
    data = out.getvalue().encode()
    path = tmp_path / "events.csv"
    path.write_bytes(data)
    restored = [r[:9] + ["=neutralised"] + r[10:] if r[0] == "t-5" else r for r in rows]
    assert list(read_rows(path)) == restored
    second = data.index(b"t-2,")
    fourth = data.index(b"t-4,")
    assert list(read_rows(path, (second, fourth))) == restored[1:3]  # row 3 (two lines) begins in the span
    assert list(read_rows(path, (second, second + 1))) == restored[1:2]
    assert list(read_rows(path, (fourth, len(data)))) == restored[3:]


def test_a_line_that_is_not_utf8_is_named_by_its_row(tmp_path: Path) -> None:
    import csv
    import io

    from ledger_verify import read_rows

    rows = [[f"t-{i}", str(i), *["c"] * 7, '{"k":1}', "[]", *["h"] * 5] for i in (1, 2, 3)]
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    writer.writerows(rows)
    path = tmp_path / "events.csv"
    path.write_bytes(out.getvalue().encode().replace(b"t-2,", b"t-\xff2,"))
    with pytest.raises(VerificationFailure) as failed:
        list(read_rows(path))
    assert (failed.value.code, failed.value.row) == ("malformed_row", 2)
    assert "can't decode byte 0xff" in failed.value.detail


def pending_row(seq: int, prev: bytes) -> tuple[dict, bytes]:
    """An unanchored export row (NDJSON form) whose event_hash is right for its fields, and that hash."""
    import hashlib

    from ledger_verify.chain import stored_body

    row = {
        "tenant_id": "t",
        "seq": seq,
        "event_id": "019a8b2c-0000-7001-8000-000000000001",
        "occurred_at": "2026-11-22T10:00:00.000001Z",
        "recorded_at": "2026-11-22T10:00:01.000001Z",
        "actor_type": "user",
        "actor_id": "a",
        "source": "web",
        "event_type": "auth.signout",
        "payload": {},
        "redacted_fields": [],
    }
    cells = [row[c] for c in EXPORT_COLUMNS[:11]]
    digest = hashlib.sha256(prev + stored_body(cells, seq, "{}", "[]")).digest()
    row |= {"prev_hash": prev.hex(), "event_hash": digest.hex(), "cadence_id": None, "event_index": None}
    return row | {"event_path": []}, digest


def verify_ndjson(tmp_path: Path, rows: list[dict], raw: str | None = None):
    path = tmp_path / "events.ndjson"
    path.write_text(raw if raw is not None else "".join(json.dumps(r) + "\n" for r in rows))
    return ExportVerifier(no_bucket(tmp_path), TRUST, None, allow_pending=True).verify_file(path)


def test_a_seq_cell_after_a_negative_seq_is_read_as_written(tmp_path: Path) -> None:
    first, digest = pending_row(-3, bytes(32))
    second, _ = pending_row(65534, digest)  # -2 would be the next seq; "65534" must not pass for it
    path = tmp_path / "events.csv"
    lines = [",".join(EXPORT_COLUMNS)]
    for r in (first, second):
        cells = {**r, "payload": "{}", "redacted_fields": "[]", "cadence_id": "", "event_index": "", "event_path": ""}
        lines.append(",".join(str(cells[c]) for c in EXPORT_COLUMNS))
    path.write_text("\r\n".join(lines) + "\r\n", newline="")
    report = ExportVerifier(no_bucket(tmp_path), TRUST, None, allow_pending=True).verify_file(path)
    assert report.ok and (report.rows, report.pending) == (2, 2), report.summary()


def test_a_null_prev_hash_on_the_first_row_is_malformed(tmp_path: Path) -> None:
    row, _ = pending_row(1, bytes(32))
    assert verify_ndjson(tmp_path, [row]).ok
    report = verify_ndjson(tmp_path, [row | {"prev_hash": None}])
    assert report.failure is not None and report.failure.code == "malformed_row", report.summary()


def test_a_lone_surrogate_in_a_text_field_is_malformed_not_a_crash(tmp_path: Path) -> None:
    row, _ = pending_row(1, bytes(32))
    raw = json.dumps(row).replace('"actor_id": "a"', '"actor_id": "a\\ud800"') + "\n"
    report = verify_ndjson(tmp_path, [], raw)
    assert report.failure is not None and report.failure.code == "malformed_row", report.summary()
