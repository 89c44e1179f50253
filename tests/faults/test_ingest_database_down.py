"""The ingest service while PostgreSQL stops in the middle of a stream of batches: every batch it
acknowledged (202) is stored, the client retries through the 503s, and everything is delivered once."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from compliance.ingest import Scope
from compliance.settings import Settings
from tasks.db import connect
from tasks.sources import add_source
from tests.conftest import sample_event
from tests.faults.conftest import RestartablePostgres
from tests.helpers.ingest import get, post, running_service

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
from compliance_client import IngestClient, uuid7  # noqa: E402

BATCHES, PER_BATCH = 60, 50


def test_database_stopped_mid_stream_loses_nothing_acknowledged(fault_pg: RestartablePostgres) -> None:
    settings = Settings(database_url=fault_pg.url)
    token = add_source(settings, "edge", Scope(None, None))
    acknowledged: list[str] = []
    sent: list[str] = []
    failures: list[BaseException] = []

    with running_service(settings) as base:
        client = IngestClient(base, token, max_attempts=400, max_backoff=0.2)

        def stream() -> None:
            try:
                for b in range(BATCHES):
                    events = [
                        sample_event(b * PER_BATCH + i, tenant=f"t{i % 4}", event_id=uuid7()) for i in range(PER_BATCH)
                    ]
                    sent.extend(e["event_id"] for e in events)
                    result = client.emit_batch(events)
                    assert not result.spooled
                    acknowledged.extend(result.event_ids)
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)

        sender = threading.Thread(target=stream)
        sender.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 5 * PER_BATCH:
            assert sender.is_alive() and time.monotonic() < deadline, failures
            time.sleep(0.01)
        fault_pg.stop("fast")  # open transactions are rolled back, connections cut mid-batch
        during = post(base + "/v1/events", [sample_event(0, event_id=uuid7())], token)
        health = get(base + "/healthz")
        while client.retries == 0:
            assert sender.is_alive() and time.monotonic() < deadline, failures
            time.sleep(0.01)
        stopped_at = len(acknowledged)
        fault_pg.start()
        sender.join(120)

    assert not failures, failures
    assert during[0] == 503 and during[1]["retry-after"]
    assert health == (503, {"status": "unavailable", "database": "unreachable", "outbox_deep": False})
    assert stopped_at < BATCHES * PER_BATCH  # the outage really fell inside the stream
    assert acknowledged == sent
    with connect(settings, None, autocommit=True) as conn:
        stored = {
            str(r[0])
            for r in conn.execute(
                "SELECT event_id FROM compliance.outbox WHERE tenant_id <> 'ledger:platform'"
            ).fetchall()
        }
    assert stored == set(sent) and len(sent) == BATCHES * PER_BATCH
