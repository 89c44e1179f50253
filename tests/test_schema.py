"""The schema enforces immutability for every role and least privilege for the three login roles."""

from __future__ import annotations

import psycopg
import pytest

from compliance.settings import Settings
from tasks.db import connect
from tasks.drain import drain_batch
from tasks.outbox import emit
from tasks.schema import SQL_DIR, apply_migrations, drift_report
from tests.conftest import sample_event


@pytest.fixture
def chained(settings: Settings) -> Settings:
    with connect(settings, "compliance_writer") as w, w.transaction():
        for i in range(3):
            emit(w, sample_event(i))
    with connect(settings, "compliance_drainer") as d:
        assert drain_batch(d).drained == 3
    return settings


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE compliance.events SET actor_id = 'mallory' WHERE seq = 2",
        "DELETE FROM compliance.events WHERE seq = 2",
        "TRUNCATE compliance.events",
        "TRUNCATE compliance.events CASCADE",
    ],
)
def test_immutability_triggers_fire_for_the_owner(chained: Settings, statement: str) -> None:
    with connect(chained, None, autocommit=True) as owner:
        assert owner.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="immutable"):
            owner.execute(statement)
        assert owner.execute("SELECT count(*) FROM compliance.events").fetchone()[0] == 3


@pytest.mark.parametrize(
    "role, statement",
    [
        ("compliance_writer", "SELECT * FROM compliance.events"),
        ("compliance_writer", "SELECT * FROM compliance.outbox"),
        ("compliance_writer", "UPDATE compliance.outbox SET actor_id = 'x'"),
        ("compliance_writer", "DELETE FROM compliance.outbox"),
        # A writer that chose its row's transaction id could file it as already drained: it is never chained.
        (
            "compliance_writer",
            "INSERT INTO compliance.outbox (event_id, tenant_id, occurred_at, actor_type, actor_id, "
            "source, event_type, payload, txid) VALUES (gen_random_uuid(), 't', '2026-11-22T10:00:00.000000Z', "
            "'user', 'a', 's', 'auth.signout', '{}', '3')",
        ),
        ("compliance_writer", "UPDATE compliance.outbox_cursor SET lo = '1:1:'"),
        ("compliance_drainer", "UPDATE compliance.outbox SET txid = '3'"),
        ("compliance_reader", "UPDATE compliance.outbox_cursor SET lo = '1:1:'"),
        ("compliance_drainer", "UPDATE compliance.events SET actor_id = 'x'"),
        ("compliance_drainer", "DELETE FROM compliance.events"),
        ("compliance_drainer", "TRUNCATE compliance.events"),
        ("compliance_drainer", "UPDATE compliance.outbox SET payload = '{}'"),
        (
            "compliance_drainer",
            "INSERT INTO compliance.outbox (event_id, tenant_id, occurred_at, actor_type, actor_id, "
            "source, event_type, payload) VALUES (gen_random_uuid(), 't', '2026-11-22T10:00:00.000000Z', "
            "'user', 'a', 's', 'auth.signout', '{}')",
        ),
        ("compliance_reader", "INSERT INTO compliance.tenant_heads VALUES ('x', 0, '\\x00')"),
        (
            "compliance_reader",
            "INSERT INTO compliance.outbox (event_id, tenant_id, occurred_at, actor_type, actor_id, "
            "source, event_type, payload) VALUES (gen_random_uuid(), 't', '2026-11-22T10:00:00.000000Z', 'user', 'a', 's', "
            "'auth.signout', '{}')",
        ),
        ("compliance_reader", "UPDATE compliance.export_jobs SET status = 'failed'"),
        ("compliance_reader", "DELETE FROM compliance.outbox"),
        ("compliance_reader", "CREATE TABLE compliance.sneaky (x int)"),
    ],
)
def test_each_role_is_refused_what_it_must_not_do(chained: Settings, role: str, statement: str) -> None:
    with connect(chained, role, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_roles_can_do_their_own_job(chained: Settings) -> None:
    with connect(chained, "compliance_reader", autocommit=True) as reader:
        assert reader.execute("SELECT count(*) FROM compliance.events").fetchone()[0] == 3


def test_roles_log_in_with_rotated_passwords_and_open_sessions_survive(chained: Settings) -> None:
    url = chained.database_url
    assert url
    with connect(chained, None, autocommit=True) as owner:
        owner.execute("ALTER ROLE compliance_reader PASSWORD 'first-password-123'")
    reader_url = url.replace("compliance_admin@", "compliance_reader:first-password-123@")
    with psycopg.connect(reader_url, autocommit=True) as open_session:
        with connect(chained, None, autocommit=True) as owner:
            owner.execute("ALTER ROLE compliance_reader PASSWORD 'second-password-456'")
        assert open_session.execute("SELECT count(*) FROM compliance.events").fetchone()[0] == 3
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(reader_url).close()
    psycopg.connect(url.replace("compliance_admin@", "compliance_reader:second-password-456@")).close()


def test_migrate_is_idempotent_and_records_sha256(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert apply_migrations(conn) == []
        rows = conn.execute("SELECT filename, sha256 FROM compliance.schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == sorted(p.name for p in SQL_DIR.glob("*.sql"))
    assert all(len(r[1]) == 64 for r in rows)


def test_drift_reports_all_applied_then_a_dropped_index_as_missing(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert {r.status for r in drift_report(conn)} == {"APPLIED"}
        conn.execute("DROP INDEX compliance.events_occurred_at_brin")
        missing = [r for r in drift_report(conn) if r.status == "MISSING"]
    assert [(r.kind, r.name) for r in missing] == [("index", "compliance.events_occurred_at_brin")]


def test_drift_probes_a_declared_constraint_by_its_table_and_name(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = {(r.kind, r.name): r.status for r in drift_report(conn)}
        assert rows[("constraint", "compliance.outbox/outbox_tenant_id_chars")] == "APPLIED"
        conn.execute("ALTER TABLE compliance.outbox DROP CONSTRAINT outbox_tenant_id_chars")
        missing = [r for r in drift_report(conn) if r.status == "MISSING"]
    assert [(r.kind, r.name) for r in missing] == [("constraint", "compliance.outbox/outbox_tenant_id_chars")]


def test_drift_reports_an_edited_applied_migration_as_modified(db_url: str, tmp_path) -> None:
    for p in SQL_DIR.glob("*.sql"):
        (tmp_path / p.name).write_text(p.read_text())
    edited = tmp_path / "0001_ledger.sql"
    edited.write_text(edited.read_text() + "\n-- an edit after the fact\n")
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = drift_report(conn, tmp_path)
    assert [r.migration for r in rows if r.status == "MODIFIED"] == ["0001_ledger.sql"]


def test_drift_expects_an_object_a_later_migration_drops_to_be_gone(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = {(r.kind, r.name): r for r in drift_report(conn)}
        dropped = rows[("index", "compliance.outbox_shard")]
        assert (dropped.status, dropped.detail) == ("APPLIED", "dropped by 0007_outbox_cursor.sql")
        conn.execute("CREATE INDEX outbox_shard ON compliance.outbox (shard, id)")
        try:
            back = [r for r in drift_report(conn) if r.name == "compliance.outbox_shard"]
        finally:
            conn.execute("DROP INDEX compliance.outbox_shard")
    assert [(r.status, r.detail) for r in back] == [("MODIFIED", "present, but 0007_outbox_cursor.sql drops it")]
