"""Parquet exports (docs/format.md §4): written by polars into the multipart upload, verified like CSV and
NDJSON, and readable by analysts' tools, from which every event hash can be recomputed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
from ledger_verify.chain import GENESIS_HASH, canonical_body
from ledger_verify.parquet import PARQUET_COLUMNS, ParquetUnavailable, read_parquet_rows

from compliance.exports import EXPORT_COLUMNS
from compliance.settings import Settings
from tests.conftest import run_cli
from tests.test_exports import WINDOW, direct_rows, export, ledger, verify, write_trust

__all__ = ["ledger"]  # the fixture, shared with tests/test_exports.py


def test_a_parquet_export_verifies_and_holds_the_rows_of_the_ndjson_export(
    ledger: Settings, tmp_path: Path, env_for
) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "n").mkdir()
    data, manifest = export(ledger, "parquet", WINDOW, tmp_path / "p")
    assert data.read_bytes()[:4] == b"PAR1" and manifest["format"] == "parquet"
    assert manifest["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    report = verify(ledger, data, manifest)
    assert report.ok, report.summary()
    assert (report.rows, report.anchored, report.pending, len(report.cadences)) == (150, 130, 20, 2)
    nd_file, nd_manifest = export(ledger, "ndjson", WINDOW, tmp_path / "n")
    assert manifest["rows"] == nd_manifest["rows"] and manifest["cadences"] == nd_manifest["cadences"]
    frame = pl.read_parquet(data)
    assert [(n, str(t)) for n, t in frame.schema.items()] == [
        ("tenant_id", "String"),
        ("seq", "Int64"),
        *[(n, "String") for n in EXPORT_COLUMNS[2:14]],
        ("event_index", "Int64"),
        ("event_path", "List(String)"),
    ]
    nd_rows = [json.loads(line) for line in nd_file.read_text().splitlines()]
    assert [(r["tenant_id"], r["seq"]) for r in frame.iter_rows(named=True)] == direct_rows(ledger)
    for p, n in zip(frame.iter_rows(named=True), nd_rows, strict=True):
        assert json.loads(p["payload"]) == n["payload"] and json.loads(p["redacted_fields"]) == n["redacted_fields"]
        assert {k: p[k] for k in EXPORT_COLUMNS if k not in ("payload", "redacted_fields")} == {
            k: n[k] for k in EXPORT_COLUMNS if k not in ("payload", "redacted_fields")
        }
    trust = write_trust(ledger, tmp_path / "trust.json")
    args = ["verify", "export", str(data), "--trust", str(trust), "--allow-pending", "--json"]
    out = run_cli(args, env_for(ledger))
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["anchored_rows"] == 130


@pytest.mark.parametrize(
    ("column", "value"),
    [("actor_id", "someone-else"), ("payload", '{"userId":"u-0"}'), ("event_path", ["00" * 32]), ("seq", 99)],
)
def test_one_changed_cell_of_a_parquet_export_is_caught(
    ledger: Settings, tmp_path: Path, column: str, value: object
) -> None:
    data, manifest = export(ledger, "parquet", WINDOW, tmp_path)
    frame = pl.read_parquet(data)
    victim = 37  # an anchored row in the middle
    assert frame["cadence_id"][victim] is not None
    cells = frame[column].to_list()
    cells[victim] = value
    frame.with_columns(pl.Series(column, cells, frame.schema[column])).write_parquet(data)
    for manifest_given in (None, manifest):  # the manifest's digest is left as it was
        report = verify(ledger, data, manifest_given)
        assert not report.ok and report.failure is not None
        assert report.failure.row == victim + 1, report.failure
        assert report.failure.code in ("hash_mismatch", "bad_proof", "order", "dropped_or_added_row"), report.failure


def test_a_filter_that_matches_nothing_yields_an_empty_valid_signed_parquet_export(
    ledger: Settings, tmp_path: Path, env_for
) -> None:
    nothing = {"since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"}
    data, manifest = export(ledger, "parquet", nothing, tmp_path)
    assert manifest["row_count"] == 0 and manifest["signature"]
    frame = pl.read_parquet(data)
    assert frame.height == 0 and frame.columns == list(EXPORT_COLUMNS)
    trust = write_trust(ledger, tmp_path / "trust.json")
    out = run_cli(["verify", "export", str(data), "--trust", str(trust), "--json"], env_for(ledger))
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["rows"] == 0


def _recomputed(rows: list[tuple]) -> list[tuple[str, str]]:
    """(stored, recomputed) event hashes of rows in the export's column order, per docs/format.md §1."""
    out = []
    prev: dict[str, bytes] = {}
    for r in rows:
        row = dict(zip(EXPORT_COLUMNS, r))
        body = canonical_body(
            seq=int(row["seq"]),
            event_id=row["event_id"],
            tenant_id=row["tenant_id"],
            occurred_at=row["occurred_at"],
            recorded_at=row["recorded_at"],
            actor_type=row["actor_type"],
            actor_id=row["actor_id"],
            source=row["source"],
            event_type=row["event_type"],
            payload_jcs=row["payload"],
            redacted_fields_jcs=row["redacted_fields"],
        )
        link = bytes.fromhex(row["prev_hash"])
        if row["seq"] == 1:
            assert link == GENESIS_HASH
        elif row["tenant_id"] in prev:
            assert link == prev[row["tenant_id"]]
        out.append((row["event_hash"], hashlib.sha256(link + body).hexdigest()))
        prev[row["tenant_id"]] = bytes.fromhex(row["event_hash"])
    return out


def test_polars_and_duckdb_read_a_parquet_export_and_every_event_hash_recomputes(
    ledger: Settings, tmp_path: Path
) -> None:
    data, _ = export(ledger, "parquet", WINDOW, tmp_path)
    from_polars = pl.read_parquet(data).rows()
    from_duckdb = duckdb.sql(f"SELECT * FROM read_parquet('{data}')").fetchall()
    described = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{data}')").fetchall()
    assert [(d[0], d[1]) for d in described] == [
        (name, {"string": "VARCHAR", "int64": "BIGINT", "list<string>": "VARCHAR[]"}[kind])
        for name, kind in PARQUET_COLUMNS
    ]
    assert len(from_polars) == len(from_duckdb) == 150
    for rows in (from_polars, from_duckdb):
        pairs = _recomputed(rows)
        assert all(stored == again for stored, again in pairs)
    assert [tuple(r[:14]) for r in from_polars] == [tuple(r[:14]) for r in from_duckdb]


def test_a_file_that_is_not_the_export_s_parquet_is_refused_as_malformed(tmp_path: Path) -> None:
    other = tmp_path / "other.parquet"
    pl.DataFrame({"tenant_id": ["t"], "seq": ["1"]}).write_parquet(other)
    with pytest.raises(Exception, match="the Parquet columns are not the export's") as caught:
        list(read_parquet_rows(other))
    assert getattr(caught.value, "code", None) == "malformed_file"


def test_without_polars_reading_a_parquet_export_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "events.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(data)
    monkeypatch.setitem(__import__("sys").modules, "polars", None)  # as on an auditor's machine without the extra
    with pytest.raises(ParquetUnavailable, match=r"pip install 'ledger-verify\[parquet\]'"):
        list(read_parquet_rows(data))


def test_without_polars_the_verify_command_stops_with_a_usage_error_naming_the_extra(
    ledger: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger_verify.cli import EXIT_USAGE, build_parser, run_export

    from tasks.storage import s3_client

    data, _ = export(ledger, "parquet", WINDOW, tmp_path)
    trust = write_trust(ledger, tmp_path / "trust.json")
    args = build_parser().parse_args(["export", str(data), "--trust", str(trust), "--allow-pending"])
    monkeypatch.setitem(__import__("sys").modules, "polars", None)
    assert run_export(args, client=s3_client(ledger)) == EXIT_USAGE
    assert "pip install 'ledger-verify[parquet]'" in capsys.readouterr().err
