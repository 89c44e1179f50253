"""docs/format.md §1 on the server side: whatever a role inserts into the outbox, the drain chains only what the rules
allow; the drainer purges and moves cursors only forward, through definer functions; staging and prod log
every flow in as its own role."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from compliance.events import Registry, registry_data
from compliance.settings import Settings, SettingsError
from tasks.db import connect
from tasks.drain import drain_pending, purge_drained
from tasks.outbox import emit
from tasks.schema import SQL_DIR, apply_migrations
from tasks.verify import verify_chain
from tests.conftest import sample_event

OUTBOX_INSERT = (
    "INSERT INTO compliance.outbox (event_id, tenant_id, occurred_at, actor_type, actor_id, source, event_type, "
    "payload) VALUES (%s, %s, '2026-11-22T10:00:00.000000Z', 'user', %s, %s, %s, %s)"
)

# Raw rows a writer could insert past emit, each with the reason the drain gives. Payloads are canonical JSON,
# so only the rule named is broken.
HOSTILE_ROWS = [
    (
        "acme",
        "u",
        "web",
        "nope.never_registered",
        "{}",
        "event_type: 'nope.never_registered' is not a registered event type",
    ),
    (
        "acme",
        "u",
        "web",
        "auth.signin.success",
        '{"password":"hunter2","userId":"u"}',
        "payload.password: is not on the allow-list of auth.signin.success",
    ),
    (
        "acme",
        "u",
        "web",
        "policy.evaluated",
        '{"reason":"Bearer abcdefghijklmnop0123"}',
        "payload.reason: holds a credential that was not redacted",
    ),
    (
        "acme",
        "\x1b[2J\x1b[31mroot",
        "web",
        "auth.signout",
        "{}",
        "actor_id: holds the control or bidirectional character U+001B; remove it",
    ),
    (
        "acme",
        "u",
        "web\u202egnp.exe",
        "auth.signout",
        "{}",
        "source: holds the control or bidirectional character U+202E; remove it",
    ),
    (
        "ledger:platform",
        "u",
        "web",
        "auth.signout",
        "{}",
        "tenant_id: ledger:platform is written only by the ledger itself; use your own tenant id",
    ),
    (
        "acme",
        "u",
        "web",
        "admin.operator_changed",
        "{}",
        "event_type: admin.* types are written only by the ledger itself",
    ),
    ("acme", "u", "web", "admin.x", "{}", "event_type: 'admin.x' is not a registered event type"),
    (
        "acme",
        "u",
        "web",
        "policy.evaluated",
        '{"reason":"' + "x" * 5000 + '"}',
        "payload.reason: is longer than its cap and was not truncated",
    ),
]


# The ledger's own types of docs/format.md §1, registered here in case the packaged registry does not carry them yet.
LEDGER_TYPES = {
    "admin.operator_changed": {"keep": ["operator", "change", "tenants", "crossTenant", "by", "prefectUser"]},
    "data.cross_tenant_read": {"keep": ["operator", "filter", "prefectUser"]},
}


@pytest.fixture
def registry(settings: Settings) -> Registry:
    """The ledger's types in the database's registry (what the drain and emit_event read) and in Python's."""
    with connect(settings, None, autocommit=True) as owner:
        for name, spec in LEDGER_TYPES.items():
            owner.execute(
                "INSERT INTO compliance.event_types (event_type, keep) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (name, spec["keep"]),
            )
    return Registry({**LEDGER_TYPES, **registry_data()})


def hostile_id(i: int) -> str:
    return f"019a8b2c-0000-7001-8000-{0xB00 + i:012x}"


def insert_hostile_rows(conn: psycopg.Connection) -> None:
    for i, (tenant, actor, source, event_type, payload, _) in enumerate(HOSTILE_ROWS):
        conn.execute(OUTBOX_INSERT, (hostile_id(i), tenant, actor, source, event_type, payload))


def test_raw_inserts_that_break_the_rules_are_quarantined_with_the_reason_never_chained(
    settings: Settings, registry: Registry
) -> None:
    with connect(settings, "compliance_writer") as w, w.transaction():
        emit(w, sample_event(1))
        insert_hostile_rows(w)
        emit(w, sample_event(2))  # behind the quarantined rows, in the same tenant and the same transaction
    result = drain_pending.fn(settings)
    assert (result.drained, result.poisoned) == (2, len(HOSTILE_ROWS))
    with connect(settings, None, autocommit=True) as owner:
        poison = owner.execute(
            "SELECT event_id::text, error, written_by FROM compliance.outbox_poison ORDER BY id"
        ).fetchall()
        chained = owner.execute("SELECT event_id::text FROM compliance.events").fetchall()
        pending = owner.execute("SELECT count(*) FROM compliance.outbox_pending").fetchone()[0]
        kept = dict(owner.execute("SELECT event_id::text, payload FROM compliance.outbox_poison").fetchall())
    assert poison == [(hostile_id(i), row[5], "compliance_writer") for i, row in enumerate(HOSTILE_ROWS)]
    # the quarantined copy keeps only what redaction keeps: nothing redaction drops is stored for good
    assert kept[hostile_id(1)] == '{"userId":"u"}' and kept[hostile_id(2)] == '{"reason":"<REDACTED:secret>"}'
    assert kept[hostile_id(0)].startswith('"<withheld')
    assert not {hostile_id(i) for i in range(len(HOSTILE_ROWS))} & {r[0] for r in chained}
    assert len(chained) == 2 and pending == 0
    assert verify_chain(settings).ok


TENANT_IDS = [
    "acme",
    "A.b:c-d_9",
    "x" * 128,
    "x" * 129,
    "",
    "a b",
    "a\n",
    "\nacme",
    "acme/1",
    "é",
    "tenant-é",
    "Ａcme",  # a full-width letter: one character, three bytes
    "ACME%",
    "a\\b",
    "[acme]",
    "^acme",
]


def test_the_outbox_refuses_exactly_the_tenant_ids_the_rule_refuses(settings: Settings) -> None:
    """The outbox's own constraint (sql/0017) accepts what '^[A-Za-z0-9._:-]{1,128}$' matches, nothing else."""
    outcomes = []
    with connect(settings, "compliance_writer", autocommit=True) as w:
        for i, tenant in enumerate(TENANT_IDS):
            allowed = w.execute("SELECT %s ~ '^[A-Za-z0-9._:-]{1,128}$'", (tenant,)).fetchone()[0]
            try:
                w.execute(OUTBOX_INSERT, (hostile_id(50 + i), tenant, "u", "web", "auth.signout", "{}"))
                stored = True
            except psycopg.errors.CheckViolation as exc:
                assert exc.diag.constraint_name == "outbox_tenant_id_chars"
                stored = False
            assert stored is allowed, f"tenant_id {tenant!r}: stored {stored}, the rule says {allowed}"
            outcomes.append(stored)
    assert outcomes[:4] == [True, True, True, False] and outcomes.count(True) == 3


def test_the_writer_cannot_set_who_wrote_a_row(settings: Settings) -> None:
    with connect(settings, "compliance_writer") as w, pytest.raises(psycopg.errors.InsufficientPrivilege):
        w.execute(
            "INSERT INTO compliance.outbox (event_id, tenant_id, occurred_at, actor_type, actor_id, source, "
            "event_type, payload, written_by) VALUES (%s, 'ledger:platform', '2026-11-22T10:00:00.000000Z', "
            "'system', 'u', 's', 'auth.signout', '{}', 'compliance_admin')",
            (hostile_id(99),),
        )


def test_the_ledger_writes_its_own_tenant_and_types_and_nobody_else_does(
    settings: Settings, registry: Registry
) -> None:
    operator_changed = sample_event(
        3,
        tenant="ledger:platform",
        event_type="admin.operator_changed",
        actor_type="operator",
        payload={"operator": "ops@example.com", "change": "added", "by": "admin@example.com"},
    )
    cross_read = sample_event(
        4, tenant="ledger:platform", event_type="data.cross_tenant_read", payload={"operator": "ops@example.com"}
    )
    with connect(settings, None) as owner, owner.transaction():  # the CLI's owner connection
        assert emit(owner, operator_changed, registry=registry, ledger=True).stored
        # a SECURITY DEFINER function owned by the schema owner takes the SQL path
        owner.execute(
            "SELECT * FROM compliance.emit_ledger_event('ledger:platform', 'admin.operator_changed', 'operator', "
            "'ops@example.com', 'compliance-cli', now(), '{\"change\": \"revoked\"}')"
        )
    with connect(settings, "compliance_exporter") as exporter, exporter.transaction():
        assert emit(exporter, cross_read, registry=registry, ledger=True).stored
    with connect(settings, "compliance_writer") as w:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            w.execute(
                "SELECT * FROM compliance.emit_ledger_event('ledger:platform', 'admin.operator_changed', "
                "'operator', 'x', 's', now(), '{}')"
            )
        w.rollback()
        with w.transaction():
            emit(w, {**operator_changed, "event_id": hostile_id(50)}, registry=registry, ledger=True)  # claims it
    result = drain_pending.fn(settings)
    assert (result.drained, result.poisoned) == (3, 1)
    with connect(settings, None, autocommit=True) as owner:
        chained = owner.execute(
            "SELECT event_type, count(*) FROM compliance.events WHERE tenant_id = 'ledger:platform' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        poison = owner.execute("SELECT event_id::text, error FROM compliance.outbox_poison").fetchall()
    assert chained == [("admin.operator_changed", 2), ("data.cross_tenant_read", 1)]
    assert poison == [
        (hostile_id(50), "tenant_id: ledger:platform is written only by the ledger itself; use your own tenant id")
    ]


def test_rows_enqueued_before_the_rules_chain_as_they_are(settings: Settings, tmp_path: Path) -> None:
    """The outbox records its rows' writers from migration 0009 on; a row waiting from before (no writer)
    is chained under the rules of its time, control characters included."""
    older = tmp_path / "sql"
    older.mkdir()
    for f in sorted(SQL_DIR.glob("*.sql")):
        if f.name < "0009":
            shutil.copy(f, older / f.name)
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute("DROP SCHEMA compliance CASCADE")
        admin.execute("DROP SCHEMA compliance_crypto CASCADE")  # 0008's pgcrypto schema, made again below
        apply_migrations(admin, older)
        admin.execute(OUTBOX_INSERT, (hostile_id(0), "acme", "\x1b[31mold\tx\ny\r", "web", "auth.signout", "{}"))
        apply_migrations(admin)
        assert admin.execute("SELECT written_by FROM compliance.outbox").fetchall() == [(None,)]
    with connect(settings, "compliance_writer") as w, w.transaction():
        w.execute(OUTBOX_INSERT, (hostile_id(1), "acme", "\x1b[31mnew", "web", "auth.signout", "{}"))
    result = drain_pending.fn(settings)
    assert (result.drained, result.poisoned) == (1, 1)
    with connect(settings, None, autocommit=True) as owner:
        assert owner.execute("SELECT actor_id FROM compliance.events").fetchall() == [("\x1b[31mold\tx\ny\r",)]
    assert verify_chain(settings).ok


def test_the_drainer_cannot_delete_an_unchained_row_nor_move_a_cursor_back(settings: Settings) -> None:
    with connect(settings, "compliance_writer") as w, w.transaction():
        emit(w, sample_event(1))
    with connect(settings, "compliance_drainer", autocommit=True) as d:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            d.execute("DELETE FROM compliance.outbox")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            d.execute("UPDATE compliance.outbox_cursor SET lo = '1:1:'")
        # The purge function deletes nothing that is not chained, even with a retention of zero.
        assert purge_drained(d, 0) == 0
    assert drain_pending.fn(settings).drained == 1
    with connect(settings, "compliance_drainer", autocommit=True) as d:
        lo = d.execute("SELECT lo::text FROM compliance.outbox_cursor WHERE shard = 0").fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="backwards"):
            d.execute("SELECT compliance.advance_cursors('{0}', '1:1:', NULL, NULL, NULL)")
        ahead = f"{10**12}:{10**12}:"
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="ahead of the present"):
            d.execute("SELECT compliance.advance_cursors('{0}', %s, NULL, NULL, NULL)", (ahead,))
        assert d.execute("SELECT lo::text FROM compliance.outbox_cursor WHERE shard = 0").fetchone()[0] == lo
        assert purge_drained(d, 0) == 1  # the chained row goes


def test_a_row_a_cursor_skipped_is_never_purged(settings: Settings) -> None:
    """Even were a cursor moved past a row unchained (here by the owner), the purge keeps the row."""
    with connect(settings, "compliance_writer") as w, w.transaction():
        emit(w, sample_event(1))
    with connect(settings, None, autocommit=True) as owner:
        owner.execute("UPDATE compliance.outbox_cursor SET lo = pg_current_snapshot()")
    with connect(settings, "compliance_drainer", autocommit=True) as d:
        assert purge_drained(d, 0) == 0
    with connect(settings, None, autocommit=True) as owner:
        assert owner.execute("SELECT count(*) FROM compliance.outbox").fetchone()[0] == 1


def login_url(settings: Settings, role: str, password: str) -> str:
    with connect(settings, None, autocommit=True) as owner:
        owner.execute(
            psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(password)
            )
        )
    parts = urlsplit(settings.database_url or "")
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port}"))


def test_staging_refuses_a_flow_without_its_roles_url_and_logs_in_as_the_role_with_it(settings: Settings) -> None:
    staging = replace(settings, stage="staging")
    with pytest.raises(SettingsError, match="COMPLIANCE_DRAINER_DATABASE_URL is not set"):
        drain_pending.fn(staging)
    with pytest.raises(SettingsError, match="COMPLIANCE_WRITER_DATABASE_URL is not set"):
        connect(staging, "compliance_writer")
    urls = {role: login_url(settings, role, f"pw-{role}") for role in ("compliance_writer", "compliance_drainer")}
    staging = replace(staging, role_urls=urls)
    with connect(staging, "compliance_writer") as w, w.transaction():
        assert w.execute("SELECT session_user::text").fetchone()[0] == "compliance_writer"
        emit(w, sample_event(1))
    assert drain_pending.fn(staging).drained == 1


def test_the_cli_in_staging_without_a_roles_url_exits_2_naming_it(settings: Settings) -> None:
    from tests.conftest import run_cli

    done = run_cli(
        ["health", "--json"],
        {
            "COMPLIANCE_STAGE": "staging",
            "COMPLIANCE_DATABASE_URL": settings.database_url or "",
            "COMPLIANCE_ANCHOR_BUCKET": settings.anchor_bucket,
            "COMPLIANCE_EXPORT_BUCKET": settings.export_bucket,
            "COMPLIANCE_ANCHOR_KMS_KEY_ID": "alias/staging-anchors",
        },
    )
    assert done.returncode == 2, done.stderr
    assert "COMPLIANCE_READER_DATABASE_URL is not set" in done.stderr


_CREDENTIALISH = st.sampled_from(
    [
        "Bearer abcdefghijklmnop",
        "AKIAABCDEFGHIJKLMNOP",
        "x\\nAKIAABCDEFGHIJKLMNOP",
        "ghp_" + "a" * 36,
        "clg_q8Xv-2LkT_9wZrB4nYc7HsJ0aPfU3mEoDiGt6Vx1KyQ",
        "u-1",
        "é\t",
    ]
)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20) | _CREDENTIALISH,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@hsettings(max_examples=int(os.environ.get("COMPLIANCE_FUZZ_EXAMPLES", "1500")), deadline=None)
@given(
    st.sampled_from(["auth.signin.success", "policy.evaluated", "mcp.added", "data.export_initiated"]),
    st.dictionaries(
        st.sampled_from(["userId", "method", "reason", "subject", "url", "filter", "password", "x"]), _VALUES
    ),
)
def test_the_drains_payload_check_agrees_with_redaction(event_type: str, payload: dict) -> None:
    """A stored payload passes the drain exactly when redacting it again keeps it as it is."""
    from compliance.events import EventRefused, prepare_event, stored_event_problem
    from compliance.jcs import canonical_str

    reg = Registry.default()
    text = canonical_str(payload)
    try:
        prepared = prepare_event(sample_event(1, event_type=event_type, payload=payload), reg)
        fixed_point = prepared.redacted_fields == () and prepared.payload_jcs == text
    except EventRefused:
        fixed_point = False
    problem = stored_event_problem("acme", "u", "web", event_type, orjson.loads(text), reg.rule(event_type), False)
    assert (problem is None) == fixed_point, problem
