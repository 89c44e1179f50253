"""docs/format.md: every worked example on the page is what the code makes of the contract's vectors."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ledger_verify import DirectoryStore, Trust
from ledger_verify.anchors import check_signature
from ledger_verify.chain import GENESIS_HASH, stored_body
from ledger_verify.jcs import canonical
from ledger_verify.rows import neutralise, restore
from ledger_verify.trust import key_fingerprint

from compliance.anchor import load_private_key, signed
from compliance.exports import CSV_HEADER, csv_row

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "format.md").read_text()
V = json.loads((REPO / "tests" / "vectors" / "spec-v1.json").read_text())
NEUTRALISED = ['=HYPERLINK("http://x")', "+14155550123", "-1", "@SUM(A1)", "'quoted", "plain"]
MANIFEST_JOB = "019a8b2c-0000-7001-8000-00000000e001"


def examples() -> dict[str, str]:
    found = re.findall(r"<!-- example: ([a-z-]+) -->\n\s*```[a-z]*\n(.*?)\n\s*```", DOC, flags=re.S)
    return {
        name: "\n".join(line.strip() if name not in ("csv",) else line for line in body.splitlines())
        for name, body in found
    }


def vector_row(e: dict) -> tuple:
    """A vector event as a stored row: the columns of an export up to event_hash."""
    return (
        e["tenant_id"],
        e["seq"],
        e["event_id"],
        e["occurred_at"],
        e["recorded_at"],
        e["actor_type"],
        e["actor_id"],
        e["source"],
        e["event_type"],
        canonical(e["payload"]).decode(),
        canonical(e["redacted_fields"]).decode(),
        e["prev_hash"],
        e["event_hash"],
    )


def vector_body(e: dict) -> bytes:
    r = vector_row(e)
    return stored_body(r, e["seq"], r[9], r[10])


def vector_csv() -> bytes:
    anchor = json.loads(V["anchor_json"])
    rows = []
    for e in V["events"]:
        if e["tenant_id"] != "acme-corp":
            continue
        r = vector_row(e)
        rows.append(csv_row(r, ";".join(e["event_path"]), anchor["cadence_id"], e["event_index"]))
    return (CSV_HEADER + "".join(rows)).encode()


def vector_manifest() -> dict:
    anchor = json.loads(V["anchor_json"])
    line = next(json.loads(x) for x in V["proofs_ndjson"].splitlines() if json.loads(x)["tenant_id"] == "acme-corp")
    unsigned = {
        "v": 2,
        "kind": "export-manifest",
        "job_id": MANIFEST_JOB,
        "format": "csv",
        "filter": {
            "since": "2026-11-22T00:00:00.000000Z",
            "until": "2026-11-23T00:00:00.000000Z",
            "tenant_id": "acme-corp",
        },
        "row_count": 5,
        "data_key": f"exports/{MANIFEST_JOB}/events.csv",
        "data_sha256": hashlib.sha256(vector_csv()).hexdigest(),
        "generated_at": "2026-11-22T05:00:00.000000Z",
        "anchor_bucket": "acme-ledger-anchors",
        "rows": {"acme-corp": [[1, 5]]},
        "cadences": {anchor["cadence_id"]: {"tenant_records": [line]}},
    }
    return signed(unsigned, load_private_key(V["signing_key_ed25519_private_hex"]), "vectors-key-1")


def expected() -> dict[str, str]:
    first = V["events"][0]
    pem = V["public_key_pem"].encode()
    return {
        "event-body": vector_body(first).decode(),
        "event-hash": hashlib.sha256(GENESIS_HASH + vector_body(first)).hexdigest(),
        "tenant-record": canonical(V["tenant_records"][0]).decode(),
        "proofs-line": V["proofs_ndjson"].splitlines()[0],
        "anchor": V["anchor_json"],
        "public-key": V["public_key_pem"].strip(),
        "fingerprint": key_fingerprint(pem),
        "neutralise": "\n".join(f"{v:<24} -> {neutralise(v)}" for v in NEUTRALISED),
        "csv": vector_csv().decode().replace("\r\n", "\n").rstrip("\n"),
        "manifest": json.dumps(vector_manifest(), indent=1, ensure_ascii=False),
        "trust": json.dumps(
            {
                "anchor_bucket": "acme-ledger-anchors",
                "keys": {"vectors-key-1": key_fingerprint(pem)},
                "lock_mode": "COMPLIANCE",
                "governance_until": "2026-11-22T04:15:00.000000Z",
                "min_retention_days": 365,
            },
            indent=1,
        ),
    }


def test_every_example_on_the_page_is_what_the_code_computes() -> None:
    got = examples()
    want = expected()
    assert set(got) == set(want)
    for name, text in want.items():
        normalised = "\n".join(line.strip() if name != "csv" else line for line in text.splitlines())
        assert got[name] == normalised, name


def test_the_examples_verify_as_the_page_says(tmp_path: Path) -> None:
    got = examples()
    assert hashlib.sha256(GENESIS_HASH + got["event-body"].encode()).hexdigest() == got["event-hash"]
    assert got["event-hash"] == V["events"][0]["event_hash"]
    trust = Trust.from_json(json.loads(got["trust"]))
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "vectors-key-1.pem").write_text(V["public_key_pem"])
    public = trust.public_key(DirectoryStore(tmp_path), "vectors-key-1", "the example")
    check_signature(json.loads(got["anchor"]), public, "the vectors' anchor")  # raises unless it verifies
    check_signature(json.loads(got["manifest"]), public, "the example manifest")
    for value in NEUTRALISED:
        assert restore(neutralise(value)) == value
