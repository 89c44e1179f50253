"""Every value of tests/vectors/spec-v1.json (the contract's worked examples), reproduced."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from ledger_verify.merkle import EMPTY_ROOT, merkle_tree_hash, tree_root_and_paths, verify_inclusion

from compliance.chain import canonical_body, event_hash
from compliance.jcs import canonical, canonical_str

VECTORS = Path(__file__).resolve().parent / "vectors" / "spec-v1.json"
V = json.loads(VECTORS.read_text("utf-8"))


@pytest.mark.parametrize("e", V["events"], ids=lambda e: f"{e['tenant_id']}-{e['seq']}")
def test_event_canonical_body_and_hash(e: dict) -> None:
    body = canonical_body(
        seq=e["seq"],
        event_id=e["event_id"],
        tenant_id=e["tenant_id"],
        occurred_at=e["occurred_at"],
        recorded_at=e["recorded_at"],
        actor_type=e["actor_type"],
        actor_id=e["actor_id"],
        source=e["source"],
        event_type=e["event_type"],
        payload_jcs=canonical_str(e["payload"]),
        redacted_fields_jcs=canonical_str(e["redacted_fields"]),
    )
    assert body.decode("utf-8") == e["canonical_body"]
    assert event_hash(bytes.fromhex(e["prev_hash"]), body).hex() == e["event_hash"]


def test_chains_link_each_event_to_its_predecessor() -> None:
    last: dict[str, str] = {}
    for e in V["events"]:
        assert e["prev_hash"] == last.get(e["tenant_id"], "00" * 32)
        last[e["tenant_id"]] = e["event_hash"]


def test_tenant_records_events_roots_and_event_paths() -> None:
    by_tenant = defaultdict(list)
    for e in V["events"]:
        by_tenant[e["tenant_id"]].append(e)
    for record in V["tenant_records"]:
        events = by_tenant[record["tenant_id"]]
        leaves = [bytes.fromhex(e["event_hash"]) for e in events]
        root, paths = tree_root_and_paths(leaves)
        assert root.hex() == record["events_root"]
        assert record["head_hash"] == events[-1]["event_hash"]
        assert (record["first_seq"], record["last_seq"]) == (events[0]["seq"], events[-1]["seq"])
        for e, path in zip(events, paths):
            assert [p.hex() for p in path] == e["event_path"]
            assert verify_inclusion(leaves[e["event_index"]], e["event_index"], len(leaves), path, root)


def test_proofs_file_and_merkle_root() -> None:
    records = sorted(V["tenant_records"], key=lambda r: r["tenant_id"].encode("utf-8"))
    root, paths = tree_root_and_paths([canonical(r) for r in records])
    lines = b"".join(
        canonical({**r, "leaf_index": i, "audit_path": [p.hex() for p in path]}) + b"\n"
        for i, (r, path) in enumerate(zip(records, paths))
    )
    assert lines.decode("utf-8") == V["proofs_ndjson"]
    assert root.hex() == json.loads(V["anchor_json"])["merkle_root"]


def test_empty_tree_root() -> None:
    assert merkle_tree_hash([]).hex() == V["empty_tree_root"] == EMPTY_ROOT.hex()
