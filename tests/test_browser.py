"""The Prefect UI as the operators' console, seen by a real browser (Debian's headless Chromium).

Skipped where /usr/bin/chromium is not installed (`apt-get install chromium`). Saves docs/ui-deployments.png.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest

from compliance.settings import Settings
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.outbox import emit_batch
from tests.conftest import REPO, sample_event

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed")]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


def browse(url: str, *extra: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--virtual-time-budget=20000",
                "--window-size=1440,1000",
                *extra,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    return out.stdout


def test_ui_lists_the_six_deployments_and_the_anchor_artifact(settings: Settings, env_for, prefect_server: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.definitions import specs
    from flows.anchor import anchor

    env_for(settings)
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(conn, [sample_event(i, tenant=f"t{i % 3}") for i in range(30)])
    drain_pending.fn(settings)
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        for spec in specs():
            spec.to_deployment().apply()
        state = anchor(return_state=True)  # the first anchor of this ledger, as a flow run on the server
        cadence = state.result()["anchors"][0]["cadence_id"]
        with get_client(sync_client=True) as client:  # the server is shared: this run's artifact
            [artifact] = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["anchor"]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
                )
            )
    ui = prefect_server.removesuffix("/api")

    dom = browse(f"{ui}/deployments", "--dump-dom")
    for name in ("drain-outbox", "anchor", "watchdog", "migration-drift", "export-runner", "events-query"):
        assert name in dom, f"deployment {name} is not on the deployments page"
    shot = REPO / "docs" / "ui-deployments.png"
    browse(f"{ui}/deployments", f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 10_000

    artifact_dom = browse(f"{ui}/artifacts/artifact/{artifact.id}", "--dump-dom")
    assert cadence in artifact_dom, "the anchor artifact does not show its cadence id"
    browse(f"{ui}/artifacts/artifact/{artifact.id}", f"--screenshot={REPO / 'docs' / 'ui-anchor-artifact.png'}")
