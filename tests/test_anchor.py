"""Anchors in the Object Lock bucket: idempotent, crash-safe, and every tampering caught by `verify chain`."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from botocore.exceptions import ClientError

from compliance.anchor import anchor_key, load_private_key, proofs_key
from compliance.chain import GENESIS_HASH, canonical_body
from compliance.settings import Settings
from tasks import anchoring
from tasks.anchoring import anchor_once
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.outbox import emit_batch
from tasks.signing import SigningKey
from tasks.storage import provision_anchor_bucket, s3_client
from tasks.verify import verify_chain
from tests.conftest import TEST_SIGNING_KEY, run_cli, sample_event

KEY = SigningKey(load_private_key(TEST_SIGNING_KEY))


def grow(settings: Settings, n: int, tenants: int, start: int = 0) -> None:
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(conn, [sample_event(i, tenant=f"tenant-{i % tenants:03d}") for i in range(start, start + n)])
    drain_pending.fn(settings)


def keys(settings: Settings, prefix: str = "") -> list[str]:
    out = s3_client(settings).list_objects_v2(Bucket=settings.anchor_bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in out)


def versions(settings: Settings, key: str) -> int:
    got = s3_client(settings).list_object_versions(Bucket=settings.anchor_bucket, Prefix=key)
    return len(got.get("Versions", []))


def failure_of(settings: Settings) -> tuple:
    report = verify_chain(settings)
    assert not report.ok and report.failure is not None
    return report.failure


def test_anchors_of_several_cadences_with_many_tenants_verify(settings: Settings) -> None:
    grow(settings, 600, tenants=150)
    first = anchor_once(settings, KEY)
    grow(settings, 300, tenants=40, start=600)
    second = anchor_once(settings, KEY)
    grow(settings, 50, tenants=7, start=900)
    third = anchor_once(settings, KEY)
    assert [o.tenants for o in first + second + third] == [150, 40, 7]
    assert [o.events for o in first + second + third] == [600, 300, 50]
    report = verify_chain(settings)
    assert report.ok, report.summary()
    assert (report.events, report.anchors) == (950, 3)
    anchor = json.loads(
        s3_client(settings)
        .get_object(Bucket=settings.anchor_bucket, Key=anchor_key(second[0].cadence_id))["Body"]
        .read()
    )
    assert anchor["prev_cadence_id"] == first[0].cadence_id
    assert keys(settings, "keys/") == [f"keys/{KEY.key_id}.pem"]


def test_a_second_run_with_no_new_events_writes_nothing(settings: Settings) -> None:
    grow(settings, 20, tenants=3)
    assert len(anchor_once(settings, KEY)) == 1
    before = keys(settings)
    assert anchor_once(settings, KEY) == []
    assert keys(settings) == before


def test_deleting_a_locked_anchor_version_is_refused(settings: Settings) -> None:
    # A bucket with Object Lock but without our deny-deletes policy: the lock alone must refuse.
    bare = Settings(**{**settings.__dict__, "anchor_bucket": settings.anchor_bucket + "-bare"})
    provision_anchor_bucket(
        s3_client(bare), bare.anchor_bucket, mode="GOVERNANCE", retention_days=1, deny_deletes=False
    )
    grow(bare, 10, tenants=2)
    [outcome] = anchor_once(bare, KEY)
    s3 = s3_client(bare)
    version = s3.list_object_versions(Bucket=bare.anchor_bucket, Prefix=outcome.anchor_key)["Versions"][0]["VersionId"]
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=bare.anchor_bucket, Key=outcome.anchor_key, VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    # And through the provisioned bucket's policy, even with the governance bypass asked for.
    grow(settings, 10, tenants=2)
    [outcome] = anchor_once(settings, KEY)
    s3 = s3_client(settings)
    version = s3.list_object_versions(Bucket=settings.anchor_bucket, Prefix=outcome.anchor_key)["Versions"][0][
        "VersionId"
    ]
    with pytest.raises(ClientError) as refused:
        s3.delete_object(
            Bucket=settings.anchor_bucket, Key=outcome.anchor_key, VersionId=version, BypassGovernanceRetention=True
        )
    assert refused.value.response["Error"]["Code"] in ("AccessDenied", "403")  # the policy's explicit Deny
    assert len(s3.list_object_versions(Bucket=settings.anchor_bucket, Prefix=outcome.anchor_key)["Versions"]) == 1


class Crash(RuntimeError):
    pass


def test_a_run_killed_between_the_two_objects_completes_next_time_with_the_same_cadence(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    grow(settings, 40, tenants=5)
    real_put = anchoring._put_once

    def put_then_die(s3, bucket, key, body, **kw):  # type: ignore[no-untyped-def]
        if key.startswith("anchors/"):
            raise Crash("killed after the proofs file")
        return real_put(s3, bucket, key, body, **kw)

    monkeypatch.setattr(anchoring, "_put_once", put_then_die)
    with pytest.raises(Crash):
        anchor_once(settings, KEY)
    [pending_proofs] = keys(settings, "proofs/")
    assert keys(settings, "anchors/") == []
    grow(settings, 10, tenants=5, start=40)  # the chain moves on meanwhile
    monkeypatch.setattr(anchoring, "_put_once", real_put)
    outcomes = anchor_once(settings, KEY)
    assert outcomes[0].resumed and outcomes[0].proofs_key == pending_proofs and outcomes[0].events == 40
    assert not outcomes[1].resumed and outcomes[1].events == 10
    assert versions(settings, pending_proofs) == 1
    assert verify_chain(settings).ok


def test_a_run_killed_between_the_objects_and_the_database_completes_without_a_duplicate(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    grow(settings, 40, tenants=5)

    def die(*args, **kw):  # type: ignore[no-untyped-def]
        raise Crash("killed before recording")

    real_record = anchoring.record_anchor
    monkeypatch.setattr(anchoring, "record_anchor", die)
    with pytest.raises(Crash):
        anchor_once(settings, KEY)
    [written] = keys(settings, "anchors/")
    monkeypatch.setattr(anchoring, "record_anchor", real_record)
    [outcome] = anchor_once(settings, KEY)
    assert outcome.resumed and outcome.anchor_key == written
    assert versions(settings, written) == 1
    with connect(settings, None, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM compliance.anchors").fetchone()[0] == 1
    assert anchor_once(settings, KEY) == []
    assert verify_chain(settings).ok


def _replace_object(settings: Settings, key: str, body: bytes) -> None:
    """S3 write access: a new version of the key (Object Lock protects versions, not names)."""
    s3_client(settings).put_object(Bucket=settings.anchor_bucket, Key=key, Body=body)


def _owner(settings: Settings, *statements: str) -> None:
    with connect(settings, None, autocommit=True) as conn:
        for st in statements:
            conn.execute(st)


@pytest.fixture
def anchored(settings: Settings) -> tuple[Settings, str]:
    grow(settings, 60, tenants=4)
    [outcome] = anchor_once(settings, KEY)
    assert verify_chain(settings).ok
    return settings, outcome.cadence_id


def test_verify_catches_a_replaced_anchor_object(anchored) -> None:
    settings, cid = anchored
    s3 = s3_client(settings)
    anchor = json.loads(s3.get_object(Bucket=settings.anchor_bucket, Key=anchor_key(cid))["Body"].read())
    anchor["event_count"] += 1
    _replace_object(settings, anchor_key(cid), json.dumps(anchor).encode())
    f = failure_of(settings)
    assert (f.anchor, f.code) == (cid, "anchor_replaced")


def test_verify_catches_a_flipped_byte_in_a_proofs_line(anchored) -> None:
    settings, cid = anchored
    proofs = bytearray(
        s3_client(settings).get_object(Bucket=settings.anchor_bucket, Key=proofs_key(cid))["Body"].read()
    )
    at = proofs.index(b'"events_root":"') + 20
    proofs[at] = ord("0") if proofs[at] != ord("0") else ord("1")
    _replace_object(settings, proofs_key(cid), bytes(proofs))
    f = failure_of(settings)
    assert (f.anchor, f.code) == (cid, "proofs_sha256")


def test_verify_catches_a_wrong_signature(anchored) -> None:
    settings, cid = anchored
    s3 = s3_client(settings)
    anchor = json.loads(s3.get_object(Bucket=settings.anchor_bucket, Key=anchor_key(cid))["Body"].read())
    sig = bytearray(base64.b64decode(anchor["signature"]["sig"]))
    sig[0] ^= 1
    anchor["signature"]["sig"] = base64.b64encode(sig).decode()
    forged = json.dumps(anchor, sort_keys=True, separators=(",", ":")).encode()
    _replace_object(settings, anchor_key(cid), forged)
    # With database superuser too, the recorded hash can be made to match; the signature still fails.
    _owner(
        settings,
        "ALTER TABLE compliance.anchors DISABLE TRIGGER anchors_immutable",
        f"UPDATE compliance.anchors SET anchor_sha256 = '{hashlib.sha256(forged).hexdigest()}' WHERE cadence_id = '{cid}'",
        "ALTER TABLE compliance.anchors ENABLE TRIGGER anchors_immutable",
    )
    f = failure_of(settings)
    assert (f.anchor, f.code) == (cid, "bad_signature")


def test_verify_catches_an_edited_event_even_when_the_chain_is_rewritten_to_match(anchored) -> None:
    settings, cid = anchored
    with connect(settings, None, autocommit=True) as conn:
        conn.execute("ALTER TABLE compliance.events DISABLE TRIGGER events_immutable")
        rows = conn.execute(
            "SELECT seq, event_id::text, occurred_at, recorded_at, actor_type, actor_id, source, event_type, payload, "
            "redacted_fields FROM compliance.events WHERE tenant_id = 'tenant-002' ORDER BY seq"
        ).fetchall()
        prev = GENESIS_HASH
        from compliance.timefmt import utc_text

        for seq, eid, occ, rec, at, aid, src, et, payload, rf in rows:
            if seq == 3:
                payload = '{"userId":"someone-else"}'
            h = hashlib.sha256(
                prev
                + canonical_body(
                    seq=seq,
                    event_id=eid,
                    tenant_id="tenant-002",
                    occurred_at=utc_text(occ),
                    recorded_at=utc_text(rec),
                    actor_type=at,
                    actor_id=aid,
                    source=src,
                    event_type=et,
                    payload_jcs=payload,
                    redacted_fields_jcs=rf,
                )
            ).digest()
            conn.execute(
                "UPDATE compliance.events SET payload = %s, prev_hash = %s, event_hash = %s "
                "WHERE tenant_id = 'tenant-002' AND seq = %s",
                (payload, prev, h, seq),
            )
            prev = h
        conn.execute("UPDATE compliance.tenant_heads SET head_hash = %s WHERE tenant_id = 'tenant-002'", (prev,))
        conn.execute("ALTER TABLE compliance.events ENABLE TRIGGER events_immutable")
    f = failure_of(settings)
    assert (f.anchor, f.tenant_id) == (cid, "tenant-002")
    assert f.code in ("anchor_record", "events_root")


def test_verify_catches_an_edited_and_a_deleted_event(anchored) -> None:
    settings, cid = anchored
    _owner(
        settings,
        "ALTER TABLE compliance.events DISABLE TRIGGER events_immutable",
        "UPDATE compliance.events SET actor_id = 'mallory' WHERE tenant_id = 'tenant-001' AND seq = 5",
        "DELETE FROM compliance.events WHERE tenant_id = 'tenant-003' AND seq = 2",
        "ALTER TABLE compliance.events ENABLE TRIGGER events_immutable",
    )
    f = failure_of(settings)
    assert (f.tenant_id, f.seq, f.code) == ("tenant-001", 5, "hash_mismatch")
    report = verify_chain(settings, tenant="tenant-003")
    assert report.failure is not None and (report.failure.tenant_id, report.failure.seq, report.failure.code) == (
        "tenant-003",
        2,
        "gap",
    )


def test_a_longer_configured_retention_does_not_fail_anchors_written_before(anchored) -> None:
    # Each anchor is held to the retention recorded with it and the trust floor, not to today's setting
    # (tests/test_lock_history.py has the shortened and the lowered locks that fail).
    settings, cid = anchored
    longer = Settings(**{**settings.__dict__, "retention_days": 30})
    assert verify_chain(longer).ok


def test_cli_anchor_then_events_show_reports_anchored(settings: Settings, env_for) -> None:
    grow(settings, 5, tenants=1)
    env = env_for(settings)
    out = run_cli(["anchor"], env, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "anchored" in out.stdout and "1 tenants, 5 events" in out.stdout
    with connect(settings, None, autocommit=True) as conn:
        event_id, cid = conn.execute(
            "SELECT e.event_id::text, a.cadence_id FROM compliance.events e, compliance.anchors a WHERE seq = 3"
        ).fetchone()
    from tasks.operators import enrol
    from tests.test_operators import Authenticator

    ops = Authenticator(settings, enrol(settings, "ops@example.com", tenants=["tenant-000"]))
    show = run_cli(
        ["events", "show", event_id, "--tenant", "tenant-000", "--operator", ops.address, "--code", ops.code()], env
    )
    assert show.returncode == 0 and f"ANCHORED {cid}" in show.stdout
    verify = run_cli(["verify", "chain", "--json"], env)
    assert verify.returncode == 0, verify.stdout
    assert json.loads(verify.stdout)["anchors"] == 1


def test_a_rotated_key_signs_new_anchors_and_old_anchors_still_verify(settings: Settings) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    grow(settings, 10, tenants=2)
    [old] = anchor_once(settings, KEY)
    new_key = SigningKey(Ed25519PrivateKey.generate())
    grow(settings, 10, tenants=2, start=10)
    [new] = anchor_once(settings, new_key)
    assert keys(settings, "keys/") == sorted([f"keys/{KEY.key_id}.pem", f"keys/{new_key.key_id}.pem"])
    signed_by = {
        json.loads(
            s3_client(settings).get_object(Bucket=settings.anchor_bucket, Key=anchor_key(o.cadence_id))["Body"].read()
        )["signature"]["key_id"]
        for o in (old, new)
    }
    assert signed_by == {KEY.key_id, new_key.key_id}
    report = verify_chain(settings)
    assert report.ok and report.anchors == 2


def test_the_signing_key_is_generated_once_in_a_secret_block_in_dev_only(
    settings: Settings, prefect_harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    from tasks import signing

    monkeypatch.setattr(signing, "SECRET_BLOCK", f"signing-key-{uuid.uuid4().hex[:8]}")
    first = signing.load_signing_key(settings)
    assert signing.load_signing_key(settings).key_id == first.key_id
    monkeypatch.setattr(signing, "SECRET_BLOCK", f"signing-key-{uuid.uuid4().hex[:8]}")
    with pytest.raises(RuntimeError, match="no signing key"):
        signing.load_signing_key(Settings(**{**settings.__dict__, "stage": "staging"}))
