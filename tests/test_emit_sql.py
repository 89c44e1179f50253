"""compliance.emit_event: other runtimes emit with only the writer role and get exactly what Python's emit() stores."""

from __future__ import annotations

import json
import os

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from compliance.events import EventRefused as EventRefusedType
from compliance.events import Registry, prepare_event, registry_data
from compliance.jcs import MAX_SAFE_INTEGER, canonical
from compliance.settings import Settings
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.verify import verify_chain
from tests.conftest import sample_event

EXAMPLES = int(os.environ.get("COMPLIANCE_FUZZ_EXAMPLES", "1500")) // 5
REG = Registry.default()
bmp_text = st.text(
    st.characters(exclude_categories=("Cs",), max_codepoint=0xFFFF, exclude_characters="\x00"), max_size=10
)
numbers = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER) | st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda f: not (f.is_integer() and abs(f) > MAX_SAFE_INTEGER)
)
values = st.recursive(
    st.none() | st.booleans() | numbers | bmp_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(bmp_text, inner, max_size=4),
    max_leaves=15,
)


@pytest.fixture(scope="module")
def sql_conn(pg_cluster) -> psycopg.Connection:
    """A database of its own (the template must stay free for the per-test databases)."""
    with psycopg.connect(pg_cluster.admin_url("postgres"), autocommit=True) as admin:
        admin.execute('CREATE DATABASE "jcs_property" TEMPLATE "compliance_template"')
    with psycopg.connect(pg_cluster.admin_url("jcs_property"), autocommit=True) as conn:
        yield conn
    with psycopg.connect(pg_cluster.admin_url("postgres"), autocommit=True) as admin:
        admin.execute('DROP DATABASE "jcs_property" WITH (FORCE)')


@hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(values)
def test_sql_jcs_equals_python_canonical(sql_conn: psycopg.Connection, value: object) -> None:
    got = sql_conn.execute("SELECT compliance.jcs(%s::jsonb)", (json.dumps(value),)).fetchone()[0]
    assert got.encode("utf-8") == canonical(value)


CASES = [
    sample_event(1),
    sample_event(2, payload={"userId": "u", "password": "p", "extra": {"a": [1, 2.5]}}),
    sample_event(
        3,
        event_type="policy.evaluated",
        payload={
            "policyId": "ghp_" + "a" * 36,
            "decision": "allow",
            "reason": "Bearer abcdefghijklmnop",
            "subject": {"score": 0.1, "big": 9007199254740991, "neg": -1e-07, "exp": 1e21, "tab": 'a\tb"c'},
        },
    ),
    sample_event(4, payload={"userId": "é" * 3000, "method": "m"}),
    sample_event(
        5,
        event_type="mcp.added",
        payload={"mcpId": "m", "url": "https://bob:pw@x.example/v1?token=t&a=b", "scopes": ["read"]},
    ),
    sample_event(6, event_type="workspace.governance_file_edited", payload={"file": "f", "preview": "p" * 3000}),
    sample_event(7, event_type="auth.signout", payload={}),
    sample_event(
        8,
        event_type="policy.evaluated",
        payload={"policyId": "p", "decision": "deny", "reason": "sent clg_q8Xv-2LkT_9wZrB4nYc7HsJ0aPfU3mEoDiGt6Vx1KyQ by mistake"},
    ),
]


def _sql_emit(conn: psycopg.Connection, raw: dict, event_id: str) -> tuple:
    """``raw`` through compliance.emit_event with ``event_id``; its (event_id, stored) row."""
    return conn.execute(
        "SELECT * FROM compliance.emit_event(%s, %s, %s, %s, %s, %s, %s::jsonb, %s)",
        (
            raw["tenant_id"],
            raw["event_type"],
            raw["actor_type"],
            raw["actor_id"],
            raw["source"],
            raw["occurred_at"],
            json.dumps(raw["payload"]),
            event_id,
        ),
    ).fetchone()


@pytest.mark.parametrize("raw", CASES, ids=[str(i) for i in range(len(CASES))])
def test_sql_emit_stores_what_python_emit_stores(settings: Settings, raw: dict) -> None:
    expected = prepare_event(raw, REG)
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        row = _sql_emit(conn, raw, expected.event_id)
    assert row[1] is True
    with connect(settings, None, autocommit=True) as owner:
        stored = owner.execute("SELECT occurred_at, payload, redacted_fields FROM compliance.outbox").fetchone()
    assert stored == (expected.occurred_at, expected.payload_jcs, expected.redacted_fields_jcs)


def test_sql_emit_assigns_uuid_v7_reports_duplicates_and_chains(settings: Settings) -> None:
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        event_id, stored = conn.execute(
            "SELECT * FROM compliance.emit_event('acme', 'auth.signout', 'user', 'u', 'node-app', now(), "
            '\'{"userId": "u"}\')'
        ).fetchone()
        again = conn.execute(
            "SELECT stored FROM compliance.emit_event('acme', 'auth.signout', 'user', 'u', "
            "'node-app', now(), '{}', %s)",
            (event_id,),
        ).fetchone()[0]
    assert stored is True and again is False and str(event_id)[14] == "7"
    assert drain_pending.fn(settings).drained == 1
    assert verify_chain(settings).ok


@pytest.mark.parametrize(
    "args, field",
    [
        (("bad tenant", "auth.signout", "user", "u", "s"), "tenant_id"),
        (("acme", "auth.nope", "user", "u", "s"), "event_type"),
        (("acme", "auth.signout", "robot", "u", "s"), "actor_type"),
        (("acme", "auth.signout", "user", "", "s"), "actor_id"),
        (("acme", "auth.signout", "user", "u", "s" * 129), "source"),
    ],
)
def test_sql_emit_refuses_naming_the_field_and_writes_nothing(settings: Settings, args: tuple, field: str) -> None:
    with connect(settings, "compliance_writer") as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=f"^{field}:"):
            conn.execute("SELECT * FROM compliance.emit_event(%s, %s, %s, %s, %s, now(), '{}')", args)
    with connect(settings, None, autocommit=True) as owner:
        assert owner.execute("SELECT count(*) FROM compliance.outbox").fetchone()[0] == 0


def test_sql_emit_refuses_unsafe_integers(settings: Settings) -> None:
    with connect(settings, "compliance_writer") as conn, pytest.raises(psycopg.errors.NumericValueOutOfRange):
        conn.execute(
            "SELECT * FROM compliance.emit_event('a', 'auth.signout', 'user', 'u', 's', now(), "
            "'{\"userId\": 9007199254740993}')"
        )


# One table of hostile inputs, through both emit paths: each is refused by both with the same field and
# reason, word for word, or accepted by both (a formula-looking value is data; CSV exports neutralise it).
HOSTILE = [
    ({"actor_id": "\x1b[2J\x1b[31mroot"}, "actor_id: holds the control or bidirectional character U+001B; remove it"),
    ({"actor_id": "admin\u202etxt.exe"}, "actor_id: holds the control or bidirectional character U+202E; remove it"),
    ({"actor_id": "a\u061cb"}, "actor_id: holds the control or bidirectional character U+061C; remove it"),
    ({"actor_id": "a\u200fb"}, "actor_id: holds the control or bidirectional character U+200F; remove it"),
    ({"actor_id": "line\nbreak"}, "actor_id: holds the control or bidirectional character U+000A; remove it"),
    ({"actor_id": "nel\x85"}, "actor_id: holds the control or bidirectional character U+0085; remove it"),
    ({"source": "web\u2066x"}, "source: holds the control or bidirectional character U+2066; remove it"),
    ({"source": "tab\there"}, "source: holds the control or bidirectional character U+0009; remove it"),
    ({"source": "del\x7f"}, "source: holds the control or bidirectional character U+007F; remove it"),
    (
        {"tenant_id": "ledger:platform"},
        "tenant_id: ledger:platform is written only by the ledger itself; use your own tenant id",
    ),
    ({"event_type": "admin.x"}, "event_type: 'admin.x' is not a registered event type"),
    ({"event_type": "nope.nope"}, "event_type: 'nope.nope' is not a registered event type"),
    ({"tenant_id": "bad tenant"}, "tenant_id: is required: 1 to 128 characters of A-Z a-z 0-9 . _ : -"),
    ({"actor_type": "robot"}, "actor_type: must be one of agent, operator, service, system, user; got 'robot'"),
    ({"actor_id": ""}, "actor_id: must be 1 to 256 characters, got 0"),
    ({"source": "s" * 129}, "source: must be 1 to 128 characters, got 129"),
    ({"actor_id": '=HYPERLINK("http://x")'}, None),
    ({"actor_id": "+14155550123", "source": "émoji \U0001f600 ok"}, None),
]


@pytest.mark.parametrize("overrides, refusal", HOSTILE, ids=[str(i) for i in range(len(HOSTILE))])
def test_python_and_sql_emit_refuse_the_same_hostile_input_for_the_same_reason(
    settings: Settings, overrides: dict, refusal: str | None
) -> None:
    raw = sample_event(1, **overrides)
    event_id = "019a8b2c-0000-7001-8000-000000000c01"
    with connect(settings, "compliance_writer") as conn:
        try:
            prepare_event({**raw, "event_id": event_id}, REG)
            python_says = None
        except EventRefusedType as exc:
            python_says = str(exc)
        try:
            with conn.transaction():
                _sql_emit(conn, raw, event_id)
            sql_says = None
        except (psycopg.errors.InvalidParameterValue, psycopg.errors.InsufficientPrivilege) as exc:
            sql_says = exc.diag.message_primary
    assert python_says == sql_says == refusal
    with connect(settings, None, autocommit=True) as owner:
        assert owner.execute("SELECT count(*) FROM compliance.outbox").fetchone()[0] == (refusal is None)


def test_the_writers_sql_path_refuses_the_ledgers_types_and_only_the_owner_has_the_ledgers(settings: Settings) -> None:
    with connect(settings, None, autocommit=True) as owner:
        owner.execute(
            "INSERT INTO compliance.event_types (event_type, keep) VALUES ('admin.operator_changed', "
            "'{operator}') ON CONFLICT DO NOTHING"
        )
    with connect(settings, "compliance_writer") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            conn.execute(
                "SELECT * FROM compliance.emit_event('acme', 'admin.operator_changed', 'operator', 'o', "
                "'cli', now(), '{}')"
            )
        assert info.value.diag.message_primary == "event_type: admin.* types are written only by the ledger itself"
    with pytest.raises(EventRefusedType) as refused:
        prepare_event(sample_event(1, event_type="admin.operator_changed"), _registry_with("admin.operator_changed"))
    assert str(refused.value) == info.value.diag.message_primary


def _registry_with(name: str) -> Registry:
    return Registry({**registry_data(), name: {"keep": ["operator"]}})
