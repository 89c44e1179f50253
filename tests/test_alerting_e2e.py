"""Against a running Prefect server: a failing flow run fires its automation and the notification reaches a
local webhook receiver; a stopped heartbeat fires the proactive trigger. And CloudWatch gets the figures."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

pytestmark = pytest.mark.slow


class Receiver:
    """A real HTTP server that records every POST body."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                try:
                    outer.bodies.append(json.loads(self.rfile.read(length) or b"{}"))
                except ValueError:
                    outer.bodies.append({"raw": True})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, text: str, seconds: float) -> dict | None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for body in self.bodies:
                if text in json.dumps(body):
                    return body
            time.sleep(0.5)
        return None


def test_failing_flow_and_stopped_heartbeat_notify_the_webhook(prefect_server: str, monkeypatch) -> None:
    from prefect import flow
    from prefect.events import emit_event
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.alerts import ALERTS, AlertSpec, apply_alerts

    receiver = Receiver()
    monkeypatch.setenv("COMPLIANCE_ALERT_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("COMPLIANCE_ALERT_BLOCK", f"alerts-{uuid.uuid4().hex[:8]}")
    failed_drain = next(a for a in ALERTS if a.name == "drain-outbox run failed")
    heartbeat = next(a for a in ALERTS if a.name == "watchdog heartbeat missing")
    short_heartbeat = AlertSpec(
        heartbeat.name + " (test window)",
        heartbeat.description,
        heartbeat.expect,
        heartbeat.severity,
        posture="Proactive",
        within_seconds=10,
        match=heartbeat.match,
    )
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        assert {w for _, w in apply_alerts((failed_drain, short_heartbeat))} == {"created"}

        @flow(name="drain-outbox")
        def broken_drain() -> None:
            raise RuntimeError("the database is on fire")

        # The triggers service loads new automations on its own schedule (later on a loaded machine): fail
        # again until it has, as the next scheduled runs would.
        got = None
        for _ in range(12):
            with pytest.raises(RuntimeError):
                broken_drain()
            got = receiver.wait_for("drain-outbox run failed", 10)
            if got is not None:
                break
        assert got is not None, f"no notification; received {receiver.bodies}"
        assert "[critical]" in got["subject"]

        emit_event(event="compliance.watchdog.heartbeat", resource={"prefect.resource.id": "compliance.watchdog"})
        got = receiver.wait_for("watchdog heartbeat missing (test window)", 120)
        assert got is not None, f"the proactive trigger did not fire; received {receiver.bodies}"


def test_watchdog_figures_go_to_cloudwatch(s3_endpoint: str, monkeypatch) -> None:
    import boto3

    from tasks.watchdog import send_to_cloudwatch

    monkeypatch.setenv("COMPLIANCE_CLOUDWATCH_NAMESPACE", "ComplianceTest")
    monkeypatch.setenv("COMPLIANCE_CLOUDWATCH_ENDPOINT_URL", s3_endpoint)  # moto's server speaks CloudWatch too
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "compliance-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "compliance-test")
    assert send_to_cloudwatch({"anchor_lag_seconds": 12.5, "outbox_depth": 3, "chain_tail_ok": True})
    cw = boto3.client("cloudwatch", endpoint_url=s3_endpoint, region_name="us-east-1")
    names = {m["MetricName"] for m in cw.list_metrics(Namespace="ComplianceTest")["Metrics"]}
    assert names == {"anchor_lag_seconds", "outbox_depth", "chain_tail_ok"}


def test_silent_sources_alert_names_the_quiet_source(prefect_server: str, monkeypatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from compliance.watchdog import judge
    from deployments.alerts import ALERTS, apply_alerts
    from tasks.watchdog import publish

    receiver = Receiver()
    monkeypatch.setenv("COMPLIANCE_ALERT_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("COMPLIANCE_ALERT_BLOCK", f"alerts-{uuid.uuid4().hex[:8]}")
    spec = next(a for a in ALERTS if a.name == "silent sources")
    silent = dataclasses.replace(spec, name=f"{spec.name} ({uuid.uuid4().hex[:8]})")  # not one applied earlier
    figures = {"silent_sources": 1}
    quiet = "acme/billing-worker: quiet 42 min (usually every 1 min)"
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        assert {w for _, w in apply_alerts((silent,))} == {"created"}
        # The triggers service loads a new automation on its own schedule (later on a loaded machine): publish
        # again until it has, as the watchdog would on its next runs.
        got = None
        for _ in range(12):
            publish(figures, {"silent_sources": judge(figures)["silent_sources"]}, {"silent_sources": [quiet]})
            got = receiver.wait_for("billing-worker", 10)
            if got is not None:
                break
    assert got is not None, f"no notification; received {receiver.bodies}"
    assert "[warning]" in got["subject"] and quiet in got["body"]
