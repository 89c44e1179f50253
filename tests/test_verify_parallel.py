"""`verify export` with several processes (ledger_verify.parallel): the same verdict, report and first failure as
one process, on real exports cut into segments, tampered inside a segment and at the seams."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from ledger_verify import ExportVerifier, S3Store, parallel

from compliance.settings import Settings
from tasks.storage import s3_client
from tasks.trust import deployment_trust
from tests.test_exports import WINDOW, export, ledger  # noqa: F401  (ledger: the fixture)


@pytest.fixture(autouse=True)
def cut_small_files(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[int, int]]]:
    """Files of a few kB are cut too (real ones are cut from 8 MiB a segment); records the cuts made."""
    monkeypatch.setattr(parallel, "MIN_SEGMENT_BYTES", 1)
    made: list[list[tuple[int, int]]] = []
    cut = parallel.cut

    def recording(path: Path, parts: int) -> list[tuple[int, int]]:
        spans = cut(path, parts)
        made.append(spans)
        return spans

    monkeypatch.setattr(parallel, "cut", recording)
    return made


def check(settings: Settings, data: Path, manifest: dict | None, jobs: int):
    store = S3Store(settings.anchor_bucket, s3_client(settings))
    verifier = ExportVerifier(store, deployment_trust(settings), manifest, allow_pending=True, jobs=jobs)
    return verifier.verify_file(data)


def same(a, b) -> bool:
    fields = ("ok", "rows", "anchored", "pending", "tenants", "cadences", "keys", "manifest", "notes")
    failures = [None if r.failure is None else r.failure.as_dict() for r in (a, b)]
    return all(getattr(a, f) == getattr(b, f) for f in fields) and failures[0] == failures[1]


def test_cut_spans_begin_at_line_starts_and_cover_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    lines = [f"line {i} {'x' * (i % 17)}\n".encode() for i in range(200)]
    path.write_bytes(b"".join(lines))
    starts = {0}
    at = 0
    for line in lines:
        at += len(line)
        starts.add(at)
    for parts in (1, 2, 3, 7, 64, 500):
        spans = parallel.cut(path, parts)
        assert spans[0][0] == 0 and spans[-1][1] == path.stat().st_size
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert all(s in starts for s, _ in spans) and len(spans) <= min(parts, 200)
    assert len(parallel.cut(path, 7)) == 7


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
@pytest.mark.parametrize("jobs", [2, 3, 7])
def test_a_cut_export_gives_the_report_of_one_process(
    ledger: Settings, tmp_path: Path, fmt: str, jobs: int, cut_small_files: list
) -> None:
    data, manifest = export(ledger, fmt, WINDOW, tmp_path)
    one = check(ledger, data, manifest, 1)
    assert one.ok and not cut_small_files, one.summary()
    many = check(ledger, data, manifest, jobs)
    assert cut_small_files and len(cut_small_files[0]) == jobs  # it was checked in segments
    assert same(many, one), (many.summary(), one.summary())
    assert (many.rows, many.anchored, many.pending, many.tenants) == (150, 130, 20, 3)


def lines_of(data: Path) -> tuple[list[bytes], int]:
    """The file's lines and how many of them come before the first row (the CSV header)."""
    lines = data.read_bytes().splitlines(keepends=True)
    return lines, 1 if data.suffix == ".csv" else 0


def tamper_hex(line: bytes, column: int, fmt: str) -> bytes:
    """``line`` with one hex digit of its prev_hash (11) or event_hash (12) changed."""
    if fmt == "ndjson":
        row = json.loads(line)
        name = "prev_hash" if column == 11 else "event_hash"
        row[name] = ("1" if row[name][0] == "0" else "0") + row[name][1:]
        return json.dumps(row).encode() + b"\n"
    cells = line.split(b",")
    index = len(cells) - (16 - column)  # counted from the end: payload and redacted_fields may hold commas
    cell = cells[index]
    cells[index] = (b"1" if cell[:1] == b"0" else b"0") + cell[1:]
    return b",".join(cells)


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
@pytest.mark.parametrize("what", ["inside", "seam_link", "seam_dropped", "seam_swapped", "seam_repeated", "last"])
def test_a_tampered_cut_export_fails_with_the_first_failure_of_one_process(
    ledger: Settings, tmp_path: Path, fmt: str, what: str, cut_small_files: list
) -> None:
    data, manifest = export(ledger, fmt, WINDOW, tmp_path)
    lines, skip = lines_of(data)
    spans = parallel.cut(data, 3)
    cut_small_files.clear()
    # The row that begins the second segment.
    offsets, at = [], 0
    for line in lines:
        offsets.append(at)
        at += len(line)
    seam = offsets.index(spans[1][0])
    assert seam > skip
    if what == "inside":
        lines[seam - 5] = tamper_hex(lines[seam - 5], 12, fmt)
    elif what == "seam_link":
        lines[seam] = tamper_hex(lines[seam], 11, fmt)
    elif what == "seam_dropped":
        del lines[seam]
    elif what == "seam_swapped":
        lines[seam - 1], lines[seam] = lines[seam], lines[seam - 1]
    elif what == "seam_repeated":
        lines.insert(seam, lines[seam - 1])
    else:
        lines[-1] = tamper_hex(lines[-1], 12, fmt)
    data.write_bytes(b"".join(lines))
    for given in (manifest, None):
        one = check(ledger, data, given, 1)
        assert one.ok == (given is None and what == "seam_dropped"), what  # a gap is what a filter leaves
        many = check(ledger, data, given, 3)
        assert same(many, one), (what, many.failure, one.failure)
    assert cut_small_files  # the cut file was checked in segments first


def test_a_worker_that_dies_leaves_the_check_to_one_process(
    ledger: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_small_files: list
) -> None:
    data, manifest = export(ledger, "csv", WINDOW, tmp_path)
    work = parallel._work

    def dies_on_the_second_span(conn, verifier, path, span) -> None:
        if span[0] != 0:
            os._exit(3)
        work(conn, verifier, path, span)

    monkeypatch.setattr(parallel, "_work", dies_on_the_second_span)
    report = check(ledger, data, manifest, 2)
    assert cut_small_files and report.ok and report.rows == 150, report.summary()


def test_an_anchor_that_fails_in_the_parent_fails_the_file_as_in_one_process(
    ledger: Settings, tmp_path: Path, cut_small_files: list
) -> None:
    # A trust file that pins another key: the first anchor a worker asks for fails (untrusted_key) in the parent.
    data, _ = export(ledger, "csv", WINDOW, tmp_path)
    trust = deployment_trust(ledger)
    untrusting = dataclasses.replace(trust, keys={key_id: "0" * 64 for key_id in trust.keys})
    store = S3Store(ledger.anchor_bucket, s3_client(ledger))
    one = ExportVerifier(store, untrusting, None, allow_pending=True, jobs=1).verify_file(data)
    many = ExportVerifier(store, untrusting, None, allow_pending=True, jobs=2).verify_file(data)
    assert cut_small_files and not one.ok and one.failure.code == "untrusted_key", one.summary()
    assert same(many, one), (many.failure, one.failure)


def test_the_command_takes_jobs_and_refuses_fewer_than_one(
    ledger: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], cut_small_files: list
) -> None:
    from ledger_verify.cli import main

    data, _ = export(ledger, "csv", WINDOW, tmp_path)  # manifest.json beside it
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps(deployment_trust(ledger).as_json()))
    with pytest.raises(SystemExit) as refused:
        main(["export", str(data), "--trust", str(trust), "--jobs", "0"])
    assert refused.value.code == 2 and "--jobs" in capsys.readouterr().err
    bucket = tmp_path / "bucket"  # a local copy, as `--anchors` reads it
    s3 = s3_client(ledger)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ledger.anchor_bucket):
        for obj in page.get("Contents", []):
            target = bucket / obj["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=ledger.anchor_bucket, Key=obj["Key"])["Body"].read())
    args = ["export", str(data), "--trust", str(trust), "--anchors", str(bucket), "--allow-pending", "--json"]
    assert main([*args, "--jobs", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["rows"] == 150 and [len(c) for c in cut_small_files] == [3]
