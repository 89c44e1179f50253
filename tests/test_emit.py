"""Emitting into the outbox, in the caller's own transaction."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from compliance.events import EventRefused
from compliance.settings import Settings
from tasks.db import connect
from tasks.outbox import emit, emit_batch
from tests.conftest import run_cli, sample_event


def outbox_count(settings: Settings) -> int:
    with connect(settings, None, autocommit=True) as conn:
        return int(conn.execute("SELECT count(*) FROM compliance.outbox").fetchone()[0])


def test_a_rolled_back_caller_leaves_no_event(settings: Settings) -> None:
    with connect(settings, "compliance_writer") as conn, pytest.raises(RuntimeError), conn.transaction():
        emit(conn, sample_event(1))
        raise RuntimeError("the caller's own work failed")
    assert outbox_count(settings) == 0


def test_a_duplicate_event_id_is_stored_once_and_reported(settings: Settings) -> None:
    with connect(settings, "compliance_writer") as conn:
        with conn.transaction():
            first = emit(conn, sample_event(1))
        with conn.transaction():
            again = emit(conn, sample_event(1, event_id=first.event_id))
            batch = emit_batch(conn, [sample_event(2, event_id=first.event_id), sample_event(3)])
    assert first.stored and again.duplicate
    assert (batch.stored, batch.duplicates) == (1, 1)
    assert outbox_count(settings) == 2


def test_a_refused_event_in_a_batch_writes_nothing(settings: Settings) -> None:
    with connect(settings, "compliance_writer") as conn, pytest.raises(EventRefused) as info, conn.transaction():
        emit_batch(conn, [sample_event(1), sample_event(2, actor_type="robot"), sample_event(3)])
    assert info.value.field == "actor_type"
    assert outbox_count(settings) == 0


def test_emit_works_on_a_sqlalchemy_connection_and_rolls_back_with_it(settings: Settings) -> None:
    engine = sa.create_engine(settings.database_url.replace("postgresql://", "postgresql+psycopg://"))  # type: ignore[union-attr]
    with engine.connect() as conn:
        with conn.begin():
            assert emit(conn, sample_event(1)).stored
        trans = conn.begin()
        emit(conn, sample_event(2))
        trans.rollback()
    engine.dispose()
    assert outbox_count(settings) == 1


def test_cli_emit_prints_the_event_id_and_refusals_exit_2(settings: Settings, env_for) -> None:
    env = env_for(settings)
    ok = run_cli(
        [
            "emit",
            "--tenant-id",
            "acme",
            "--event-type",
            "auth.signout",
            "--actor-type",
            "user",
            "--actor-id",
            "u-1",
            "--source",
            "cli",
            "--payload",
            '{"userId": "u-1", "sessionId": "s"}',
        ],
        env,
    )
    assert ok.returncode == 0, ok.stderr
    assert len(ok.stdout.strip()) == 36
    bad = run_cli(
        [
            "emit",
            "--tenant-id",
            "acme",
            "--event-type",
            "auth.nope",
            "--actor-type",
            "user",
            "--actor-id",
            "u-1",
            "--source",
            "cli",
            "--payload",
            "{}",
        ],
        env,
    )
    assert bad.returncode == 2 and "event_type" in bad.stderr
    dup_keys = run_cli(
        [
            "emit",
            "--tenant-id",
            "acme",
            "--event-type",
            "auth.signout",
            "--actor-type",
            "user",
            "--actor-id",
            "u-1",
            "--source",
            "cli",
            "--payload",
            '{"userId": 1, "userId": 2}',
        ],
        env,
    )
    assert dup_keys.returncode == 2 and "duplicate key" in dup_keys.stderr
    assert outbox_count(settings) == 1


def test_writer_role_cannot_read_what_it_wrote(settings: Settings) -> None:
    with connect(settings, "compliance_writer", autocommit=True) as conn:
        emit(conn, sample_event(1))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT payload FROM compliance.outbox")
