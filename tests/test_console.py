"""The Prefect console: deployment definitions, the events-query flow, the read rules, the blocks."""

from __future__ import annotations

import json

import pytest

from compliance.settings import Settings
from deployments.definitions import DRAINERS, specs
from tasks.anchoring import anchor_once
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.outbox import emit_batch
from tests.conftest import sample_event
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
    assert production["anchor"].concurrency == 1
    drain = production["drain-outbox"]  # one run per drainer each tick, as many at once as there are drainers
    assert drain.concurrency == drain.copies == DRAINERS >= 2
    assert [s.slug for s in drain.schedules() or []] == [f"drain-outbox-{i + 1}" for i in range(DRAINERS)]
    assert all(s.description for s in specs())


def test_the_operator_forms_are_plain_fields_with_descriptions_dropdowns_and_pickers() -> None:
    production = {s.name: s for s in specs()}
    for name, request_first, last in (
        ("export-runner", ["since", "until", "tenant_id", "format"], ["operator", "code", "job_id"]),
        ("events-query", ["tenant_id", "since", "until"], ["operator", "code"]),
    ):
        deployment = production[name].to_deployment()
        schema = deployment._parameter_openapi_schema.model_dump()
        props = schema["properties"]
        order = list(props)
        assert order[: len(request_first)] == request_first and order[-len(last) :] == last, order
        for key, prop in props.items():
            assert prop.get("description"), (name, key)
            assert "anyOf" not in prop and prop.get("type") != "null", (name, key)  # no Optional toggles
            assert "default" in prop, (name, key)  # every field can be left as it is
        for edge in ("since", "until"):  # text an empty form can submit: empty is the default window
            assert props[edge]["type"] == "string" and props[edge]["default"] == "", (name, edge)
            assert "format" not in props[edge] and "RFC 3339" in props[edge]["description"], (name, edge)
        items = props["event_types"]["items"]
        items = schema["definitions"][items["$ref"].split("/")[-1]] if "$ref" in items else items
        assert "auth.signin.success" in items["enum"]
        actors = props["actor_types"]["items"]
        actors = schema["definitions"][actors["$ref"].split("/")[-1]] if "$ref" in actors else actors
        assert set(actors["enum"]) == {"user", "service", "agent", "system", "operator"}
        assert "authenticator app" in props["code"]["description"]
        assert props["operator"]["title"] == "Operator e-mail" and props["code"]["title"] == "One-time code"
        assert deployment.description
    export_props = production["export-runner"].to_deployment()._parameter_openapi_schema.model_dump()["properties"]
    assert export_props["format"]["enum"] == ["csv", "ndjson", "parquet"] and export_props["format"]["default"] == "csv"


@pytest.fixture
def anchored_ledger(settings: Settings) -> Settings:
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(conn, [sample_event(i, tenant=f"t{i % 2}") for i in range(10)])
    drain_pending.fn(settings)
    anchor_once(settings, KEY)
    return settings


def test_events_query_lists_and_shows_within_the_operators_grants(
    anchored_ledger: Settings, env_for, prefect_harness
) -> None:
    from compliance.operators import OperatorRefused
    from flows.events_query import events_query
    from tasks.operators import enrol
    from tests.test_operators import Authenticator

    env_for(anchored_ledger)
    window = {"since": "2026-11-22T00:00:00Z", "until": "2026-11-23T00:00:00Z"}
    t0_ops = Authenticator(anchored_ledger, enrol(anchored_ledger, "t0@example.com", tenants=["t0"]))
    platform = Authenticator(anchored_ledger, enrol(anchored_ledger, "all@example.com", cross_tenant=True))
    listed = events_query(tenant_id="t0", operator=t0_ops.address, code=t0_ops.code(), **window)
    assert listed["events"] == 5
    assert events_query(operator=platform.address, code=platform.code(), **window)["events"] == 10
    with pytest.raises(OperatorRefused, match="TENANT_NOT_GRANTED"):
        events_query(operator=t0_ops.address, code=t0_ops.code(), **window)
    with pytest.raises(OperatorRefused, match="OPERATOR_NOT_AUTHENTICATED"):
        events_query(tenant_id="t0", operator=t0_ops.address, code=t0_ops.wrong_code(), **window)
    shown = events_query(tenant_id="t1", seq=2, operator=platform.address, code=platform.code())
    assert shown["found"] and shown["anchor"].startswith("ANCHORED ") and shown["seq"] == 2
    back = events_query(tenant_id="t1", seq=2, previous=True, operator=platform.address, code=platform.code())
    assert back["seq"] == 1


def test_events_query_artifacts_escape_every_value_and_show_payloads_only_on_request(
    settings: Settings, env_for, prefect_harness
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from flows.events_query import events_query
    from tasks.operators import enrol
    from tests.test_operators import Authenticator

    env_for(settings)
    hostile = "x|y`z](http://evil.example) <b>| forged | row |"  # no control character: docs/format.md §1 allows these
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(
            conn,
            [
                sample_event(
                    1, tenant="acme", actor_id=hostile, event_type="auth.signout", payload={"userId": "u-secret"}
                )
            ],
        )
    drain_pending.fn(settings)
    ops = Authenticator(settings, enrol(settings, "ops@example.com", tenants=["acme"]))
    window = {"since": "2026-11-22T00:00:00Z", "until": "2026-11-23T00:00:00Z"}

    def artifact(key: str, run_state: object) -> str:
        run_id = run_state.state_details.flow_run_id  # type: ignore[attr-defined]
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])
                )
            )
        assert len(found) == 1
        data = found[0].data
        return data if isinstance(data, str) else json.dumps(data)

    listed = artifact(
        "events-query",
        events_query(tenant_id="acme", operator=ops.address, code=ops.code(), return_state=True, **window),
    )
    assert json.loads(listed)[0]["actor_id"] == ("x\\|y\\`z\\](http://evil.example) \\<b\\>\\| forged \\| row \\|")
    plain = artifact(
        "event-detail", events_query(tenant_id="acme", seq=1, operator=ops.address, code=ops.code(), return_state=True)
    )
    assert "u-secret" not in plain
    detailed = artifact(
        "event-detail",
        events_query(
            tenant_id="acme", seq=1, show_payload=True, operator=ops.address, code=ops.code(), return_state=True
        ),
    )
    assert "u-secret" in detailed


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
