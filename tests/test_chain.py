"""The drain's compiled chaining (compliance/chain.py), held to what it stands in for: its binary COPY rows
to the columns they carry and its hashes to ledger_verify's canonical_body; its one-pass rule check to the
checks themselves (_stored_form and stored_event_problem), row for row."""

from __future__ import annotations

import json
import os
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from compliance.chain import (
    COPY_BINARY_HEADER,
    COPY_BINARY_TRAILER,
    GENESIS_HASH,
    ServerRules,
    _stored_form,
    canonical_body,
    chain_copy_rows,
    event_hash,
    group_chainable,
)
from compliance.events import Registry, registry_data, stored_event_problem
from compliance.jcs import canonical_str

EXAMPLES = int(os.environ.get("COMPLIANCE_FUZZ_EXAMPLES", "1500"))
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
RECORDED_AT = "2026-12-02T10:11:12.131415Z"
VECTORS = json.loads((Path(__file__).resolve().parent / "vectors" / "spec-v1.json").read_text("utf-8"))


def outbox_row(i: int, e: dict, written_by: str | None = "compliance_writer") -> tuple:
    """An outbox row as the drain reads it: (id, event_id, tenant_id, occurred_at, actor_type, actor_id, source,
    event_type, payload, redacted_fields, written_by, event_id's 16 bytes)."""
    return (
        i,
        e["event_id"],
        e["tenant_id"],
        e["occurred_at"],
        e["actor_type"],
        e["actor_id"],
        e["source"],
        e["event_type"],
        e["payload"],
        e["redacted_fields"],
        written_by,
        bytes.fromhex(e["event_id"].replace("-", "")),
    )


def parse_copy_rows(data: bytes) -> list[list[bytes]]:
    """The fields of every row of a binary COPY stream (header and trailer checked)."""
    assert data.startswith(COPY_BINARY_HEADER) and data.endswith(COPY_BINARY_TRAILER)
    pos, end, rows = len(COPY_BINARY_HEADER), len(data) - len(COPY_BINARY_TRAILER), []
    while pos < end:
        (count,) = struct.unpack_from("!h", data, pos)
        assert count == 13
        pos += 2
        fields = []
        for _ in range(count):
            (n,) = struct.unpack_from("!i", data, pos)
            fields.append(data[pos + 4 : pos + 4 + n])
            pos += 4 + n
        rows.append(fields)
    assert pos == end
    return rows


def pg_time(field: bytes) -> str:
    micros = struct.unpack("!q", field)[0]
    return (PG_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_chain(events: list[dict], tenant: str, seq: int = 0, prev: bytes = GENESIS_HASH) -> None:
    """chain_copy_rows over ``events``: each COPY row holds the event's columns, and the hashes are
    ledger_verify's, linked from (``seq``, ``prev``)."""
    out: list[str] = []
    last, head = chain_copy_rows(
        [outbox_row(i, {**e, "tenant_id": tenant}) for i, e in enumerate(events)], tenant, seq, prev, RECORDED_AT, out
    )
    rows = parse_copy_rows(COPY_BINARY_HEADER + "".join(out).encode("latin-1") + COPY_BINARY_TRAILER)
    assert len(rows) == len(events) and last == seq + len(events)
    for e, f in zip(events, rows, strict=True):
        seq += 1
        expected = event_hash(
            prev,
            canonical_body(
                seq=seq,
                event_id=e["event_id"],
                tenant_id=tenant,
                occurred_at=e["occurred_at"],
                recorded_at=RECORDED_AT,
                actor_type=e["actor_type"],
                actor_id=e["actor_id"],
                source=e["source"],
                event_type=e["event_type"],
                payload_jcs=e["payload"],
                redacted_fields_jcs=e["redacted_fields"],
            ),
        )
        assert [x.decode("utf-8") for x in (f[0], f[5], f[6], f[7], f[8], f[9], f[10])] == [
            tenant,
            e["actor_type"],
            e["actor_id"],
            e["source"],
            e["event_type"],
            e["payload"],
            e["redacted_fields"],
        ]
        assert struct.unpack("!q", f[1])[0] == seq
        assert f[2].hex() == e["event_id"].replace("-", "")
        assert (pg_time(f[3]), pg_time(f[4])) == (e["occurred_at"], RECORDED_AT)
        assert (f[11], f[12]) == (prev, expected)
        prev = expected
    assert head == prev


def test_the_spec_vectors_chain_to_their_hashes() -> None:
    tenants: dict[str, list[dict]] = {}
    for v in VECTORS["events"]:
        tenants.setdefault(v["tenant_id"], []).append(v)
    for tenant, vs in tenants.items():
        out: list[str] = []
        rows = []
        for v in vs:
            e = {**v, "payload": canonical_str(v["payload"]), "redacted_fields": canonical_str(v["redacted_fields"])}
            rows.append(outbox_row(v["seq"], e))
        for v in vs:  # each vector's recorded_at is its own: chain them one at a time
            i = v["seq"] - 1
            _, head = chain_copy_rows(
                rows[i : i + 1], tenant, i, bytes.fromhex(v["prev_hash"]), v["recorded_at"], out
            )
            assert head.hex() == v["event_hash"]


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=24)
_INSTANT = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999), timezones=st.just(UTC)
).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@hsettings(max_examples=EXAMPLES // 3, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "event_id": st.uuids(version=4).map(lambda u: str(u)[:14] + "7" + str(u)[15:]),
                "occurred_at": _INSTANT,
                "actor_type": st.sampled_from(["user", "service", "agent", "system", "operator"]),
                "actor_id": _TEXT | st.sampled_from(['a"b', "a\\b", "tab\there", "é", "𝄞", "\x1b[31m"]),
                "source": _TEXT,
                "event_type": st.sampled_from(["auth.signout", "policy.evaluated", "x.y"]),
                "payload": st.dictionaries(_TEXT, _JSON, max_size=4).map(canonical_str),
                "redacted_fields": st.lists(_TEXT, max_size=3, unique=True).map(lambda f: canonical_str(sorted(f))),
            }
        ),
        min_size=1,
        max_size=5,
    ),
    st.integers(0, 2**40),
    st.binary(min_size=32, max_size=32),
)
def test_the_binary_copy_rows_carry_the_columns_and_ledger_verifys_hashes(
    events: list[dict], seq: int, prev: bytes
) -> None:
    check_chain(events, "tenant-0042" if seq % 2 else "t", seq, prev)


# Outbox rows another runtime might write: each field either what emit writes or something it never does.
_PAYLOADS = st.one_of(
    st.dictionaries(st.sampled_from(["userId", "method", "reason", "subject", "url", "x", "password"]), _JSON).map(
        canonical_str
    ),
    st.dictionaries(st.sampled_from(["userId", "reason", "policyId"]), st.floats(allow_nan=False), max_size=2).map(
        lambda d: orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode()
    ),
    st.sampled_from(
        [
            '{"b":1,"a":2}',
            '{"userId":"u","userId":"v"}',
            '{"userId":1e2}',
            '{"userId":1.0}',
            '{"userId":12345678901234567890}',
            '{"userId":"Bearer abcdefghijklmnop0123"}',
            '{"url":"https://u:p@example.com/?token=x"}',
            '{"é":1}',
            '{"\U0001d11e":1,"z":2}',
            "[]",
            "nope",
            '{"reason":"' + "x" * 5000 + '"}',
        ]
    ),
)
_FIELD_LISTS = st.sampled_from(["[]", '["password"]', '["a","b"]', '["b","a"]', "[1]", '["é"]', '[ "a"]', "{}"])
_ROWS = st.tuples(
    st.sampled_from(["acme", "ledger:platform"]),
    st.sampled_from(["2026-11-22T10:00:00.000000Z", "2026-13-01T00:00:00.000000Z", "2026-11-22T23:59:60.000000Z"]),
    _TEXT | st.sampled_from(["u", "web\u202egnp.exe", "\x1b[2J"]),
    _TEXT | st.sampled_from(["web", "s\x00"]),
    st.sampled_from(
        ["auth.signin.success", "policy.evaluated", "mcp.added", "admin.operator_changed", "nope.unknown", "Bad"]
    ),
    _PAYLOADS,
    _FIELD_LISTS,
    st.sampled_from(["compliance_writer", "compliance_exporter", "owner", None]),
)


@pytest.fixture(scope="module")
def rules() -> ServerRules:
    types = {**registry_data(), "admin.operator_changed": {"keep": ["operator", "change"]}}
    return ServerRules(Registry(types), frozenset({"compliance_exporter", "owner"}))


@hsettings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(_ROWS, min_size=1, max_size=6))
def test_the_one_pass_check_agrees_with_the_checks_row_for_row(rules: ServerRules, rows: list[tuple]) -> None:
    outbox = []
    for i, (tenant, at, actor, source, event_type, payload, fields, writer) in enumerate(rows):
        event_id = f"019a8b2c-0000-7001-8000-{i:012x}"
        outbox.append(
            (i, event_id, tenant, at, "user", actor, source, event_type, payload, fields, writer, bytes(16))
        )
    expected: list[str | None] = []
    for row in outbox:
        parsed, reason = _stored_form(row[7], row[8], row[9], row[3])
        if reason is None and row[10] is not None:
            rule = rules.registry.rule(row[7])
            reason = stored_event_problem(row[2], row[5], row[6], row[7], parsed, rule, row[10] in rules.ledger_roles)
        expected.append(reason)
    by_tenant, poisoned = group_chainable(outbox, rules)
    reasons = {row[0]: reason for row, reason in poisoned}
    chained = {row[0] for group in by_tenant.values() for row in group}
    assert [reasons.get(i) for i in range(len(outbox))] == expected
    assert chained == {i for i, reason in enumerate(expected) if reason is None}
    for tenant, group in by_tenant.items():
        assert [r[2] for r in group] == [tenant] * len(group)
        assert [r[0] for r in group] == sorted(r[0] for r in group)  # outbox order kept
