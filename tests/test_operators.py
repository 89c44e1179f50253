"""Operators who prove who they are (docs/operator-runbook.md, Operators): enrolment, one-time codes, grants, lock-out, the operator role's
functions, links minted on request, and the read side (`events list` / `events show --prev`)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pyotp
import pytest

from compliance.operators import OperatorRefused, secret_base32
from compliance.settings import Settings
from tasks.anchoring import anchor_once
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.exports import fresh_url, public_status, queue_export, request_export, run_job
from tasks.operators import Enrolment, enrol, grant, list_operators, remove, revoke
from tasks.outbox import emit_batch
from tasks.reads import list_events, show_event
from tests.conftest import run_cli, sample_event
from tests.test_anchor import KEY

WINDOW = {"since": "2026-11-22T00:00:00Z", "until": "2026-11-23T00:00:00Z"}


class Authenticator:
    """The operator's authenticator app, computing codes with pyotp from the secret enrolment returned."""

    def __init__(self, settings: Settings, enrolment: Enrolment) -> None:
        self.settings = settings
        self.address = enrolment.address
        self.totp = pyotp.TOTP(secret_base32(enrolment.secret))

    def code(self) -> str:
        """A code the database has not accepted yet. Forgetting the last accepted step stands in for waiting for
        the next 30-second step, which a test should not do."""
        with connect(self.settings, None, autocommit=True) as conn:
            conn.execute("UPDATE compliance.operator_secrets SET last_step = NULL WHERE address = %s", (self.address,))
        return self.totp.now()

    def wrong_code(self) -> str:
        now = datetime.now(UTC)
        valid = {self.totp.at(now + timedelta(seconds=30 * k)) for k in (-2, -1, 0, 1, 2)}
        return next(c for c in ("000000", "111111", "222222", "333333", "444444", "555555") if c not in valid)


def written(settings: Settings) -> dict[str, int]:
    """Everything an operator action may write, counted."""
    with connect(settings, None, autocommit=True) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM compliance.{table}").fetchone()[0]  # type: ignore[index]
            for table in ("export_jobs", "outbox", "operator_failures")
        }


@pytest.fixture
def ledger(settings: Settings) -> Settings:
    """Events of tenants acme and globex (22 Nov 2026), chained and anchored."""
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(conn, [sample_event(i, tenant=("acme", "globex")[i % 2]) for i in range(10)])
    drain_pending.fn(settings)
    anchor_once(settings, KEY)
    return settings


@pytest.fixture
def acme_ops(ledger: Settings) -> Authenticator:
    return Authenticator(ledger, enrol(ledger, " Acme-Ops@Example.com ", tenants=["acme"], by="test"))


@pytest.fixture
def platform_ops(ledger: Settings) -> Authenticator:
    return Authenticator(ledger, enrol(ledger, "platform@example.com", cross_tenant=True, by="test"))


def refusal(call: Any) -> OperatorRefused:
    with pytest.raises(OperatorRefused) as info:
        call()
    return info.value


# ---------------------------------------------------------------- enrolment


def test_enrolment_prints_an_otpauth_uri_and_a_qr_code_and_is_a_ledger_event(settings: Settings, env_for) -> None:
    out = run_cli(["operators", "add", "  New.Ops@Example.COM", "--tenant", "acme"], env_for(settings))
    assert out.returncode == 0, out.stderr
    uri = next(line for line in out.stdout.splitlines() if line.startswith("otpauth://"))
    parsed = pyotp.parse_uri(uri)
    assert parsed.digits == 6 and parsed.interval == 30 and parsed.name == "new.ops@example.com"
    assert "█" in out.stdout or "▀" in out.stdout  # the terminal QR code
    with connect(settings, None, autocommit=True) as conn:
        row = conn.execute(
            "SELECT tenant_id, event_type, payload FROM compliance.outbox WHERE event_type = 'admin.operator_changed'"
        ).fetchone()
    assert row[0] == "ledger:platform" and row[1] == "admin.operator_changed"
    assert json.loads(row[2])["operator"] == "new.ops@example.com" and json.loads(row[2])["change"] == "enrolled"
    again = run_cli(["operators", "add", "new.ops@example.com"], env_for(settings))
    assert again.returncode == 2 and "already enrolled" in again.stderr


def test_grant_revoke_remove_and_list(settings: Settings) -> None:
    enrol(settings, "a@example.com", tenants=["acme"])
    grant(settings, "A@example.com", tenants=["globex"])
    assert [(r.address, r.tenants, r.cross_tenant) for r in list_operators(settings)] == [
        ("a@example.com", ["acme", "globex"], False)
    ]
    revoke(settings, "a@example.com", tenants=["acme"])
    grant(settings, "a@example.com", cross_tenant=True)
    assert [(r.tenants, r.cross_tenant) for r in list_operators(settings)] == [(["globex"], True)]
    remove(settings, "a@example.com")
    assert list_operators(settings) == []
    with connect(settings, None, autocommit=True) as conn:
        changes = [
            json.loads(p)["change"]
            for (p,) in conn.execute(
                "SELECT payload FROM compliance.outbox WHERE event_type = 'admin.operator_changed' ORDER BY id"
            )
        ]
    assert changes == ["enrolled", "granted", "revoked", "granted", "removed"]


def test_no_role_but_the_owner_reads_the_secrets(settings: Settings) -> None:
    enrol(settings, "a@example.com", tenants=["acme"])
    for role in ("compliance_reader", "compliance_operator", "compliance_exporter", "compliance_watchdog"):
        with connect(settings, role, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT secret FROM compliance.operator_secrets").fetchall()


# ---------------------------------------------------------------- codes


def test_a_wrong_missing_or_reused_code_is_refused_and_writes_nothing_but_the_failure(
    ledger: Settings, acme_ops: Authenticator
) -> None:
    flt = {**WINDOW, "tenant_id": "acme"}
    before = written(ledger)
    for code in (acme_ops.wrong_code(), "", None):
        refused = refusal(
            lambda c=code: request_export(ledger, operator=acme_ops.address, code=c, fmt="csv", filter_text=flt)
        )
        assert refused.code == "OPERATOR_NOT_AUTHENTICATED"
    assert written(ledger) == {**before, "operator_failures": 3}

    code = acme_ops.code()
    request_export(ledger, operator=acme_ops.address, code=code, fmt="csv", filter_text=flt)
    after_ok = written(ledger)
    assert after_ok["export_jobs"] == before["export_jobs"] + 1
    reused = refusal(lambda: list_events(ledger, operator=acme_ops.address, code=code, tenant="acme", **WINDOW))
    assert reused.code == "OPERATOR_NOT_AUTHENTICATED" and "already used" in reused.message
    assert written(ledger) == {**after_ok, "operator_failures": 4}


def test_an_unknown_address_is_not_allowed_and_nothing_is_written(ledger: Settings, env_for) -> None:
    before = written(ledger)
    out = run_cli(
        ["events", "list", "--operator", "mallory@example.com", "--code", "123456", "--tenant", "acme"],
        env_for(ledger),
    )
    assert out.returncode == 2 and "OPERATOR_NOT_ALLOWED" in out.stderr
    assert written(ledger) == before


def test_five_wrong_codes_lock_the_operator_out(ledger: Settings, acme_ops: Authenticator) -> None:
    for _ in range(5):
        refusal(lambda: list_events(ledger, operator=acme_ops.address, code=acme_ops.wrong_code(), tenant="acme"))
    locked = refusal(lambda: list_events(ledger, operator=acme_ops.address, code=acme_ops.code(), tenant="acme"))
    assert locked.code == "OPERATOR_NOT_AUTHENTICATED" and "locked out until" in locked.message
    assert list_operators(ledger)[0].locked_until is not None
    rotated = Authenticator(ledger, enrol(ledger, acme_ops.address, rotate=True))  # the runbook's way back in
    assert (
        len(list_events(ledger, operator=rotated.address, code=rotated.code(), tenant="acme", **WINDOW)["events"]) == 5
    )


# ---------------------------------------------------------------- grants


def test_an_operator_granted_acme_reads_acme_and_is_refused_globex(
    ledger: Settings, acme_ops: Authenticator, env_for
) -> None:
    listed = list_events(ledger, operator=acme_ops.address, code=acme_ops.code(), tenant="acme", **WINDOW)
    assert {e["tenant_id"] for e in listed["events"]} == {"acme"} and len(listed["events"]) == 5
    before = written(ledger)
    other = refusal(lambda: list_events(ledger, operator=acme_ops.address, code=acme_ops.code(), tenant="globex"))
    assert other.code == "TENANT_NOT_GRANTED" and "globex" in other.message
    everyone = refusal(lambda: list_events(ledger, operator=acme_ops.address, code=acme_ops.code(), tenant=None))
    assert everyone.code == "TENANT_NOT_GRANTED"
    with connect(ledger, None, autocommit=True) as conn:
        globex_id = conn.execute("SELECT event_id::text FROM compliance.events WHERE tenant_id = 'globex'").fetchone()[
            0
        ]
    shown = refusal(lambda: show_event(ledger, operator=acme_ops.address, code=acme_ops.code(), event_id=globex_id))
    assert shown.code == "TENANT_NOT_GRANTED"
    assert written(ledger) == before
    cli = run_cli(
        ["events", "list", "--operator", "ACME-ops@example.com ", "--code", acme_ops.code(), "--tenant", "globex"],
        env_for(ledger),
    )
    assert cli.returncode == 2 and "TENANT_NOT_GRANTED" in cli.stderr


def test_a_cross_tenant_export_needs_a_cross_tenant_grant(
    ledger: Settings, acme_ops: Authenticator, platform_ops: Authenticator
) -> None:
    before = written(ledger)
    refused = refusal(
        lambda: request_export(ledger, operator=acme_ops.address, code=acme_ops.code(), fmt="csv", filter_text=WINDOW)
    )
    assert refused.code == "TENANT_NOT_GRANTED" and "cross-tenant" in refused.message
    assert written(ledger) == before
    job = request_export(ledger, operator=platform_ops.address, code=platform_ops.code(), fmt="csv", filter_text=WINDOW)
    assert run_job(ledger, job).rows == 10


def test_a_cross_tenant_list_is_a_ledger_event(ledger: Settings, platform_ops: Authenticator) -> None:
    listed = list_events(ledger, operator=platform_ops.address, code=platform_ops.code(), tenant=None, **WINDOW)
    assert len(listed["events"]) == 10
    with connect(ledger, None, autocommit=True) as conn:
        row = conn.execute(
            "SELECT tenant_id, actor_id, payload FROM compliance.outbox WHERE event_type = 'data.cross_tenant_read'"
        ).fetchone()
    assert row[0] == "ledger:platform" and row[1] == "platform@example.com"
    assert json.loads(row[2])["filter"]["since"] == "2026-11-22T00:00:00.000000Z"


def test_the_operator_role_reaches_events_only_through_the_functions(ledger: Settings, acme_ops: Authenticator) -> None:
    with connect(ledger, "compliance_operator", autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM compliance.events").fetchall()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM compliance.export_jobs").fetchall()
        answer = conn.execute(
            "SELECT compliance.operator_events(%s, %s, 'acme', %s, %s, NULL, NULL, 100)",
            (acme_ops.address, acme_ops.wrong_code(), WINDOW["since"], WINDOW["until"]),
        ).fetchone()[0]
        assert answer["refused"] == "OPERATOR_NOT_AUTHENTICATED" and "events" not in answer
        answer = conn.execute(
            "SELECT compliance.operator_events(%s, %s, 'acme', %s, %s, NULL, NULL, 100)",
            (acme_ops.address, acme_ops.code(), WINDOW["since"], WINDOW["until"]),
        ).fetchone()[0]
        assert len(answer["events"]) == 5


# ---------------------------------------------------------------- rate limit and links


def test_whitespace_and_case_variants_of_one_address_share_one_rate_limit(settings: Settings) -> None:
    t0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    variants = [" ops@x.example", "ops@x.example\t", "OPS@X.example", "Ops@x.Example ", "ops@x.example"]
    for i in range(10):
        queue_export(settings, operator=variants[i % 5], fmt="csv", filter_text=WINDOW, now=t0 + timedelta(minutes=i))
    with pytest.raises(Exception) as info:
        queue_export(
            settings, operator="\u00a0OPS@x.EXAMPLE", fmt="csv", filter_text=WINDOW, now=t0 + timedelta(minutes=20)
        )
    assert getattr(info.value, "code", None) == "RATE_LIMIT_EXCEEDED"
    with connect(settings, None, autocommit=True) as conn:
        assert conn.execute("SELECT array_agg(DISTINCT operator) FROM compliance.export_jobs").fetchone()[0] == [
            "ops@x.example"
        ]


def test_a_link_is_minted_on_request_audited_and_stored_nowhere(
    ledger: Settings, acme_ops: Authenticator, platform_ops: Authenticator, env_for
) -> None:
    job = request_export(
        ledger, operator=acme_ops.address, code=acme_ops.code(), fmt="csv", filter_text={**WINDOW, "tenant_id": "acme"}
    )
    run_job(ledger, job)
    url, _ = fresh_url(ledger, job, acme_ops.address, acme_ops.code())
    assert "X-Amz-Expires=900" in url
    with connect(ledger, None, autocommit=True) as conn:
        audited = conn.execute(
            "SELECT tenant_id, payload FROM compliance.outbox WHERE event_type = 'data.export_url_issued'"
        ).fetchall()
        columns = [
            r[0]
            for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'export_jobs'")
        ]
        stored = conn.execute(
            "SELECT count(*) FROM compliance.export_jobs j WHERE row_to_json(j)::text LIKE '%%X-Amz-%%'"
        ).fetchone()[0]
    assert audited == [
        ("ledger:platform", json.dumps({"exportJobId": job, "operator": acme_ops.address}, separators=(",", ":")))
    ]
    assert "download_url" not in columns and stored == 0
    status = run_cli(["export", "status", job], env_for(ledger))
    assert status.returncode == 0
    assert [line.split(":")[0].strip() for line in status.stdout.splitlines()] == [
        "job_id",
        "state",
        "format",
        "rows",
        "age",
    ]
    assert "http" not in status.stdout
    refused = refusal(lambda: fresh_url(ledger, job, acme_ops.address, acme_ops.wrong_code()))
    assert refused.code == "OPERATOR_NOT_AUTHENTICATED"
    other = run_cli(["export", "url", job, "--operator", "nobody@example.com", "--code", "123456"], env_for(ledger))
    assert other.returncode == 2 and "OPERATOR_NOT_ALLOWED" in other.stderr and "http" not in other.stdout


# ---------------------------------------------------------------- the read side


def test_events_list_defaults_to_the_last_7_days_and_says_so(settings: Settings, env_for) -> None:
    now = datetime.now(UTC)
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(
            conn,
            [
                sample_event(1, tenant="acme", occurred_at=now - timedelta(days=1)),
                sample_event(2, tenant="acme", occurred_at=now - timedelta(days=6, hours=23)),
                sample_event(3, tenant="acme", occurred_at=now - timedelta(days=8)),
            ],
        )
    drain_pending.fn(settings)
    ops = Authenticator(settings, enrol(settings, "ops@example.com", tenants=["acme"]))
    out = run_cli(
        ["events", "list", "--operator", ops.address, "--code", ops.code(), "--tenant", "acme"], env_for(settings)
    )
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 2
    assert "2 event(s)" in out.stderr and "the last 7 days" in out.stderr
    wider = list_events(
        settings, operator=ops.address, code=ops.code(), tenant="acme", since=(now - timedelta(days=30)).isoformat()
    )
    assert len(wider["events"]) == 3


def test_events_show_by_tenant_and_seq_and_prev_walks_the_chain_back(
    ledger: Settings, acme_ops: Authenticator, env_for
) -> None:
    env = env_for(ledger)
    third = run_cli(
        [
            "events",
            "show",
            "--tenant",
            "acme",
            "--seq",
            "3",
            "--operator",
            acme_ops.address,
            "--code",
            acme_ops.code(),
            "--json",
        ],
        env,
    )
    assert third.returncode == 0, third.stderr
    shown = json.loads(third.stdout)
    assert shown["seq"] == 3 and shown["anchor"].startswith("ANCHORED ") and "payload" not in shown
    assert len(shown["event_path"]) >= 1
    back = run_cli(
        [
            "events",
            "show",
            shown["event_id"],
            "--prev",
            "--operator",
            acme_ops.address,
            "--code",
            acme_ops.code(),
            "--json",
        ],
        env,
    )
    before = json.loads(back.stdout)
    assert before["seq"] == 2 and before["event_hash"] == shown["prev_hash"]
    first = show_event(ledger, operator=acme_ops.address, code=acme_ops.code(), tenant="acme", seq=1, prev=True)
    assert not first["found"] and "first event" in first["reason"]
    with_payload = show_event(
        ledger, operator=acme_ops.address, code=acme_ops.code(), tenant="acme", seq=2, payload=True
    )
    assert with_payload["payload"]["method"] == "password"
    with connect(ledger, None, autocommit=True) as conn:
        viewed = conn.execute(
            "SELECT payload FROM compliance.outbox WHERE event_type = 'data.payload_viewed'"
        ).fetchall()
    assert [json.loads(p)["eventId"] for (p,) in viewed] == [before["event_id"]]


def test_shown_values_cannot_forge_rows_or_rewrite_a_terminal() -> None:
    from compliance.display import safe_cell, safe_text

    assert safe_text("user[1]|x\x1b[2J\u2066") == "user[1]|x\\u001b[2J\\u2066"
    assert safe_cell("ok@example.com") == "ok@example.com"
    assert safe_cell("a\x1b[2J\u202eb|c\nd") == "a\\u001b\\[2J\\u202eb\\|c\\u000ad"
    assert safe_cell({"k": "`x`"}) == '{"k":"\\`x\\`"}'


def test_after_a_ui_style_export_run_no_artifact_result_or_log_holds_a_link(
    ledger: Settings, platform_ops: Authenticator, env_for, prefect_server: str, monkeypatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.export import export_runner

    env_for(ledger)
    for name in ("prefect.flow_runs", "prefect.task_runs"):  # the run's own INFO lines go to the API too
        monkeypatch.setattr(logging.getLogger(name), "level", logging.INFO)
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        state = export_runner(
            since="2026-11-22T00:00:00Z",
            until="2026-11-23T00:00:00Z",
            format="ndjson",
            operator=" PLATFORM@example.com",
            code=platform_ops.code(),
            return_state=True,
        )
        result = state.result()
        job = result["job_id"]
        url, _ = fresh_url(ledger, job, platform_ops.address, platform_ops.code())  # a link exists, made elsewhere
        run_id = state.state_details.flow_run_id
        APILogHandler().flush()
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    assert result == {"job_id": job, "status": "complete", "rows": 10, "format": "ndjson"}
    assert {a.key for a in artifacts} >= {"export-result", "export-progress"}
    table = next(a for a in artifacts if a.key == "export-result")
    assert json.loads(table.data)[0]["rows"] == 10 and len(json.loads(table.data)[0]["sha256"]) == 64
    seen = json.dumps(
        [
            run.model_dump(mode="json"),
            [a.model_dump(mode="json") for a in artifacts],
            [lg.message for lg in logs],
            result,
        ]
    )
    assert any(job in lg.message for lg in logs) and "X-Amz-" in url
    for tell in ("X-Amz-", "Signature", url.split("?")[0]):
        assert tell not in seen, tell


def test_make_runs_demo_operator_gets_a_fresh_secret_on_each_start(settings: Settings) -> None:
    import subprocess

    from deployments.demo import DEMO_OPERATOR, code_command, enrol_demo_operator

    address, first = enrol_demo_operator(settings)
    again, second = enrol_demo_operator(settings)
    assert address == again == DEMO_OPERATOR and first != second
    assert [(r.address, r.cross_tenant) for r in list_operators(settings)] == [(DEMO_OPERATOR, True)]
    command = code_command(second).replace(".venv/bin/python", sys.executable)
    code = subprocess.run(command, shell=True, capture_output=True, text=True, check=True).stdout.strip()
    listed = list_events(settings, operator=address, code=code, tenant=None)
    assert listed["events"] == []


def test_a_prefect_user_who_started_the_run_is_recorded_beside_the_operator(
    settings: Settings, platform_ops_bare: Authenticator
) -> None:
    job = request_export(
        settings,
        operator=platform_ops_bare.address,
        code=platform_ops_bare.code(),
        fmt="csv",
        filter_text=WINDOW,
        prefect_user="alice@corp.example",
    )
    with connect(settings, None, autocommit=True) as conn:
        (payload,) = conn.execute(
            "SELECT payload FROM compliance.outbox WHERE event_type = 'data.export_initiated'"
        ).fetchone()
    assert json.loads(payload)["prefectUser"] == "alice@corp.example"
    assert json.loads(payload)["requestedBy"] == "platform@example.com" and json.loads(payload)["exportJobId"] == job


@pytest.fixture
def platform_ops_bare(settings: Settings) -> Authenticator:
    return Authenticator(settings, enrol(settings, "platform@example.com", cross_tenant=True, by="test"))


def test_export_list_shows_operator_state_format_rows_and_age_newest_first(settings: Settings, env_for) -> None:
    first = queue_export(settings, operator="ops@example.com", fmt="csv", filter_text=WINDOW)
    second = queue_export(settings, operator="Audit@Example.com", fmt="ndjson", filter_text=WINDOW)
    out = run_cli(["export", "list", "--json"], env_for(settings))
    assert out.returncode == 0, out.stderr
    jobs = json.loads(out.stdout)
    assert [j["job_id"] for j in jobs] == [second, first]
    assert set(jobs[0]) == {"job_id", "operator", "status", "format", "rows", "age_seconds"}
    assert jobs[0]["status"] == "queued" and jobs[0]["format"] == "ndjson"
    assert [j["operator"] for j in jobs] == ["audit@example.com", "ops@example.com"]  # the normalised address
    table = run_cli(["export", "list"], env_for(settings))
    assert table.returncode == 0, table.stderr
    assert [line.split("\t")[:4] for line in table.stdout.splitlines()] == [
        [second, "audit@example.com", "ndjson", "queued"],
        [first, "ops@example.com", "csv", "queued"],
    ]
    # `export status` of one job, which any holder of its id may ask, names no operator.
    assert "operator" not in public_status(settings, first)


def test_one_code_sent_twice_at_once_is_accepted_once(settings: Settings) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tasks.operators import authenticate

    ops = Authenticator(settings, enrol(settings, "ops@example.com", tenants=["acme"]))
    code = ops.code()

    def attempt(_: int) -> str:
        try:
            return authenticate(settings, ops.address, code, tenants=["acme"], cross_tenant=False)
        except OperatorRefused as exc:
            return exc.code

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(attempt, range(4)))
    assert outcomes == ["OPERATOR_NOT_AUTHENTICATED"] * 3 + ["ops@example.com"]


def test_a_link_for_an_unknown_or_unfinished_job_is_refused_after_the_code_check(
    ledger: Settings, acme_ops: Authenticator
) -> None:
    job = queue_export(ledger, operator=acme_ops.address, fmt="csv", filter_text={**WINDOW, "tenant_id": "acme"})
    before = written(ledger)
    with pytest.raises(ValueError, match="is queued"):
        fresh_url(ledger, job, acme_ops.address, acme_ops.code())
    with pytest.raises(ValueError, match="is unknown"):
        fresh_url(ledger, "0190a4c0-0000-7000-8000-000000000009", acme_ops.address, acme_ops.code())
    with pytest.raises(ValueError, match="not a job id"):
        fresh_url(ledger, "nope", acme_ops.address, acme_ops.code())
    assert written(ledger) == before  # no link was issued, so none was recorded
