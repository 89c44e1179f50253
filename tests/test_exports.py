"""Exports (docs/format.md §4): refusal codes at their boundaries, the job lifecycle, and offline verification."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import urllib.request
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from compliance.exports import EXPORT_COLUMNS, ExportRefused, parse_filter
from compliance.operators import OperatorRefused
from compliance.settings import Settings
from tasks.anchoring import anchor_once
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.exports import fresh_url, job_status, queue_export, request_export, run_job
from tasks.operators import enrol
from tasks.outbox import emit_batch
from tasks.storage import MultipartWriter, s3_client
from tasks.trust import deployment_trust
from tasks.verify import verify_export_file
from tests.conftest import run_cli, sample_event
from tests.test_anchor import KEY

OPS = "ops@example.com"
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
WINDOW = {"since": "2026-11-22T00:00:00Z", "until": "2026-11-23T00:00:00Z"}


def code_of(text: str) -> str:
    with pytest.raises(ExportRefused) as info:
        parse_filter(text)
    return info.value.code


def test_window_of_exactly_90_days_passes_and_one_second_more_is_too_wide() -> None:
    assert parse_filter('{"since": "2026-01-01T00:00:00Z", "until": "2026-04-01T00:00:00Z"}')
    assert code_of('{"since": "2026-01-01T00:00:00Z", "until": "2026-04-01T00:00:01Z"}') == "FILTER_RANGE_TOO_WIDE"


def test_filter_of_4096_bytes_passes_and_4097_is_too_large() -> None:
    base = '{"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}'
    at_limit = base[:-1] + " " * (4096 - len(base)) + "}"
    assert len(at_limit.encode()) == 4096
    assert parse_filter(at_limit)
    assert code_of(at_limit[:-1] + " }") == "FILTER_TOO_LARGE"


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"since": "2026-01-01T00:00:00Z"}',
        '{"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "tenant": "x"}',
        '{"since": "2026-01-01", "until": "2026-01-02T00:00:00Z"}',
        '{"since": "2026-01-01T00:00:00", "until": "2026-01-02T00:00:00Z"}',
        '{"since": "2026-01-01T00:00:00+25:00", "until": "2026-01-02T00:00:00Z"}',
        '{"since": "2026-01-02T00:00:00Z", "until": "2026-01-02T00:00:00Z"}',
        '{"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "event_types": ["x\'; DROP TABLE x;--"]}',
        '{"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "actor_types": ["robot"]}',
        '{"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "tenant_id": "a b"}',
        '{"since": "2026-01-01T00:00:00Z", "since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}',
    ],
)
def test_invalid_filters_are_refused_with_filter_invalid(text: str) -> None:
    assert code_of(text) == "FILTER_INVALID"


def counts(settings: Settings) -> tuple[int, int]:
    with connect(settings, None, autocommit=True) as conn:
        return (
            conn.execute("SELECT count(*) FROM compliance.export_jobs").fetchone()[0],
            conn.execute("SELECT count(*) FROM compliance.outbox").fetchone()[0],
        )


def test_the_10th_request_passes_the_11th_in_the_hour_fails_and_one_an_hour_later_passes(settings: Settings) -> None:
    for i in range(10):
        queue_export(settings, operator=OPS, fmt="csv", filter_text=WINDOW, now=T0 + timedelta(minutes=i))
    with pytest.raises(ExportRefused) as info:
        queue_export(settings, operator=OPS, fmt="csv", filter_text=WINDOW, now=T0 + timedelta(minutes=30))
    assert info.value.code == "RATE_LIMIT_EXCEEDED"
    assert counts(settings) == (10, 10)  # the refusal wrote nothing
    queue_export(settings, operator=OPS, fmt="csv", filter_text=WINDOW, now=T0 + timedelta(hours=1, seconds=1))
    assert counts(settings) == (11, 11)


def test_a_non_operator_is_refused_and_nothing_is_written(settings: Settings, env_for) -> None:
    with pytest.raises(OperatorRefused) as info:
        request_export(settings, operator="mallory@example.com", code="123456", fmt="csv", filter_text=WINDOW)
    assert info.value.code == "OPERATOR_NOT_ALLOWED"
    out = run_cli(
        [
            "export",
            "request",
            "--operator",
            "mallory@example.com",
            "--code",
            "123456",
            "--format",
            "csv",
            "--filter",
            json.dumps({**WINDOW, "tenant_id": "acme"}),
        ],
        env_for(settings),
    )
    assert out.returncode == 2 and "OPERATOR_NOT_ALLOWED" in out.stderr
    bad = run_cli(
        ["export", "request", "--operator", OPS, "--code", "123456", "--format", "csv", "--filter", '{"since": 1}'],
        env_for(settings),
    )
    assert bad.returncode == 2 and "FILTER_INVALID" in bad.stderr
    assert counts(settings) == (0, 0)


@pytest.fixture
def ledger(settings: Settings) -> Settings:
    """Three tenants, mostly anchored, with a tail that is not anchored yet."""

    def grow(start: int, n: int) -> None:
        with connect(settings, "compliance_writer") as conn, conn.transaction():
            emit_batch(
                conn,
                [
                    sample_event(
                        i,
                        tenant=f"tenant-{i % 3}",
                        actor_type=["user", "service"][i % 2],
                        payload={
                            "userId": f"u-{i}",
                            "method": "sso",
                            "ip": "10.0.0.1",
                            "userAgent": 'a "quoted", comma\nnewline',
                        },
                    )
                    for i in range(start, start + n)
                ],
            )
        drain_pending.fn(settings)

    grow(0, 90)
    anchor_once(settings, KEY)
    grow(90, 40)
    anchor_once(settings, KEY)
    grow(130, 20)
    return settings


def export(settings: Settings, fmt: str, flt: dict, tmp_path: Path) -> tuple[Path, dict]:
    job = queue_export(settings, operator=OPS, fmt=fmt, filter_text=flt)
    outcome = run_job(settings, job, signing_key=KEY)
    assert outcome is not None and outcome.status == "complete"
    data = tmp_path / f"events.{fmt}"
    s3 = s3_client(settings)
    data.write_bytes(s3.get_object(Bucket=settings.export_bucket, Key=outcome.data_key)["Body"].read())
    manifest = s3_client(settings).get_object(Bucket=settings.export_bucket, Key=outcome.manifest_key)["Body"].read()
    (tmp_path / "manifest.json").write_bytes(manifest)
    return data, json.loads(manifest)


def direct_rows(settings: Settings, tenant: str | None = None, actor: str | None = None) -> list[tuple[str, int]]:
    with connect(settings, None, autocommit=True) as conn:
        return [
            tuple(r)
            for r in conn.execute(
                "SELECT tenant_id, seq FROM compliance.events WHERE occurred_at >= '2026-11-22' AND occurred_at < "
                "'2026-11-23' AND (%s::text IS NULL OR tenant_id = %s) AND (%s::text IS NULL OR actor_type = %s) "
                "ORDER BY tenant_id, seq",
                (tenant, tenant, actor, actor),
            )
        ]


def verify(settings: Settings, data: Path, manifest: dict | None):
    """The ledger fixture keeps an unanchored tail on purpose: pending rows are allowed here."""
    return verify_export_file(settings, data, manifest, allow_pending=True)


def write_trust(settings: Settings, path: Path) -> Path:
    path.write_text(json.dumps(deployment_trust(settings, signing=KEY).as_json()))
    return path


def test_csv_and_ndjson_hold_the_same_rows_as_a_direct_query(ledger: Settings, tmp_path: Path) -> None:
    csv_file, _ = export(ledger, "csv", WINDOW, tmp_path / "a" if (tmp_path / "a").mkdir() is None else tmp_path)
    nd_file, _ = export(ledger, "ndjson", WINDOW, tmp_path / "b" if (tmp_path / "b").mkdir() is None else tmp_path)
    csv_rows = list(csv.DictReader(io.StringIO(csv_file.read_text())))
    nd_rows = [json.loads(line) for line in nd_file.read_text().splitlines()]
    expected = direct_rows(ledger)
    assert [(r["tenant_id"], int(r["seq"])) for r in csv_rows] == expected
    assert [(r["tenant_id"], r["seq"]) for r in nd_rows] == expected
    for c, n in zip(csv_rows, nd_rows):
        assert json.loads(c["payload"]) == n["payload"] and c["event_hash"] == n["event_hash"]
        assert c["event_path"].split(";") if c["event_path"] else [] == n["event_path"]
    assert sum(1 for r in nd_rows if r["cadence_id"] is None) == 20


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_verify_export_passes_on_a_real_export(ledger: Settings, tmp_path: Path, fmt: str, env_for) -> None:
    data, manifest = export(ledger, fmt, WINDOW, tmp_path)
    report = verify(ledger, data, manifest)
    assert report.ok, report.summary()
    assert (report.rows, report.anchored, report.pending, len(report.cadences)) == (150, 130, 20, 2)
    trust = write_trust(ledger, tmp_path / "trust.json")
    out = run_cli(["verify", "export", str(data), "--trust", str(trust), "--json"], env_for(ledger))
    assert out.returncode == 1 and json.loads(out.stdout)["failure"]["code"] == "pending"  # the unanchored tail
    out = run_cli(["verify", "export", str(data), "--trust", str(trust), "--allow-pending", "--json"], env_for(ledger))
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["anchored_rows"] == 130


def test_a_filtered_export_verifies_with_gaps_in_seq(ledger: Settings, tmp_path: Path) -> None:
    data, manifest = export(ledger, "csv", {**WINDOW, "tenant_id": "tenant-1", "actor_types": ["service"]}, tmp_path)
    assert manifest["row_count"] == len(direct_rows(ledger, "tenant-1", "service")) > 0
    assert verify(ledger, data, manifest).ok


COLUMNS_TO_TAMPER = [c for c in EXPORT_COLUMNS if c != "cadence_id"]  # every field the row's proof depends on


@pytest.mark.parametrize("column", COLUMNS_TO_TAMPER)
def test_verify_export_names_the_row_after_any_field_is_changed(ledger: Settings, tmp_path: Path, column: str) -> None:
    data, manifest = export(ledger, "ndjson", WINDOW, tmp_path)
    lines = [json.loads(x) for x in data.read_text().splitlines()]
    victim = 37  # an anchored row in the middle
    row = lines[victim]
    if column == "seq":
        row[column] += 1
    elif column in ("payload",):
        row[column]["userId"] = "someone-else"
    elif column == "redacted_fields":
        row[column] = ["password"]
    elif column in ("prev_hash", "event_hash"):
        row[column] = ("0" if row[column][0] != "0" else "1") + row[column][1:]
    elif column == "event_index":
        row[column] += 1
    elif column == "event_path":
        row[column][0] = ("0" if row[column][0][0] != "0" else "1") + row[column][0][1:]
    elif column == "occurred_at":
        row[column] = row[column][:-2] + ("1Z" if row[column][-2] != "1" else "2Z")
    else:
        row[column] = row[column] + "x" if column != "tenant_id" else "tenant-1"
    data.write_text("".join(json.dumps(r) + "\n" for r in lines))
    # Without the manifest the rows themselves give the change away; with it, too.
    for manifest_given in (None, manifest):
        report = verify(ledger, data, manifest_given)
        assert not report.ok and report.failure is not None
        assert report.failure.row == victim + 1, report.failure


@pytest.mark.parametrize("where", ["row", "payload"])
def test_an_ndjson_row_that_names_a_key_twice_fails_even_when_the_last_value_is_the_original(
    ledger: Settings, tmp_path: Path, where: str
) -> None:
    # A parser that keeps the last of two equal keys sees the original row (its hash and proof hold);
    # one that keeps the first sees the forged value. Such a row must not verify.
    data, _ = export(ledger, "ndjson", WINDOW, tmp_path)
    lines = data.read_text().splitlines(keepends=True)
    victim = 12
    original = json.loads(lines[victim])
    assert "userId" in original["payload"]
    if where == "row":
        lines[victim] = '{"actor_id":"forged",' + lines[victim][1:]
    else:
        lines[victim] = lines[victim].replace('"payload":{', '"payload":{"userId":"forged",', 1)
    assert json.loads(lines[victim]) == original  # what a last-key-wins reader makes of it
    data.write_text("".join(lines))
    report = verify(ledger, data, None)
    assert not report.ok and report.failure is not None
    assert (report.failure.row, report.failure.code) == (victim + 1, "malformed_row"), report.failure
    assert "duplicate key" in report.failure.detail


def test_verify_export_names_a_row_dropped_from_the_middle(ledger: Settings, tmp_path: Path) -> None:
    data, manifest = export(ledger, "csv", WINDOW, tmp_path)
    lines = data.read_text().splitlines(keepends=True)
    del lines[1 + 20]  # header + 20 rows kept, row 21 dropped
    data.write_text("".join(lines))
    report = verify(ledger, data, manifest)
    assert not report.ok and report.failure.row == 21 and report.failure.code == "dropped_or_added_row"


def test_verify_export_names_an_added_row(ledger: Settings, tmp_path: Path) -> None:
    data, manifest = export(ledger, "csv", WINDOW, tmp_path)
    lines = data.read_text().splitlines(keepends=True)
    lines.insert(11, lines[10])  # row 10 again, as row 11
    data.write_text("".join(lines))
    report = verify(ledger, data, manifest)
    assert not report.ok and report.failure.row == 11
    assert verify(ledger, data, None).failure.row == 11  # without a manifest: out of order


def test_a_job_claimed_twice_runs_once(ledger: Settings) -> None:
    job = queue_export(ledger, operator=OPS, fmt="csv", filter_text=WINDOW)
    assert run_job(ledger, job, signing_key=KEY) is not None
    assert run_job(ledger, job, signing_key=KEY) is None
    assert job_status(ledger, job)["status"] == "complete"


def test_the_download_link_is_fetched_over_http_and_carries_a_900_second_expiry(
    ledger: Settings, env_for, tmp_path: Path
) -> None:
    from tests.test_operators import Authenticator

    ops = Authenticator(ledger, enrol(ledger, OPS, cross_tenant=True))
    job = queue_export(ledger, operator=OPS, fmt="csv", filter_text=WINDOW)
    outcome = run_job(ledger, job, signing_key=KEY)
    url, expires = fresh_url(ledger, job, OPS, ops.code())
    assert "X-Amz-Expires=900" in url
    until = datetime.fromisoformat(expires.replace("Z", "+00:00"))
    assert timedelta(seconds=890) < until - datetime.now(UTC) <= timedelta(seconds=900)
    with urllib.request.urlopen(url) as resp:  # the presigned URL, over HTTP
        assert hashlib.sha256(resp.read()).hexdigest() == outcome.data_sha256
    out = run_cli(["export", "url", job, "--operator", OPS, "--code", ops.code()], env_for(ledger))
    assert out.returncode == 0 and "X-Amz-Expires=900" in out.stdout
    with connect(ledger, None, autocommit=True) as conn:
        audited = conn.execute(
            "SELECT count(*) FROM compliance.outbox WHERE event_type = 'data.export_url_issued'"
        ).fetchone()[0]
    assert audited == 2


def test_a_failing_job_is_marked_failed_with_a_readable_error(ledger: Settings) -> None:
    broken = Settings(**{**ledger.__dict__, "export_bucket": "no-such-bucket-anywhere"})
    job = queue_export(broken, operator=OPS, fmt="csv", filter_text=WINDOW)
    with pytest.raises(Exception):
        run_job(broken, job, signing_key=KEY)
    status = job_status(broken, job)
    assert status["status"] == "failed" and "NoSuchBucket" in status["job_error"]


def test_requesting_an_export_is_audited_in_the_same_transaction(ledger: Settings) -> None:
    job = queue_export(ledger, operator=OPS, fmt="ndjson", filter_text={**WINDOW, "tenant_id": "tenant-2"})
    with connect(ledger, None, autocommit=True) as conn:
        tenant, payload = conn.execute(
            "SELECT tenant_id, payload FROM compliance.outbox WHERE event_type = 'data.export_initiated'"
        ).fetchone()
    assert tenant == "tenant-2"
    assert json.loads(payload) == {
        "exportJobId": job,
        "filter": {
            "since": "2026-11-22T00:00:00.000000Z",
            "until": "2026-11-23T00:00:00.000000Z",
            "tenant_id": "tenant-2",
        },
        "format": "ndjson",
        "requestedBy": OPS,
    }


@pytest.mark.parametrize("element", [0, -1, -2])
def test_any_element_of_an_event_path_is_checked_even_where_rows_share_proven_nodes(
    ledger: Settings, tmp_path: Path, element: int
) -> None:
    data, manifest = export(ledger, "ndjson", WINDOW, tmp_path)
    lines = [json.loads(x) for x in data.read_text().splitlines()]
    victim = 25  # earlier rows of the same range have already proven the upper levels
    path = lines[victim]["event_path"]
    path[element] = ("0" if path[element][0] != "0" else "1") + path[element][1:]
    data.write_text("".join(json.dumps(r) + "\n" for r in lines))
    report = verify(ledger, data, manifest)
    assert not report.ok and report.failure.row == victim + 1 and report.failure.code == "bad_proof"


def rewrite_csv(data: Path, change) -> None:
    """Rewrite the CSV export after ``change(rows)`` edits its rows (dicts of cell text), as csv writes it."""
    rows = list(csv.DictReader(io.StringIO(data.read_text(), newline="")))
    change(rows)
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_COLUMNS), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    data.write_text(out.getvalue(), newline="")


CSV_TEXT_CHANGES = {
    "seq": lambda v: str(int(v) + 1),
    "event_index": lambda v: str(int(v) + 1),
    "prev_hash": lambda v: ("0" if v[0] != "0" else "1") + v[1:],
    "event_path": lambda v: v[:-1] + ("0" if v[-1] != "0" else "1"),
}


@pytest.mark.parametrize("column", sorted(CSV_TEXT_CHANGES))
def test_a_changed_csv_cell_read_without_parsing_is_still_named(ledger: Settings, tmp_path: Path, column: str) -> None:
    # seq, event_index and prev_hash cells that read as expected are taken without being parsed: a changed
    # one must still be caught at its row.
    data, manifest = export(ledger, "csv", WINDOW, tmp_path)
    victim = 37

    def change(rows: list[dict[str, str]]) -> None:
        rows[victim][column] = CSV_TEXT_CHANGES[column](rows[victim][column])

    rewrite_csv(data, change)
    for manifest_given in (None, manifest):
        report = verify(ledger, data, manifest_given)
        assert report.failure is not None and report.failure.row == victim + 1, report.failure


def test_a_row_of_a_range_unanchored_in_the_middle_leaves_the_others_proven_and_named(
    ledger: Settings, tmp_path: Path
) -> None:
    # A row whose cadence is blanked ends the buffered rows of its range; the range's later rows are then
    # proven one by one, each named by its own row number.
    data, _ = export(ledger, "csv", WINDOW, tmp_path)
    victim = 20
    blank = {"cadence_id": "", "event_index": "", "event_path": ""}
    rewrite_csv(data, lambda rows: rows[victim].update(blank))
    report = verify(ledger, data, None)
    assert report.ok and (report.anchored, report.pending) == (129, 21), report.summary()

    def also_break_a_later_path(rows: list[dict[str, str]]) -> None:
        path = rows[victim + 3]["event_path"]
        rows[victim + 3]["event_path"] = ("0" if path[0] != "0" else "1") + path[1:]

    rewrite_csv(data, also_break_a_later_path)
    report = verify(ledger, data, None)
    assert report.failure is not None, report.summary()
    assert (report.failure.code, report.failure.row) == ("bad_proof", victim + 4), report.failure


def test_a_large_file_goes_up_in_parts_each_checked_by_its_crc32(settings: Settings) -> None:
    s3 = s3_client(settings)
    bucket = "multipart-check"
    s3.create_bucket(Bucket=bucket)
    chunks = [bytes([i]) * (2 * 2**20 + 7) for i in range(6)]  # 12 MB in odd sizes: three parts, the last short
    out = MultipartWriter(s3, bucket, "big.csv", content_type="text/csv", part_size=5 * 2**20)
    for chunk in chunks:
        out.write(chunk)
    out.close()
    expected = b"".join(chunks)
    assert s3.get_object(Bucket=bucket, Key="big.csv")["Body"].read() == expected
    head = s3.head_object(Bucket=bucket, Key="big.csv", ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ChecksumType"] == "COMPOSITE"
    part_crcs = b"".join(
        zlib.crc32(expected[i : i + 5 * 2**20]).to_bytes(4, "big") for i in range(0, len(expected), 5 * 2**20)
    )
    # AWS appends "-<parts>" to a composite checksum; the local S3 server does not
    assert head["ChecksumCRC32"].split("-")[0] == base64.b64encode(zlib.crc32(part_crcs).to_bytes(4, "big")).decode()


def test_every_part_and_the_completion_carry_the_crc32_of_the_bytes_sent(settings: Settings) -> None:
    # S3 refuses a part whose bytes do not match its CRC32 (BadDigest); the local S3 server does not check
    # it, so this holds our side: the CRC32 sent is the CRC32 of exactly the bytes sent, part by part.
    s3 = s3_client(settings)
    bucket = "multipart-check-crc"
    s3.create_bucket(Bucket=bucket)
    sent: dict[str, list[dict[str, object]]] = {"UploadPart": [], "CompleteMultipartUpload": []}

    def record(params: dict[str, object], model: object, **kwargs: object) -> None:
        sent[model.name].append(dict(params))  # type: ignore[attr-defined]

    s3.meta.events.register("provide-client-params.s3.UploadPart", record)
    s3.meta.events.register("provide-client-params.s3.CompleteMultipartUpload", record)
    out = MultipartWriter(s3, bucket, "x.ndjson", content_type="application/x-ndjson", part_size=5 * 2**20)
    out.write(b"a" * (5 * 2**20 + 1))
    out.write(b"b" * (5 * 2**20 + 2))
    out.close()
    parts = sorted(sent["UploadPart"], key=lambda p: p["PartNumber"])  # type: ignore[arg-type,return-value]
    assert [len(p["Body"]) for p in parts] == [5 * 2**20, 5 * 2**20, 3]  # type: ignore[arg-type]
    crcs = [base64.b64encode(zlib.crc32(p["Body"]).to_bytes(4, "big")).decode() for p in parts]  # type: ignore[arg-type]
    assert [p["ChecksumCRC32"] for p in parts] == crcs
    (complete,) = sent["CompleteMultipartUpload"]
    assert [p["ChecksumCRC32"] for p in complete["MultipartUpload"]["Parts"]] == crcs  # type: ignore[index]


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_a_file_whose_rows_all_verify_but_whose_bytes_differ_fails_on_its_sha256(
    ledger: Settings, tmp_path: Path, fmt: str
) -> None:
    data, manifest = export(ledger, fmt, WINDOW, tmp_path)
    assert verify(ledger, data, manifest).ok
    lines = data.read_text().splitlines(keepends=True)
    if fmt == "csv":
        first = lines[1]
        lines[1] = '"' + first.split(",", 1)[0] + '",' + first.split(",", 1)[1]  # the same value, quoted
    else:
        lines[0] = json.dumps(json.loads(lines[0])) + "\n"  # the same object, with spaces
    data.write_text("".join(lines))
    assert verify(ledger, data, None).ok  # every row still verifies on its own
    report = verify(ledger, data, manifest)
    assert not report.ok and report.failure.code == "data_sha256", report.failure


def _inject(event: str, change: object) -> object:
    """Register ``change`` on every S3 client created from now on (the runner makes its own): a fault on the
    way to the real S3 server, as a faulty proxy or client library would make it."""
    import boto3

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION._session  # type: ignore[union-attr]
    session.register(event, change)
    return lambda: session.unregister(event, change)


@pytest.mark.parametrize("kept", [0, 1000])
def test_an_upload_that_lost_bytes_fails_the_job_and_is_never_reported_complete(ledger: Settings, kept: int) -> None:
    def truncate(params: dict[str, object], **kwargs: object) -> None:
        if str(params.get("Key", "")).endswith("/events.csv"):
            params["Body"] = bytes(params["Body"])[:kept]  # type: ignore[arg-type]
            params.pop("ChecksumCRC32", None)  # lost before it was checksummed

    job = queue_export(ledger, operator=OPS, fmt="csv", filter_text=WINDOW)
    undo = _inject("provide-client-params.s3.PutObject", truncate)
    try:
        with pytest.raises(Exception, match=rf"holds {kept} bytes; \d+ were written"):
            run_job(ledger, job, signing_key=KEY)
    finally:
        undo()  # type: ignore[operator]
    status = job_status(ledger, job)
    assert status is not None and status["status"] == "failed"
    assert "UploadMismatch" in status["job_error"] and f"holds {kept} bytes" in status["job_error"]
    assert status.get("manifest_key") is None


def test_a_part_dropped_from_a_multipart_upload_is_caught_before_it_counts(settings: Settings) -> None:
    from tasks.storage import UploadMismatch

    s3 = s3_client(settings)

    def drop_last(params: dict[str, object], **kwargs: object) -> None:
        params["MultipartUpload"]["Parts"].pop()  # type: ignore[index]

    s3.meta.events.register("provide-client-params.s3.CompleteMultipartUpload", drop_last)
    out = MultipartWriter(s3, settings.export_bucket, "short.csv", content_type="text/csv", part_size=5 * 2**20)
    out.write(b"x" * (12 * 2**20))
    out.close()
    with pytest.raises(UploadMismatch, match=rf"holds {10 * 2**20} bytes; {12 * 2**20} were written"):
        out.verify()


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_a_filter_that_matches_nothing_yields_an_empty_valid_signed_export(
    ledger: Settings, tmp_path: Path, fmt: str, env_for
) -> None:
    nothing = {"since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"}
    data, manifest = export(ledger, fmt, nothing, tmp_path)
    assert manifest["row_count"] == 0 and manifest["signature"]
    assert data.read_bytes() == (b"" if fmt == "ndjson" else (",".join(EXPORT_COLUMNS) + "\r\n").encode())
    trust = write_trust(ledger, tmp_path / "trust.json")
    out = run_cli(["verify", "export", str(data), "--trust", str(trust), "--json"], env_for(ledger))
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["rows"] == 0
