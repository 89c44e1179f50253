"""The HTTP ingest service over real HTTP (uvicorn on a free port) against a real PostgreSQL: batches chained
and verified, idempotent retries, whole-batch refusals, tokens, limits, backpressure, logs, fuzzed bodies."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from compliance.ingest import MAX_BATCH_EVENTS, Scope
from compliance.settings import Settings
from ingest.app import IngestConfig
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.outbox import emit_batch
from tasks.sources import add_source, revoke_source, rotate_source
from tasks.verify import verify_chain
from tests.conftest import run_cli, sample_event
from tests.helpers.ingest import get, post, running_service

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients" / "python"))
from compliance_client import IngestClient, IngestRefused, uuid7  # noqa: E402

ALL = Scope(None, None)


def scalar(settings: Settings, sql: str, params: Any = ()) -> Any:
    with connect(settings, None, autocommit=True) as conn:
        return conn.execute(sql, params).fetchone()[0]  # type: ignore[index]


def outbox_count(settings: Settings, where: str = "tenant_id <> 'ledger:platform'") -> int:
    return int(scalar(settings, f"SELECT count(*) FROM compliance.outbox WHERE {where}"))


def events_url(base: str) -> str:
    return base + "/v1/events"


def batch(n: int, start: int = 0, **overrides: Any) -> list[dict[str, Any]]:
    return [sample_event(i, tenant=f"t{i % 3}", event_id=uuid7(), **overrides) for i in range(start, start + n)]


def test_a_batch_is_stored_chained_redacted_and_verifies(settings: Settings) -> None:
    token = add_source(settings, "web-edge", ALL)
    events = batch(100)
    events[0]["payload"]["password"] = "hunter2"
    with running_service(settings) as base:
        status, headers, body = post(events_url(base), events, token)
    assert status == 202, body
    assert body["event_ids"] == [e["event_id"] for e in events] and body["stored"] == 100
    drain_pending.fn(settings)
    assert scalar(settings, "SELECT count(*) FROM compliance.events WHERE tenant_id <> 'ledger:platform'") == 100
    assert (
        scalar(settings, "SELECT redacted_fields FROM compliance.events WHERE event_id = %s", (events[0]["event_id"],))
        == '["password"]'
    )
    report = verify_chain(settings)
    assert report.ok, report


def test_ndjson_and_a_single_object_are_accepted(settings: Settings) -> None:
    token = add_source(settings, "edge", ALL)
    events = batch(3)
    ndjson = b"\n".join(json.dumps(e).encode() for e in events) + b"\n"
    with running_service(settings) as base:
        assert post(events_url(base), ndjson, token, "application/x-ndjson")[0] == 202
        status, _, body = post(events_url(base), sample_event(9, tenant="solo"), token)
    assert status == 202 and len(body["event_ids"]) == 1
    assert outbox_count(settings) == 4


def test_a_retried_batch_returns_the_same_ids_and_stores_nothing_twice(settings: Settings) -> None:
    token = add_source(settings, "edge", ALL)
    events = batch(20)
    with running_service(settings) as base:
        first = post(events_url(base), events, token)[2]
        again = post(events_url(base), events, token)[2]
        drain_pending.fn(settings)
        after_chaining = post(events_url(base), events, token)[2]
    assert first["event_ids"] == again["event_ids"] == after_chaining["event_ids"]
    assert (first["stored"], again["stored"], again["duplicates"], after_chaining["duplicates"]) == (20, 0, 20, 20)
    assert scalar(settings, "SELECT count(*) FROM compliance.events WHERE tenant_id <> 'ledger:platform'") == 20
    assert outbox_count(settings, "tenant_id <> 'ledger:platform'") == 20  # drained rows stay until purged


def test_one_bad_event_refuses_the_whole_batch_naming_index_and_field(settings: Settings) -> None:
    token = add_source(settings, "edge", ALL)
    events = batch(10)
    events[3]["event_type"] = "auth.signin.maybe"
    del events[7]["actor_type"]
    with running_service(settings) as base:
        status, headers, body = post(events_url(base), events, token)
        not_json = post(events_url(base), b'[{"tenant_id": ', token)
    assert status == 422 and headers["content-type"] == "application/problem+json"
    assert body["status"] == 422 and body["type"].endswith("events-refused")
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(3, "event_type"), (7, "actor_type")]
    assert "not a registered event type" in body["errors"][0]["reason"]
    assert not_json[0] == 422 and not_json[2]["errors"][0]["field"] == "body"
    assert outbox_count(settings) == 0


def test_missing_wrong_revoked_rotated_and_out_of_scope_tokens_are_refused(settings: Settings) -> None:
    scoped = add_source(settings, "acme-only", Scope(frozenset({"t0"}), frozenset({"auth.signin.success"})))
    old = add_source(settings, "rotating", ALL)
    doomed = add_source(settings, "doomed", ALL)
    with running_service(settings) as base:
        url = events_url(base)
        assert post(url, batch(1), doomed)[0] == 202
        revoke_source(settings, "doomed")
        revoked = post(url, batch(1), doomed)
        new = rotate_source(settings, "rotating")
        rotated_old, rotated_new = post(url, batch(1), old), post(url, batch(1), new)
        missing, wrong = post(url, batch(1), None), post(url, batch(1), "clg_" + "x" * 43)
        events = batch(3)  # tenants t0, t1, t2
        events[0]["event_type"] = "auth.signout"
        events[0]["payload"] = {"userId": "u"}
        forbidden = post(url, events, scoped)
        allowed = post(url, [e for e in batch(6) if e["tenant_id"] == "t0"], scoped)
    assert revoked[0] == 401 and "revoked" in revoked[2]["detail"]
    assert rotated_old[0] == 401 and rotated_new[0] == 202
    assert missing[0] == 401 and missing[1]["www-authenticate"].startswith("Bearer")
    assert wrong[0] == 401 and "unknown token" in wrong[2]["detail"]
    assert forbidden[0] == 403
    assert [(e["index"], e["field"]) for e in forbidden[2]["errors"]] == [
        (0, "event_type"),
        (1, "tenant_id"),
        (2, "tenant_id"),
    ]
    assert allowed[0] == 202
    assert outbox_count(settings) == 1 + 1 + 2  # doomed before revocation, rotated_new, allowed
    changes = scalar(
        settings,
        "SELECT array_agg(payload ORDER BY id) FROM compliance.outbox WHERE tenant_id = 'ledger:platform' "
        "AND event_type = 'admin.source_changed'",
    )
    assert [json.loads(c)["change"] for c in changes] == ["added"] * 3 + ["revoked", "rotated"]
    assert json.loads(changes[0])["tenants"] == ["t0"] and json.loads(changes[1])["tenants"] == "*"
    assert not any(t in c for c in changes for t in (scoped, old, new, doomed))


def test_over_the_limits_answers_413_and_stores_nothing(settings: Settings) -> None:
    token = add_source(settings, "edge", ALL)
    with running_service(settings) as base:
        too_many = post(events_url(base), batch(MAX_BATCH_EVENTS + 1), token)
        too_big = post(events_url(base), b"[" + b" " * (8 * 1024 * 1024) + b"]", token)
    assert too_many[0] == 413 and str(MAX_BATCH_EVENTS) in too_many[2]["detail"]
    assert too_big[0] == 413
    assert outbox_count(settings) == 0


def test_a_deep_outbox_answers_429_and_the_client_backs_off_then_delivers(settings: Settings) -> None:
    token = add_source(settings, "edge", ALL)
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(conn, batch(40, start=1000))
    config = IngestConfig(max_outbox_depth=30, depth_check_seconds=0.05, retry_after_429=1)
    waits: list[float] = []
    drained = threading.Event()

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if not drained.is_set():  # the operator's drain catches up while the client waits
            drain_pending.fn(settings)
            drained.set()
        threading.Event().wait(min(seconds, 0.2))

    with running_service(settings, config) as base:
        status, headers, _ = post(events_url(base), batch(1), token)
        assert status == 429 and headers["retry-after"] == "1"
        client = IngestClient(base, token, sleep=sleep, max_attempts=200)
        events = batch(250, start=2000)
        result = client.emit_batch(events)
    assert client.retries >= 1 and waits[0] >= 1.0  # Retry-After honoured
    assert result.event_ids == [e["event_id"] for e in events] and not result.spooled
    assert result.stored == 250
    assert (
        scalar(settings, "SELECT count(*) FROM compliance.outbox WHERE event_id = ANY(%s::uuid[])", (result.event_ids,))
        == 250
    )


def test_the_client_reads_its_endpoint_at_call_time_and_spools_what_it_cannot_send(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = add_source(settings, "edge", ALL)
    spool = tmp_path / "spool.ndjson"
    client = IngestClient(spool_path=str(spool), max_attempts=2, sleep=lambda s: None)
    monkeypatch.setenv("COMPLIANCE_INGEST_TOKEN", token)
    monkeypatch.setenv("COMPLIANCE_INGEST_URL", "http://127.0.0.1:9")  # nothing listens: refused
    away = client.emit_batch(batch(5))
    assert away.spooled and len(spool.read_text().splitlines()) == 5
    with running_service(settings) as base:
        monkeypatch.setenv("COMPLIANCE_INGEST_URL", base)  # set after the client was made
        back = client.emit_batch(batch(2, start=10))
        with pytest.raises(IngestRefused) as refused:
            client.emit(sample_event(0, event_type="no.such_type"))
    assert not back.spooled and back.stored == 2
    assert spool.read_text() == ""
    stored = away.event_ids + back.event_ids
    assert scalar(settings, "SELECT count(*) FROM compliance.outbox WHERE event_id = ANY(%s::uuid[])", (stored,)) == 7
    assert refused.value.status == 422 and refused.value.errors[0]["field"] == "event_type"


def test_health_openapi_and_access_logs_without_payloads_or_tokens(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    token = add_source(settings, "edge", ALL)
    caplog.set_level(logging.INFO, logger="compliance.ingest.access")
    event = sample_event(1, payload={"userId": "secret-user-77", "method": "sso"})
    with running_service(settings) as base:
        health_status, health = get(base + "/healthz")
        openapi = get(base + "/openapi.json")[1]
        assert post(events_url(base) + f"?token={token}", [event], token)[0] == 202
        assert post(events_url(base), [event], "clg_wrong")[0] == 401
    assert health_status == 200 and health["status"] == "ok" and health["database"] == "ok"
    assert set(openapi["paths"]["/v1/events"]["post"]["responses"]) >= {"202", "401", "403", "413", "422", "429", "503"}
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "compliance.ingest.access"]
    posts = [line for line in lines if line["path"] == "/v1/events"]
    assert [line["status"] for line in posts] == [202, 401] and posts[0]["source"] == "edge"
    assert posts[0]["events"] == 1
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert token not in text and "secret-user-77" not in text and "clg_wrong" not in text


def test_sources_cli_adds_lists_rotates_revokes_and_refuses_clearly(settings: Settings) -> None:
    env = {"COMPLIANCE_DATABASE_URL": settings.database_url or ""}
    added = run_cli(["sources", "add", "billing", "--tenant", "acme", "--event-type", "auth.signout"], env)
    assert added.returncode == 0 and added.stdout.strip().startswith("clg_")
    again = run_cli(["sources", "add", "billing", "--tenant", "acme"], env)
    assert again.returncode == 2 and "sources rotate billing" in again.stderr
    bad_type = run_cli(["sources", "add", "x", "--tenant", "acme", "--event-type", "no.such"], env)
    assert bad_type.returncode == 2 and "no.such" in bad_type.stderr
    bad_name = run_cli(["sources", "add", "bad name", "--all-tenants"], env)
    assert bad_name.returncode == 2 and "source name" in bad_name.stderr
    rotated = run_cli(["sources", "rotate", "billing"], env)
    assert rotated.returncode == 0 and rotated.stdout.strip() != added.stdout.strip()
    assert run_cli(["sources", "revoke", "billing"], env).returncode == 0
    gone = run_cli(["sources", "rotate", "billing"], env)
    assert gone.returncode == 2 and "revoked" in gone.stderr
    listed = json.loads(run_cli(["sources", "list", "--json"], env).stdout)
    assert [(s["name"], s["state"], s["tenants"], s["event_types"]) for s in listed] == [
        ("billing", "revoked", ["acme"], ["auth.signout"])
    ]
    assert added.stdout.strip() not in json.dumps(listed)


def _event_strategy() -> st.SearchStrategy[Any]:
    json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
    json_value = st.recursive(
        json_scalar,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    )
    base = st.builds(lambda i: sample_event(i, tenant=f"t{i % 3}"), st.integers(0, 10_000))
    fields = st.sampled_from(
        ["event_id", "tenant_id", "occurred_at", "actor_type", "actor_id", "source", "event_type", "payload", "x"]
    )
    mutated = st.tuples(base, st.lists(st.tuples(fields, json_value), max_size=2)).map(lambda t: {**t[0], **dict(t[1])})
    return st.one_of(mutated, json_value)


@pytest.mark.slow
def test_fuzzed_bodies_never_5xx_and_never_store_part_of_a_batch(settings: Settings) -> None:
    token = add_source(settings, "fuzz", ALL)
    bodies = st.one_of(
        st.binary(max_size=300),
        st.lists(_event_strategy(), min_size=1, max_size=6).map(lambda v: json.dumps(v).encode()),
        st.lists(_event_strategy(), min_size=1, max_size=4).map(
            lambda v: b"\n".join(json.dumps(e).encode() for e in v)
        ),
    )

    with running_service(settings) as base:
        url = events_url(base)

        @hsettings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(body=bodies, ndjson=st.booleans())
        def check(body: bytes, ndjson: bool) -> None:
            before = outbox_count(settings)
            status, _, answer = post(url, body, token, "application/x-ndjson" if ndjson else "application/json")
            after = outbox_count(settings)
            assert status < 500 or status == 503, answer
            if status == 202:
                assert after - before == answer["stored"] and answer["stored"] + answer["duplicates"] == len(
                    answer["event_ids"]
                )
            else:
                assert after == before and status in (401, 403, 413, 422, 503), (status, answer)

        check()


def test_make_run_starts_the_service_and_sends_part_of_the_demo_traffic_through_it(
    settings: Settings, tmp_path: Path
) -> None:
    from cli.devstack import free_port
    from deployments.demo import DemoEmitter, start_ingest

    env = {"COMPLIANCE_DATABASE_URL": settings.database_url or ""}
    service = start_ingest(settings, env, free_port(), tmp_path / "ingest.log")
    try:
        emitter = DemoEmitter(settings, 8, service)
        emitter.start()
        while emitter.emitted < 16:
            assert emitter.is_alive()
            threading.Event().wait(0.1)
        emitter.stop()
        emitter.join(10)
    finally:
        service.process.terminate()
        service.process.wait(10)
    logged = [json.loads(line) for line in (tmp_path / "ingest.log").read_text().splitlines() if line.startswith("{")]
    assert any(line["status"] == 202 and line["source"] == "demo" and line["events"] == 2 for line in logged)
    assert service.token not in (tmp_path / "ingest.log").read_text()
    assert outbox_count(settings) >= 16


def test_every_refusal_of_a_body_is_named_by_its_index_without_a_database() -> None:
    from compliance.events import Registry
    from compliance.ingest import BatchForbidden, BatchRefused, BodyRefused, TooLarge, parse_body, prepare_batch

    with pytest.raises(BodyRefused) as lines:
        parse_body(b'{"tenant_id": "a"}\n{not json}\n\n[1,\n', "application/x-ndjson; charset=utf-8")
    assert [(p.index, p.field) for p in lines.value.problems] == [(1, "body"), (2, "body")]
    with pytest.raises(TooLarge):
        parse_body(b"\n".join([b"{}"] * (MAX_BATCH_EVENTS + 1)), "application/x-ndjson")
    with pytest.raises(BodyRefused, match="duplicate key"):
        parse_body(b'{"tenant_id": "a", "tenant_id": "b"}', None)
    events = [sample_event(0), sample_event(1, actor_type="robot"), 7, sample_event(3, tenant="other")]
    with pytest.raises(BatchRefused) as refused:
        prepare_batch(events, Registry.default(), ALL)
    assert [(p.index, p.field) for p in refused.value.problems] == [(1, "actor_type"), (2, "event")]
    with pytest.raises(BatchForbidden) as forbidden:  # out of scope is answered first (403)
        prepare_batch(events, Registry.default(), Scope(frozenset({"acme"}), None))
    assert [(p.index, p.field) for p in forbidden.value.problems] == [(3, "tenant_id")]


def test_several_serving_processes_share_the_port_and_each_writes_the_access_log(
    settings: Settings, tmp_path: Path
) -> None:
    import os
    import subprocess
    import time
    import urllib.request

    from cli.devstack import free_port

    token = add_source(settings, "edge", ALL)
    port, log = free_port(), tmp_path / "access.log"
    env = {**os.environ, "COMPLIANCE_DATABASE_URL": settings.database_url or "", "COMPLIANCE_INGEST_WORKERS": "2"}
    command = [sys.executable, "-m", "ingest", "--port", str(port), "--access-log", str(log)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                time.sleep(0.1)
        answers = [post(events_url(base), batch(5, start=10 * i), token) for i in range(8)]
    finally:
        process.terminate()
        process.wait(30)
    assert [a[0] for a in answers] == [202] * 8 and outbox_count(settings) == 40
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(1 for line in lines if line["status"] == 202 and line["source"] == "edge") == 8
    assert token not in log.read_text()
