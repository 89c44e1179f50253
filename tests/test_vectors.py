"""Every value of tests/vectors/spec-v1.json (the contract's worked examples), reproduced."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pytest
from ledger_verify import DirectoryStore, Trust
from ledger_verify.anchors import AnchorChecker
from ledger_verify.errors import VerificationFailure
from ledger_verify.merkle import EMPTY_ROOT, merkle_tree_hash, tree_root_and_paths, verify_inclusion
from ledger_verify.trust import key_fingerprint

from compliance.anchor import load_private_key, sign_anchor
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


def vector_bucket(folder: Path, proofs: bytes) -> tuple[DirectoryStore, Trust, str]:
    """The vectors' anchor over ``proofs`` (re-signed with the vectors' key when the proofs differ), in a
    folder laid out as the bucket, and a trust file pinning that key."""
    anchor = json.loads(V["anchor_json"])
    cid = anchor["cadence_id"]
    unsigned = {k: v for k, v in anchor.items() if k != "signature"}
    unsigned["proofs_sha256"] = hashlib.sha256(proofs).hexdigest()
    key = load_private_key(V["signing_key_ed25519_private_hex"])
    for name, data in (
        (f"anchors/{cid}.json", sign_anchor(unsigned, key, "vectors-key-1")),
        (f"proofs/{cid}.ndjson", proofs),
        ("keys/vectors-key-1.pem", V["public_key_pem"].encode()),
    ):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    fingerprint = key_fingerprint(V["public_key_pem"].encode())
    trust = Trust.from_json(
        {
            "anchor_bucket": "acme-ledger-anchors",
            "keys": {"vectors-key-1": fingerprint},
            "lock_mode": "COMPLIANCE",
            "governance_until": None,
            "min_retention_days": 1,
        }
    )
    return DirectoryStore(folder), trust, cid


def test_an_anchor_checks_every_tenant_records_path_and_names_the_first_that_fails(tmp_path: Path) -> None:
    proofs = V["proofs_ndjson"].encode()
    store, trust, cid = vector_bucket(tmp_path / "good", proofs)
    verified = AnchorChecker(store, trust).check(cid)
    assert [r["tenant_id"] for r in verified.records] == [json.loads(x)["tenant_id"] for x in proofs.splitlines()]

    lines = [json.loads(x) for x in proofs.splitlines()]
    assert len(lines) >= 2
    for victim in range(len(lines)):
        changed = [dict(line) for line in lines]
        path = list(changed[victim]["audit_path"])
        path[-1] = ("0" if path[-1][0] != "0" else "1") + path[-1][1:]
        changed[victim]["audit_path"] = path
        forged = b"".join(canonical(line) + b"\n" for line in changed)
        store, trust, cid = vector_bucket(tmp_path / f"forged-{victim}", forged)
        with pytest.raises(VerificationFailure) as caught:
            AnchorChecker(store, trust).check(cid)
        assert caught.value.code == "bad_proof" and caught.value.tenant_id == lines[victim]["tenant_id"]
