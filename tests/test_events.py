"""docs/format.md §1: every validation rule refuses with the field named; redaction drops, scrubs and truncates."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compliance.events import (
    MAX_PAYLOAD_BYTES,
    REDACTED_SECRET,
    EventRefused,
    Registry,
    new_event_id,
    prepare_event,
)
from compliance.timefmt import is_utc_instant, utc_text
from tests.conftest import sample_event

REG = Registry.default()


def refused_field(event: dict) -> str:
    with pytest.raises(EventRefused) as info:
        prepare_event(event, REG)
    return info.value.field


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"tenant_id": None}, "tenant_id"),
        ({"tenant_id": ""}, "tenant_id"),
        ({"tenant_id": "a" * 129}, "tenant_id"),
        ({"tenant_id": "acme corp"}, "tenant_id"),
        ({"tenant_id": "acme\n"}, "tenant_id"),
        ({"tenant_id": "acmé"}, "tenant_id"),
        ({"tenant_id": ["acme"]}, "tenant_id"),  # unhashable: refused like any other non-string
        ({"tenant_id": {"id": "acme"}}, "tenant_id"),
        ({"occurred_at": None}, "occurred_at"),
        ({"occurred_at": "2026-11-22T10:00:00"}, "occurred_at"),
        ({"occurred_at": "2026-11-22"}, "occurred_at"),
        ({"occurred_at": "2026-13-22T10:00:00Z"}, "occurred_at"),
        ({"occurred_at": "2026-13-22T10:00:00.000000Z"}, "occurred_at"),  # the stored form, no real date
        ({"occurred_at": "2026-11-22T23:59:60.000000Z"}, "occurred_at"),
        ({"occurred_at": "2026-11-22T10:00:00.1234567Z"}, "occurred_at"),
        ({"occurred_at": datetime(2026, 1, 1)}, "occurred_at"),
        ({"actor_type": "robot"}, "actor_type"),
        ({"actor_type": None}, "actor_type"),
        ({"actor_id": ""}, "actor_id"),
        ({"actor_id": "x" * 257}, "actor_id"),
        ({"actor_id": 42}, "actor_id"),
        ({"actor_id": "a\x00b"}, "actor_id"),
        ({"source": ""}, "source"),
        ({"source": "s" * 129}, "source"),
        ({"event_type": "auth.signin.sucess"}, "event_type"),
        ({"event_type": None}, "event_type"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"event_id": "019a8b2c-0000-4001-8000-000000000001"}, "event_id"),  # v4, not v7
        ({"payload": [1, 2]}, "payload"),
        ({"payload": "text"}, "payload"),
        ({"payload": {"userId": "x" * (MAX_PAYLOAD_BYTES + 1)}}, "payload"),
        ({"payload": {"userId": 2**53}}, "payload.userId"),
        ({"payload": {"userId": float("nan")}}, "payload.userId"),
        ({"payload": {"userId": "\ud800"}}, "payload"),
        ({"event_type": "policy.evaluated", "payload": {"subject": {"k": "\ud800"}}}, "payload"),
        ({"event_type": "policy.evaluated", "payload": {"subject": [1, 2**53]}}, "payload.subject"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_each_rule_refuses_naming_the_field(overrides: dict, field: str) -> None:
    assert refused_field(sample_event(**overrides)) == field


def test_accepts_exact_limits() -> None:
    e = prepare_event(sample_event(tenant_id="T" * 128, actor_id="a" * 256, source="s" * 128), REG)
    assert e.tenant_id == "T" * 128


def test_occurred_at_is_stored_as_utc_with_microseconds() -> None:
    e = prepare_event(sample_event(occurred_at="2026-11-22T10:00:00.5+01:30"), REG)
    assert e.occurred_at == "2026-11-22T08:30:00.500000Z"
    e = prepare_event(sample_event(occurred_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)), REG)
    assert e.occurred_at == "2026-01-02T03:04:05.000006Z"


def test_event_id_is_assigned_as_uuid_v7_and_lowercased() -> None:
    e = prepare_event(sample_event(), REG)
    assert e.event_id[14] == "7" and e.event_id == e.event_id.lower()
    given = new_event_id().upper()
    assert prepare_event(sample_event(event_id=given), REG).event_id == given.lower()


def _payload_of(size: int, **extra: object) -> dict:
    """An agent.skills_changed payload of exactly ``size`` bytes serialized, every value kept whole."""
    payload: dict = {"agentId": "a-1", "addedSkills": ["s" * 100] * (size // 106), **extra}
    short = size - len(json.dumps(payload, separators=(",", ":")).encode())
    payload["addedSkills"].append("t" * (short - 3))  # '"…",' : three bytes more than the string
    assert len(json.dumps(payload, separators=(",", ":")).encode()) == size
    return payload


def test_a_payload_of_64_kib_passes_and_one_byte_more_is_refused() -> None:
    event = sample_event(event_type="agent.skills_changed", payload=_payload_of(MAX_PAYLOAD_BYTES))
    assert len(prepare_event(event, REG).payload_jcs) == MAX_PAYLOAD_BYTES
    event = sample_event(event_type="agent.skills_changed", payload=_payload_of(MAX_PAYLOAD_BYTES + 1))
    with pytest.raises(EventRefused, match="65537 bytes serialized") as info:
        prepare_event(event, REG)
    assert info.value.field == "payload"


def test_the_limit_is_on_the_payload_sent_not_on_what_redaction_keeps() -> None:
    # 64 KiB + 1 as sent; after the off-list key is dropped, what would be stored is far smaller
    payload = _payload_of(MAX_PAYLOAD_BYTES + 1, secretNotes="x" * 10)
    event = sample_event(event_type="agent.skills_changed", payload=payload)
    with pytest.raises(EventRefused, match="65537 bytes serialized"):
        prepare_event(event, REG)
    payload = _payload_of(MAX_PAYLOAD_BYTES + 1, reason=0.5)  # a kept float: RFC 8785 and the sender may differ
    event = sample_event(event_type="agent.skills_changed", payload=payload)
    with pytest.raises(EventRefused, match="bytes serialized"):
        prepare_event(event, REG)


def test_generated_event_ids_are_v7_unique_and_carry_the_millisecond_they_were_made() -> None:
    import time
    import uuid

    before = time.time_ns() // 1_000_000
    ids = [new_event_id() for _ in range(50_000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 and str(u) == i for u, i in zip(parsed, ids))
    ms = [u.int >> 80 for u in parsed]
    assert before <= ms[0] and ms == sorted(ms) and ms[-1] <= after


def test_keys_off_the_allow_list_are_dropped_and_recorded() -> None:
    e = prepare_event(sample_event(payload={"userId": "u", "password": "p", "extra": {"a": 1}}), REG)
    assert json.loads(e.payload_jcs) == {"userId": "u"}
    assert e.redacted_fields == ("extra", "password")


def test_credentials_are_scrubbed_in_kept_keys() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    payload = {
        "reason": "Bearer abcdefghijklmnopqrstuvwxyz",
        "subject": {"token": jwt, "key": "AKIAIOSFODNN7EXAMPLE", "ok": "fine"},
        "policyId": "ghp_" + "a" * 36,
        "decision": "allow",
    }
    e = prepare_event(sample_event(event_type="policy.evaluated", payload=payload), REG)
    kept = json.loads(e.payload_jcs)
    assert kept == {
        "reason": REDACTED_SECRET,
        "policyId": REDACTED_SECRET,
        "decision": "allow",
        "subject": {"token": REDACTED_SECRET, "key": REDACTED_SECRET, "ok": "fine"},
    }
    assert e.redacted_fields == (
        "policyId:scrubbed",
        "reason:scrubbed",
        "subject.key:scrubbed",
        "subject.token:scrubbed",
    )


def test_strings_are_capped_at_4_kib_and_preview_at_2_kib() -> None:
    e = prepare_event(sample_event(payload={"userId": "é" * 3000, "method": "m" * 4096}), REG)
    kept = json.loads(e.payload_jcs)
    assert len(kept["userId"].encode()) <= 4096 and kept["userId"] == "é" * 2048
    assert kept["method"] == "m" * 4096
    assert e.redacted_fields == ("userId:truncated",)
    e = prepare_event(
        sample_event(
            event_type="workspace.governance_file_edited", payload={"file": "AGENTS.md", "preview": "p" * 3000}
        ),
        REG,
    )
    assert json.loads(e.payload_jcs)["preview"] == "p" * 2048
    assert e.redacted_fields == ("preview:truncated",)


def test_an_ingest_token_pasted_into_a_payload_is_scrubbed() -> None:
    from compliance.ingest import new_token

    for token in (new_token(), "clg_q8Xv-2LkT_9wZrB4nYc7HsJ0aPfU3mEoDiGt6Vx1KyQ"):
        payload = {"policyId": "p", "decision": "deny", "reason": f"retried with {token} after a 401"}
        e = prepare_event(sample_event(event_type="policy.evaluated", payload=payload), REG)
        assert json.loads(e.payload_jcs)["reason"] == REDACTED_SECRET
        assert e.redacted_fields == ("reason:scrubbed",)
    short = prepare_event(sample_event(event_type="policy.evaluated", payload={"reason": "clg_ prefix alone"}), REG)
    assert json.loads(short.payload_jcs)["reason"] == "clg_ prefix alone"


def test_mcp_url_loses_its_credentials() -> None:
    e = prepare_event(
        sample_event(
            event_type="mcp.added",
            payload={
                "mcpId": "m1",
                "url": "https://bob:s3cret@mcp.example.com/v1?token=abc&region=eu",
                "scopes": ["read"],
            },
        ),
        REG,
    )
    kept = json.loads(e.payload_jcs)
    assert kept["url"] == "https://mcp.example.com/v1?region=eu"
    assert e.redacted_fields == ("url:scrubbed",)


def test_nested_allow_list_paths_keep_only_named_subkeys(tmp_path, monkeypatch) -> None:
    extra = tmp_path / "types.json"
    extra.write_text(json.dumps({"types": {"billing.plan_changed": {"keep": ["plan.name", "plan.seats", "orgId"]}}}))
    monkeypatch.setenv("COMPLIANCE_EVENT_TYPES_FILE", str(extra))
    reg = Registry.default()
    e = prepare_event(
        sample_event(
            event_type="billing.plan_changed",
            payload={"orgId": "o", "plan": {"name": "pro", "seats": 5, "card": "4111"}},
        ),
        reg,
    )
    assert json.loads(e.payload_jcs) == {"orgId": "o", "plan": {"name": "pro", "seats": 5}}
    assert e.redacted_fields == ("plan.card",)
    assert "auth.signout" in reg  # the packaged registry is still there


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)))
def test_every_instant_written_by_utc_text_is_one(moment: datetime) -> None:
    assert is_utc_instant(utc_text(moment.replace(tzinfo=UTC)))


@pytest.mark.parametrize(
    "text",
    [
        "2026-13-01T00:00:00.000000Z",  # no month 13: PostgreSQL refuses it, and the whole batch with it
        "2026-02-30T00:00:00.000000Z",
        "2026-11-22T23:59:60.000000Z",  # PostgreSQL would store the next minute, not what was hashed
        "2026-11-22T24:00:00.000000Z",  # ... and the next day
        "2026-11-22 10:00:00.000000Z",
        "2026-11-22T10:00:00.00000Z",
        "2026-11-22T10:00:00.0000000Z",
        "2026-11-22T10:00:00.000000+00:00",
        "2026-11-22T10:00:00,000000Z",
        "2026-11-22T10:00:00.00000\u0663Z",  # a non-ASCII digit
        "",
    ],
)
def test_a_text_of_another_form_or_no_real_instant_is_refused(text: str) -> None:
    assert not is_utc_instant(text)
    assert is_utc_instant("2026-11-22T10:00:00.000000Z")
