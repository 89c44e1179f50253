"""Each role's privileges are exactly those the schema grants, read back from the catalog; no secret leaks."""

from __future__ import annotations

import psycopg

from compliance.settings import Settings
from tasks.db import connect

EXPECTED_TABLE_GRANTS = {
    "compliance_writer": set(),  # column-level INSERT on the outbox only (checked below)
    "compliance_drainer": {
        ("event_types", "SELECT"),  # the registry the drain holds rows to
        ("events", "INSERT"),
        ("events", "SELECT"),
        ("outbox", "SELECT"),  # deletes only through compliance.purge_drained
        ("outbox_cursor", "SELECT"),  # moved only through compliance.advance_cursors
        ("outbox_pending", "SELECT"),
        ("outbox_poison", "INSERT"),
        ("outbox_poison", "SELECT"),
        ("tenant_heads", "INSERT"),
        ("tenant_heads", "SELECT"),
        ("tenant_heads", "UPDATE"),
    },
    "compliance_anchorer": {
        ("anchor_ranges", "INSERT"),
        ("anchor_ranges", "SELECT"),
        ("anchor_runs", "INSERT"),
        ("anchor_runs", "SELECT"),
        ("anchors", "INSERT"),
        ("anchors", "SELECT"),
        ("events", "SELECT"),
        ("tenant_anchor_state", "INSERT"),
        ("tenant_anchor_state", "SELECT"),
        ("tenant_anchor_state", "UPDATE"),
        ("tenant_heads", "SELECT"),
    },
    "compliance_exporter": {
        ("anchor_ranges", "SELECT"),
        ("anchors", "SELECT"),
        ("events", "SELECT"),
        ("export_jobs", "INSERT"),
        ("export_jobs", "SELECT"),
    },
}
READ_ONLY = ("compliance_reader",)
WRITE_PRIVILEGES = {"INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"}


def grants(conn: psycopg.Connection, role: str) -> set[tuple[str, str]]:
    return {
        (t, p)
        for t, p in conn.execute(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = %s AND table_schema = 'compliance'",
            (role,),
        )
    }


def column_grants(conn: psycopg.Connection, role: str) -> set[tuple[str, str, str]]:
    return {
        tuple(r)
        for r in conn.execute(  # type: ignore[misc]
            "SELECT table_name, column_name, privilege_type FROM information_schema.column_privileges "
            "WHERE grantee = %s AND table_schema = 'compliance'",
            (role,),
        )
    }


def test_table_privileges_are_exactly_the_schemas(settings: Settings) -> None:
    with connect(settings, None, autocommit=True) as conn:
        for role, expected in EXPECTED_TABLE_GRANTS.items():
            assert grants(conn, role) == expected, role
        for role in READ_ONLY:
            assert {p for _, p in grants(conn, role)} == {"SELECT"}, role
        assert {(t, p) for t, p in grants(conn, "compliance_watchdog") if p != "SELECT"} == {
            ("watchdog_runs", "INSERT")
        }
        tables = {
            r[0]
            for r in conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'compliance'")
        }
        # read only through the operator functions / the ingest service's token lookup
        owner_only = {"operator_secrets", "operator_failures", "ingest_sources"}
        assert {t for t, _ in grants(conn, "compliance_reader")} == tables - owner_only
        for role in (*EXPECTED_TABLE_GRANTS, "compliance_reader", "compliance_watchdog", "compliance_operator"):
            assert not {t for t, _ in grants(conn, role)} & owner_only, role
        assert grants(conn, "compliance_operator") == set()


def test_column_privileges_are_exactly_the_schemas(settings: Settings) -> None:
    outbox_insert = {
        ("outbox", c, "INSERT")
        for c in (
            "event_id",
            "tenant_id",
            "occurred_at",
            "actor_type",
            "actor_id",
            "source",
            "event_type",
            "payload",
            "redacted_fields",
        )
    }
    with connect(settings, None, autocommit=True) as conn:
        assert column_grants(conn, "compliance_writer") == outbox_insert
        drainer_updates = {(t, c) for t, c, p in column_grants(conn, "compliance_drainer") if p == "UPDATE"}
        assert drainer_updates == {
            ("tenant_heads", "tenant_id"),
            ("tenant_heads", "last_seq"),
            ("tenant_heads", "head_hash"),
            ("tenant_heads", "updated_at"),
        }
        watchdog_writes = {(t, c, p) for t, c, p in column_grants(conn, "compliance_watchdog") if p != "SELECT"}
        assert watchdog_writes == {("export_jobs", c, "UPDATE") for c in ("status", "finished_at", "job_error")} | {
            ("watchdog_runs", c, "INSERT") for c in ("id", "run_at", "figures", "states", "critical")
        }


def test_roles_are_plain_logins_without_superpowers(settings: Settings) -> None:
    with connect(settings, None, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin, rolinherit "
            "FROM pg_roles WHERE rolname LIKE 'compliance\\_%' AND rolname <> 'compliance_admin'"
        ).fetchall()
    assert len(rows) == 7
    for name, superuser, createrole, createdb, bypassrls, login, inherit in rows:
        assert (superuser, createrole, createdb, bypassrls, login, inherit) == (
            False,
            False,
            False,
            False,
            True,
            False,
        ), name


def test_functions_are_executable_only_by_the_roles_that_need_them(settings: Settings) -> None:
    with connect(settings, None, autocommit=True) as conn:
        rows = dict(
            conn.execute(
                "SELECT p.proname, array_agg(r.rolname ORDER BY r.rolname) FILTER (WHERE r.rolname LIKE 'compliance\\_%' "
                "AND has_function_privilege(r.oid, p.oid, 'EXECUTE')) FROM pg_proc p CROSS JOIN pg_roles r "
                "WHERE p.pronamespace = 'compliance'::regnamespace AND p.prosecdef GROUP BY p.proname"
            ).fetchall()
        )
    operator_functions = ["compliance_admin", "compliance_operator"]
    status_readers = [
        "compliance_admin",
        "compliance_exporter",
        "compliance_operator",
        "compliance_reader",
        "compliance_watchdog",
    ]
    assert rows == {
        "event_chained": ["compliance_admin", "compliance_exporter", "compliance_writer"],
        "events_chained": ["compliance_admin", "compliance_exporter", "compliance_writer"],
        "emit_event": ["compliance_admin", "compliance_writer"],
        "ingest_source": ["compliance_admin", "compliance_writer"],
        "operator_authenticate": operator_functions,
        "operator_events": operator_functions,
        "operator_event": operator_functions,
        "operator_export_link": operator_functions,
        "export_job_status": status_readers,
        "export_jobs_recent": status_readers,
        "ledger_event": ["compliance_admin"],  # only from inside the operator functions
        "advance_cursors": ["compliance_admin", "compliance_drainer"],
        "purge_drained": ["compliance_admin", "compliance_drainer"],
        "record_retention_lowered": ["compliance_admin", "compliance_anchorer"],  # its one ledger event
    }


def test_credentials_in_payloads_never_reach_the_database_or_an_export(settings: Settings, tmp_path) -> None:
    from tasks.anchoring import anchor_once
    from tasks.drain import drain_pending
    from tasks.exports import queue_export, run_job
    from tasks.outbox import emit_batch
    from tasks.storage import s3_client
    from tests.conftest import sample_event
    from tests.test_anchor import KEY

    secrets = [
        "Bearer sEcReTtOkEn0123456789",
        "AKIAABCDEFGHIJKLMNOP",
        "hunter2-password-value",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlc2lnbmF0dXJl",
        "clg_q8Xv-2LkT_9wZrB4nYc7HsJ0aPfU3mEoDiGt6Vx1KyQ",
    ]
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(
            conn,
            [
                sample_event(
                    i,
                    event_type="policy.evaluated",
                    payload={
                        "policyId": "p",
                        "decision": "deny",
                        "reason": secrets[0],
                        "subject": {"key": secrets[1], "jwt": secrets[3], "ingestToken": secrets[4]},
                        "password": secrets[2],
                    },
                )
                for i in range(5)
            ],
        )
    drain_pending.fn(settings)
    anchor_once(settings, KEY)
    job = queue_export(
        settings,
        operator="ops@example.com",
        fmt="ndjson",
        filter_text={"since": "2026-11-22T00:00:00Z", "until": "2026-11-23T00:00:00Z"},
    )
    outcome = run_job(settings, job, signing_key=KEY)
    exported = (
        s3_client(settings).get_object(Bucket=settings.export_bucket, Key=outcome.data_key)["Body"].read().decode()
    )
    with connect(settings, None, autocommit=True) as conn:
        dump = "\n".join(
            str(row)
            for table in ("outbox", "outbox_poison", "events", "export_jobs", "anchors")
            for row in conn.execute(f"SELECT * FROM compliance.{table}")
        )
    for secret in secrets:
        assert secret not in dump and secret.split()[-1] not in dump
        assert secret not in exported and secret.split()[-1] not in exported
    assert "<REDACTED:secret>" in exported and "password" in exported  # dropped, and named as dropped
