"""One event's hashed bytes read back into other field values: the same bytes, so the same hash and the
same proof, but fields that are not the event's. The bytes name each field by a fixed key between the
values; a payload may hold those keys itself, so a row whose fields are cut at other places can rebuild
exactly the original bytes. Every verifier must refuse such a row (ledger_verify.chain.quoted_field)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from ledger_verify.chain import GENESIS_HASH, ChainVerifier, StoredEvent, stored_body

from compliance.settings import Settings
from tasks.anchoring import anchor_once
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.outbox import emit_batch
from tasks.verify import verify_export_file
from tests.conftest import sample_event
from tests.test_anchor import KEY
from tests.test_exports import WINDOW, export, rewrite_csv

# Payload subjects that hold, nested, the keys that follow the payload (or precede it) in the hashed bytes.
SUBJECTS = {
    "into_redacted_fields": {"a": "b", "recorded_at": "2026-11-22T09:00:00.000000Z", "redacted_fields": ["x"], "z": 1},
    "into_event_type": {"a": "b", "occurred_at": "2026-11-21T00:00:00.000000Z", "payload": {"c": 1}},
}


def into_redacted_fields(row: dict[str, str]) -> dict[str, str]:
    """The payload cut before its nested recorded_at, whose value becomes the row's; the rest of the payload,
    the real recorded_at and redacted_fields all go into redacted_fields."""
    payload, marker = row["payload"], ',"recorded_at":"'
    k = payload.index(marker)
    rest = payload[k + len(marker) :]
    x = rest[: rest.index('"')]
    after = rest[len(x) :]
    assert after.startswith('","redacted_fields":')
    return {
        **row,
        "payload": payload[:k],
        "recorded_at": x,
        "redacted_fields": after[len('","redacted_fields":') :]
        + f',"recorded_at":"{row["recorded_at"]}","redacted_fields":{row["redacted_fields"]}',
    }


def into_event_type(row: dict[str, str]) -> dict[str, str]:
    """event_type takes the real occurred_at and the payload up to its nested occurred_at, whose value becomes
    the row's; the payload is what follows the nested "payload" key."""
    payload, marker = row["payload"], ',"occurred_at":"'
    k = payload.index(marker)
    assert payload[k - 1] == '"'
    rest = payload[k + len(marker) :]
    z = rest[: rest.index('"')]
    after = rest[len(z) :]
    assert after.startswith('","payload":')
    return {
        **row,
        "event_type": f'{row["event_type"]}","occurred_at":"{row["occurred_at"]}","payload":{payload[: k - 1]}',
        "occurred_at": z,
        "payload": after[len('","payload":') :],
    }


FORGERIES: dict[str, Callable[[dict[str, str]], dict[str, str]]] = {
    "into_redacted_fields": into_redacted_fields,
    "into_event_type": into_event_type,
}
HASHED = ("tenant_id", "seq", "event_id", "occurred_at", "recorded_at", "actor_type", "actor_id", "source")
HASHED += ("event_type", "payload", "redacted_fields")


def body_of(row: dict[str, str]) -> bytes:
    cells = [row[c] for c in HASHED]
    return stored_body(cells, int(row["seq"]), row["payload"], row["redacted_fields"])


def stored(row: dict[str, str], prev: bytes, digest: bytes) -> StoredEvent:
    return StoredEvent(row["tenant_id"], int(row["seq"]), *(row[c] for c in HASHED[2:]), prev, digest)


def original(subject: dict) -> dict[str, str]:
    return {
        "tenant_id": "shift",
        "seq": "1",
        "event_id": "019a8b2c-0000-7001-8000-000000000001",
        "occurred_at": "2026-11-22T10:00:00.000001Z",
        "recorded_at": "2026-11-22T10:00:01.000001Z",
        "actor_type": "service",
        "actor_id": "actor-1",
        "source": "web",
        "event_type": "policy.evaluated",
        "payload": json.dumps({"decision": "allow", "subject": subject}, separators=(",", ":"), sort_keys=True),
        "redacted_fields": "[]",
    }


@pytest.mark.parametrize("how", sorted(FORGERIES))
def test_the_chain_check_refuses_a_stored_event_cut_into_other_fields(how: str) -> None:
    row = original(SUBJECTS[how])
    digest = hashlib.sha256(GENESIS_HASH + body_of(row)).digest()
    forged = FORGERIES[how](row)
    assert body_of(forged) == body_of(row) and forged != row  # the same bytes, other fields

    verifier = ChainVerifier()
    assert verifier.check(stored(row, GENESIS_HASH, digest)), verifier.failure
    verifier = ChainVerifier()
    assert not verifier.check(stored(forged, GENESIS_HASH, digest))
    assert verifier.failure is not None and verifier.failure.code == "hash_mismatch", verifier.failure


def test_a_redacted_field_name_holding_a_quote_and_colon_still_verifies_in_its_canonical_form() -> None:
    row = {**original({"k": 1}), "redacted_fields": json.dumps(['a":b'])}
    assert '":' in row["redacted_fields"]
    digest = hashlib.sha256(GENESIS_HASH + body_of(row)).digest()
    verifier = ChainVerifier()
    assert verifier.check(stored(row, GENESIS_HASH, digest)), verifier.failure
    loose = {**row, "redacted_fields": '[ "a\\":b"]'}  # the same list, not in RFC 8785 form
    digest = hashlib.sha256(GENESIS_HASH + body_of(loose)).digest()
    verifier = ChainVerifier()
    assert not verifier.check(stored(loose, GENESIS_HASH, digest))
    assert verifier.failure is not None and "RFC 8785" in verifier.failure.detail


@pytest.fixture
def crafted(settings: Settings) -> Settings:
    """Tenant shift: one anchored event for each subject (between two plain ones), and one whose redacted-field
    list holds '":'."""
    events = [sample_event(0, tenant="shift")]
    events += [
        sample_event(i + 1, tenant="shift", event_type="policy.evaluated", payload={"decision": "allow", "subject": s})
        for i, s in enumerate(SUBJECTS[k] for k in sorted(SUBJECTS))
    ]
    events.append(sample_event(9, tenant="shift"))
    # Honest, and hashed as given only in RFC 8785 form: a redacted name holding '":' (the payload key dropped),
    # beside a double that RFC 8785 writes as a long integer.
    honest = {"policyId": "p-1", "decision": "allow", "subject": {"limit": 1e20}, 'note":': 1}
    events.append(sample_event(10, tenant="shift", event_type="policy.evaluated", payload=honest))
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(conn, events)
    drain_pending.fn(settings)
    anchor_once(settings, KEY)
    return settings


def csv_forged(data: Path, victim: int, forge: Callable[[dict[str, str]], dict[str, str]]) -> None:
    def change(rows: list[dict[str, str]]) -> None:
        rows[victim] = forge(rows[victim])

    rewrite_csv(data, change)


def ndjson_forged(data: Path, victim: int, forge: Callable[[dict[str, str]], dict[str, str]]) -> None:
    """The payload and redacted_fields given as JSON text (strings), as a CSV cell gives them."""
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    texts = {k: json.dumps(rows[victim][k], separators=(",", ":"), ensure_ascii=False) for k in HASHED[9:]}
    cells = {**{k: str(v) for k, v in rows[victim].items() if k in HASHED[:9]}, **texts}
    rows[victim].update({k: v for k, v in forge(cells).items() if k != "seq"})
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
@pytest.mark.parametrize("how", sorted(FORGERIES))
def test_verify_export_refuses_a_row_cut_into_other_fields(crafted: Settings, tmp_path: Path, fmt: str, how: str) -> None:
    data, manifest = export(crafted, fmt, {**WINDOW, "tenant_id": "shift"}, tmp_path)
    report = verify_export_file(crafted, data, manifest)
    assert report.ok and report.rows == 5, report.summary()  # the real rows, nested keys and all, verify

    victim = 1 + sorted(SUBJECTS).index(how)
    (csv_forged if fmt == "csv" else ndjson_forged)(data, victim, FORGERIES[how])
    for manifest_given in (None, manifest):
        report = verify_export_file(crafted, data, manifest_given)
        assert report.failure is not None, report.summary()
        assert (report.failure.code, report.failure.row) == ("malformed_row", victim + 1), report.failure
