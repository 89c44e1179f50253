"""The Prefect console: deployment definitions, the events-query flow, the read rules, the blocks."""

from __future__ import annotations

import pytest

from compliance.settings import Settings
from deployments.definitions import specs
from tasks.anchoring import anchor_once
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.outbox import emit_batch
from tests.conftest import run_cli, sample_event
from tests.test_anchor import KEY


def test_six_deployments_with_their_schedules_and_limits() -> None:
    production = {s.name: s for s in specs()}
    assert list(production) == [
        "drain-outbox",
        "anchor",
        "watchdog",
        "migration-drift",
        "export-runner",
        "events-query",
    ]
    assert production["drain-outbox"].interval == 300 and production["drain-outbox"].parameters == {"run_seconds": 290}
    assert 3600 / production["drain-outbox"].interval <= 12  # at most 12 drain runs an hour in the UI
    assert production["anchor"].interval == 900 and production["watchdog"].interval == 300
    assert production["migration-drift"].cron == "0 3 * * *"
    assert production["export-runner"].interval is None and production["events-query"].cron is None
    assert production["anchor"].concurrency == 1 and production["drain-outbox"].concurrency == 1
    assert all(s.description for s in specs())
    deployment = production["export-runner"].to_deployment()
    props = deployment._parameter_openapi_schema.model_dump()["definitions"]["ExportRequest"]["properties"]
    assert all(props[k].get("description") for k in ("operator", "format", "since", "until", "tenant_id"))


@pytest.fixture
def anchored_ledger(settings: Settings) -> Settings:
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(conn, [sample_event(i, tenant=f"t{i % 2}") for i in range(10)])
    drain_pending.fn(settings)
    anchor_once(settings, KEY)
    return settings


def test_events_query_lists_and_shows_with_the_reader_rules(
    anchored_ledger: Settings, env_for, prefect_harness
) -> None:
    from flows.events_query import EventsQuery, NotAllowed, events_query

    env_for(anchored_ledger)
    assert events_query(EventsQuery(tenant_id="t0")) == {"events": 5}
    assert events_query(EventsQuery(operator="ops@example.com")) == {"events": 10}
    with pytest.raises(NotAllowed):
        events_query(EventsQuery(operator="mallory@example.com"))
    with connect(anchored_ledger, None, autocommit=True) as conn:
        event_id = conn.execute(
            "SELECT event_id::text FROM compliance.events WHERE tenant_id = 't1' AND seq = 2"
        ).fetchone()[0]
    shown = events_query(EventsQuery(tenant_id="t1", event_id=event_id))
    assert shown["found"] and shown["anchor"].startswith("ANCHORED ")
    assert events_query(EventsQuery(tenant_id="t0", event_id=event_id)) == {"found": False}  # another tenant's


def test_cli_cross_tenant_reads_need_an_operator(anchored_ledger: Settings, env_for) -> None:
    env = env_for(anchored_ledger)
    refused = run_cli(["events", "list"], env)
    assert refused.returncode == 2
    not_op = run_cli(["events", "list", "--operator", "mallory@example.com"], env)
    assert not_op.returncode == 2 and "OPERATOR_NOT_ALLOWED" in not_op.stderr
    ok = run_cli(["events", "list", "--operator", "ops@example.com", "--json"], env)
    assert ok.returncode == 0 and ok.stdout.count('"event_id"') == 10
    own = run_cli(["events", "list", "--tenant", "t1", "--json"], env)
    assert own.stdout.count('"tenant_id": "t1"') == 5 and '"t0"' not in own.stdout


def test_blocks_render_as_self_explaining_forms() -> None:
    from blocks.ledger import AnchorStoreBlock, DatabaseBlock, LedgerSettingsBlock

    for block in (DatabaseBlock, AnchorStoreBlock, LedgerSettingsBlock):
        schema = block.model_json_schema()
        assert all(p.get("description") for p in schema["properties"].values()), block
    assert DatabaseBlock.model_json_schema()["properties"]["owner_url"]["format"] == "password"


def test_prefect_yaml_is_generated_from_the_same_definitions() -> None:
    from deployments.deploy import REPO, prefect_yaml

    committed = (REPO / "prefect.yaml").read_text()
    assert committed == prefect_yaml(), "prefect.yaml is stale: python -m deployments.deploy --write-prefect-yaml"
    assert committed.count("entrypoint:") == 6 and "interval: 300" in committed
