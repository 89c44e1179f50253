"""compliance.emit_event: other runtimes emit with only the writer role and get exactly what Python's emit() stores."""

from __future__ import annotations

import json
import os

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from compliance.events import Registry, prepare_event
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
]


@pytest.mark.parametrize("raw", CASES, ids=[str(i) for i in range(len(CASES))])
def test_sql_emit_stores_what_python_emit_stores(settings: Settings, raw: dict) -> None:
    expected = prepare_event(raw, REG)
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        row = conn.execute(
            "SELECT * FROM compliance.emit_event(%s, %s, %s, %s, %s, %s, %s::jsonb, %s)",
            (
                raw["tenant_id"],
                raw["event_type"],
                raw["actor_type"],
                raw["actor_id"],
                raw["source"],
                raw["occurred_at"],
                json.dumps(raw["payload"]),
                expected.event_id,
            ),
        ).fetchone()
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
