"""The Prefect UI as the operators' console, driven by a real browser (Debian's Chromium through Playwright) the
way an operator uses it: a live stack (a Prefect server, the six deployments served by a runner, runs with
artifacts), the deployments page, `export-runner` started from its form with an operator's e-mail and one-time
code, the run followed to Completed and its artifact read, and `events-query` the same way.

The screenshots go to docs/ui/ (the README shows them). Without /usr/bin/chromium these tests are skipped, except
where CI=true: CI installs Chromium (.ci/run), so there a missing browser fails the run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from compliance.settings import Settings
from tests.conftest import REPO, run_cli, sample_event

CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "docs" / "ui"
OPERATOR = "console-ops@example.com"


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no browser at {CHROMIUM}: `apt-get install -y chromium`"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is missing: `pip install -e '.[test]'`"
    return None


_MISSING = _browser_missing()
_IN_CI = os.environ.get("CI") == "true"
pytestmark = [pytest.mark.browser, pytest.mark.skipif(_MISSING is not None and not _IN_CI, reason=_MISSING or "")]


@pytest.fixture(scope="module", autouse=True)
def _browser_present() -> None:
    """In CI a missing browser fails each test (set up before the live stack), instead of skipping it."""
    if _MISSING:
        pytest.fail(f"CI=true and the browser tests cannot run: {_MISSING}")


# ---------------------------------------------------------------- the forms, as the UI labels their fields


@dataclass(frozen=True)
class Form:
    """A deployment's run form: the label of each field the test fills, and the values (``{operator}``,
    ``{code}``, ``{since}``, ``{until}`` and ``{tenant}`` are filled in at run time)."""

    deployment: str
    artifact: str  # the key of the artifact its run leaves
    texts: dict[str, str] = field(default_factory=dict)  # label -> value typed into a text input
    choices: dict[str, str] = field(default_factory=dict)  # label -> option picked from a dropdown
    opens: tuple[str, ...] = ()  # buttons pressed before filling, e.g. a union field's type toggle


# The one place that names the forms' fields. Labels are matched whole, ignoring case, `_` and "(Optional)".
# A field left out keeps the form's default (the date-time pickers' empty value means the last 7 days).
FORMS = {
    "export-runner": Form(
        deployment="export-runner/export-runner",
        artifact="export-result",
        texts={  # since and until stay empty: the last 7 days, as the form says
            "Tenant": "{tenant}",
            "Operator e-mail": "{operator}",
            "One-time code": "{code}",
        },
        choices={"Format": "csv"},
    ),
    "events-query": Form(
        deployment="events-query/events-query",
        artifact="events-query",
        texts={"Tenant": "{tenant}", "Operator e-mail": "{operator}", "One-time code": "{code}"},
    ),
}


# ---------------------------------------------------------------- a live stack


@pytest.fixture(scope="module")
def live(
    pg_cluster: Any, s3_endpoint: str, prefect_server: str, workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A ledger with events, the six deployments served by a runner process, a drain and an anchor run done,
    and an operator enrolled: what `make run` shows after its first minutes."""
    import uuid

    import psycopg

    from tasks.schema import apply_migrations
    from tasks.storage import provision_anchor_bucket, provision_export_bucket, s3_client
    from tests.conftest import TEMPLATE, TEST_SIGNING_KEY

    name = f"ui_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_cluster.admin_url("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    with psycopg.connect(pg_cluster.admin_url(name), autocommit=True) as conn:
        apply_migrations(conn)
    suffix = uuid.uuid4().hex[:10]
    settings = Settings(
        database_url=pg_cluster.admin_url(name),
        s3_endpoint_url=s3_endpoint,
        anchor_bucket=f"anchors-{suffix}",
        export_bucket=f"exports-{suffix}",
        retention_days=1,
    )
    s3 = s3_client(settings)
    provision_anchor_bucket(s3, settings.anchor_bucket, mode="GOVERNANCE", retention_days=1)
    provision_export_bucket(s3, settings.export_bucket)
    env = {
        **os.environ,
        "COMPLIANCE_DATABASE_URL": settings.database_url or "",
        "COMPLIANCE_S3_ENDPOINT_URL": s3_endpoint,
        "COMPLIANCE_ANCHOR_BUCKET": settings.anchor_bucket,
        "COMPLIANCE_EXPORT_BUCKET": settings.export_bucket,
        "COMPLIANCE_RETENTION_DAYS": "1",
        "COMPLIANCE_SIGNING_KEY": TEST_SIGNING_KEY,
        "PREFECT_API_URL": prefect_server,
        "AWS_ACCESS_KEY_ID": "compliance-dev",
        "AWS_SECRET_ACCESS_KEY": "compliance-dev",
        "COMPLIANCE_STAGE": "dev",
    }
    secret = enrol_operator(env)

    from tasks.db import connect
    from tasks.outbox import emit_batch

    with connect(settings, "compliance_writer") as conn, conn.transaction():
        now = datetime.now(UTC)  # inside the forms' default windows (the last days)
        events = [
            sample_event(i, tenant=f"tenant-{i % 3}", occurred_at=(now - timedelta(minutes=60 - i)).isoformat())
            for i in range(60)
        ]
        emit_batch(conn, events)
    log = workdir / f"runner-{suffix}.log"
    with open(log, "ab") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve", "--runner"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with prefect_api(prefect_server):
            wait_for_deployments()
            finish(start("drain-outbox/drain-outbox", run_seconds=3), log)
            finish(start("anchor/anchor"), log)
            finish(start("watchdog/watchdog"), log)
            finish(start("migration-drift/migration-drift"), log)
        yield {"ui": prefect_server.removesuffix("/api"), "api": prefect_server, "secret": secret, "log": log}
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)


def enrol_operator(env: dict[str, str]) -> str:
    """`compliance operators add EMAIL --cross-tenant`; the TOTP secret from the `otpauth://` URI it prints."""
    out = run_cli(["operators", "add", OPERATOR, "--cross-tenant"], env)
    assert out.returncode == 0, f"`compliance operators add` failed:\n{out.stdout}{out.stderr}"
    uri = re.search(r"otpauth://\S+", out.stdout + out.stderr)
    assert uri, f"`compliance operators add` printed no otpauth:// URI:\n{out.stdout}{out.stderr}"
    return urllib.parse.parse_qs(urllib.parse.urlparse(uri.group(0)).query)["secret"][0]


def one_time_code(secret: str) -> str:
    """A code for a step no earlier code of this run used (each code works once, docs/operator-runbook.md, Operators)."""
    import pyotp

    totp = pyotp.TOTP(secret)
    used = getattr(one_time_code, "last_step", None)
    step = int(time.time()) // 30
    while used is not None and step <= used:  # the previous code's step: wait for the next one
        time.sleep(1)
        step = int(time.time()) // 30
    one_time_code.last_step = step  # type: ignore[attr-defined]
    return str(totp.at(step * 30))


class prefect_api:
    """Point this process's Prefect client at ``url`` for a block of code."""

    def __init__(self, url: str) -> None:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        self.cm = temporary_settings({PREFECT_API_URL: url})

    def __enter__(self) -> None:
        self.cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.cm.__exit__(*exc)


def wait_for_deployments(seconds: float = 120) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        wanted = {form.deployment.split("/")[1] for form in FORMS.values()}
        while not wanted <= {d.name for d in client.read_deployments()}:
            assert time.monotonic() < deadline, "the runner did not register the deployments"
            time.sleep(1)


def start(deployment: str, **parameters: Any) -> Any:
    from prefect.deployments import run_deployment

    return run_deployment(deployment, parameters=parameters, timeout=0).id


def finish(run_id: Any, log: Path, seconds: float = 240) -> Any:
    """Wait until the run is final; returns it. A run that does not complete fails the test, with the runner's log."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                assert run.state.is_completed(), (
                    f"run {run.name} ended {run.state.name}: {run.state.message}\n{log.read_text()[-3000:]}"
                )
                return run
            assert time.monotonic() < deadline, f"run {run.name} is still {run.state_name}"
            time.sleep(1)


# ---------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def page(live: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
        )
        try:
            yield browser.new_page(viewport={"width": 1440, "height": 1000})
        finally:
            browser.close()


def shoot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"{name}.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000, f"{shot} is blank"


def field_for(page: Any, label: str) -> Any:
    """The input of the form field labelled ``label``. The UI titles a field by its name or its model's title
    (``tenant_id`` or ``Tenant Id``) and marks optional ones ``(Optional)``: both match."""
    words = r"[\s_]+".join(re.escape(word) for word in re.split(r"[\s_]+", label.strip()))
    pattern = rf"^\s*{words}(\s*\(Optional\))?\s*\*?\s*$"
    labelled = page.locator("label").filter(has_text=re.compile(pattern, re.IGNORECASE)).first
    field_div = "ancestor::div[contains(concat(' ', normalize-space(@class), ' '), ' p-label ')][1]"
    holder = labelled.locator(f"xpath={field_div}")
    return holder.locator(".p-label__body").first


def fill_form(page: Any, form: Form, values: dict[str, str]) -> None:
    for button in form.opens:
        page.get_by_role("button", name=button, exact=True).first.click()
    for label, template in form.texts.items():
        field_for(page, label).locator("textarea, input:not([type=checkbox])").first.fill(template.format(**values))
    for label, option in form.choices.items():
        body = field_for(page, label)
        if body.locator("select").count():
            body.locator("select").first.select_option(option)
        else:  # the UI's own dropdown: opened from the keyboard as a person tabbing through the form does
            body.locator("button").first.focus()
            page.keyboard.press("ArrowDown")
            page.get_by_role("option", name=re.compile(rf"^\s*{re.escape(option)}\s*$", re.IGNORECASE)).first.click()
        assert option in body.inner_text(), f"{label} shows {body.inner_text()!r}, not {option!r}"


def run_from_form(page: Any, live: dict[str, Any], form: Form, values: dict[str, str], shot: str) -> Any:
    """Open the deployment's custom-run form, fill it, submit it; returns the flow run it started, completed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    def runs_of(client: Any, deployment_id: Any) -> list[Any]:
        return list(
            client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                sort=FlowRunSort.START_TIME_DESC,
                limit=200,
            )
        )

    with prefect_api(live["api"]), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(form.deployment)
        before = {r.id for r in runs_of(client, deployment.id)}
    page.goto(f"{live['ui']}/deployments/deployment/{deployment.id}/run")
    page.wait_for_load_state("networkidle")
    fill_form(page, form, values)
    shoot(page, f"{shot}-form")
    page.get_by_role("button", name=re.compile(r"^\s*Submit\s*$")).click()
    deadline = time.monotonic() + 120  # a loaded CI host has taken over a minute
    with prefect_api(live["api"]), get_client(sync_client=True) as client:
        while not (started := [r for r in runs_of(client, deployment.id) if r.id not in before]):
            if time.monotonic() > deadline:
                # What the page said (a validation message, a toast) is what tells a refusal from a slow host.
                said = page.inner_text("body")[-1500:]
                raise AssertionError(f"submitting the form started no flow run; the page ({page.url}) says:\n{said}")
            time.sleep(0.5)
    with prefect_api(live["api"]):
        return finish(started[0].id, live["log"])


def open_run_artifact(page: Any, live: dict[str, Any], run: Any, form: Form, shot: str) -> str:
    """The run's page, then the page of the artifact it left; returns that page's text and its links' targets."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    page.goto(f"{live['ui']}/runs/flow-run/{run.id}")
    page.get_by_text("Completed").first.wait_for()
    shoot(page, f"{shot}-run")
    with prefect_api(live["api"]), get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[form.artifact]), flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])
            )
        )
    page.goto(f"{live['ui']}/artifacts/artifact/{artifact.id}")
    page.wait_for_load_state("networkidle")
    shoot(page, f"{shot}-artifact")
    links = [str(a.get_attribute("href")) for a in page.locator("a[href]").all()]
    return "\n".join([page.inner_text("body"), *links])


def form_values(live: dict[str, Any]) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "operator": OPERATOR,
        "code": one_time_code(live["secret"]),
        "tenant": "tenant-1",
        "since": (now - timedelta(days=1)).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "until": (now + timedelta(minutes=5)).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


# ---------------------------------------------------------------- the tests


def test_the_deployments_page_shows_the_six_deployments_ready(page: Any, live: dict[str, Any]) -> None:
    see_deployments_and_runs(page, live["ui"])


def see_deployments_and_runs(page: Any, ui: str) -> None:
    page.goto(f"{ui}/deployments")
    page.get_by_text("export-runner").first.wait_for()
    page.wait_for_load_state("networkidle")  # the activity column fills in after the list
    body = page.inner_text("body")
    for name in ("drain-outbox", "anchor", "watchdog", "migration-drift", "export-runner", "events-query"):
        assert name in body, f"deployment {name} is not on the deployments page"
    assert "Not Ready" not in body, "a deployment is shown Not Ready while its runner serves it"
    shoot(page, "deployments")
    page.goto(f"{ui}/runs")
    page.get_by_text("Completed").first.wait_for()
    page.wait_for_load_state("networkidle")
    shoot(page, "runs")


def test_an_operator_runs_an_export_from_its_form_and_reads_its_result(page: Any, live: dict[str, Any]) -> None:
    form = FORMS["export-runner"]
    run = run_from_form(page, live, form, form_values(live), "export-runner")
    text = open_run_artifact(page, live, run, form, "export-runner")
    for shown in ("job", "rows", "csv", "sha256"):
        assert shown in text.lower(), f"the export's artifact does not show its {shown}"
    assert re.search(r"\b[0-9a-f]{64}\b", text), "the export's artifact shows no SHA-256 of the file"
    assert "X-Amz" not in text and "Signature=" not in text, "a download link is readable by every console user"


def test_an_operator_lists_events_from_the_events_query_form(page: Any, live: dict[str, Any]) -> None:
    form = FORMS["events-query"]
    run = run_from_form(page, live, form, form_values(live), "events-query")
    text = open_run_artifact(page, live, run, form, "events-query")
    assert "tenant-1" in text, "the events artifact lists none of the tenant's events"
