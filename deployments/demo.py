"""Demo traffic for the local stack: a few tenants, a steady trickle of realistic events (stoppable).

A quarter of the events go through the HTTP ingest service (started beside the stack by `make run`, with the
standard-library client of clients/python/), the rest through the transactional outbox.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from compliance.ingest import Scope
from compliance.settings import Settings
from tasks.db import connect
from tasks.outbox import emit_batch
from tasks.sources import SourceError, add_source, rotate_source

REPO = Path(__file__).resolve().parent.parent
DEMO_SOURCE = "demo"

TENANTS = ("acme-corp", "globex", "initech", "umbrella", "Zeta.io")
USERS = [f"u-{i}" for i in range(40)]


def demo_event(rng: random.Random) -> dict:
    tenant = rng.choice(TENANTS)
    user = rng.choice(USERS)
    now = datetime.now(UTC)
    kind = rng.random()
    if kind < 0.5:
        return {
            "tenant_id": tenant,
            "occurred_at": now,
            "actor_type": "user",
            "actor_id": user,
            "source": "web",
            "event_type": "auth.signin.success",
            "payload": {
                "userId": user,
                "method": rng.choice(["password", "sso", "passkey"]),
                "ip": f"203.0.113.{rng.randrange(256)}",
                "userAgent": "Mozilla/5.0",
                "password": "x",
            },
        }
    if kind < 0.65:
        return {
            "tenant_id": tenant,
            "occurred_at": now,
            "actor_type": "user",
            "actor_id": user,
            "source": "web",
            "event_type": "auth.signin.failure",
            "payload": {
                "email": f"{user}@example.com",
                "method": "password",
                "reason": "bad_password",
                "ip": "198.51.100.7",
            },
        }
    if kind < 0.85:
        return {
            "tenant_id": tenant,
            "occurred_at": now,
            "actor_type": "agent",
            "actor_id": f"agent-{rng.randrange(5)}",
            "source": "agent-runtime",
            "event_type": "policy.evaluated",
            "payload": {
                "policyId": f"p-{rng.randrange(9)}",
                "decision": rng.choice(["allow", "deny"]),
                "reason": None,
                "subject": {"tool": "search", "score": round(rng.random(), 3)},
            },
        }
    return {
        "tenant_id": tenant,
        "occurred_at": now,
        "actor_type": "service",
        "actor_id": "provisioner",
        "source": "admin-api",
        "event_type": "agent.skills_changed",
        "payload": {
            "agentId": f"agent-{rng.randrange(5)}",
            "addedSkills": ["mail"],
            "removedSkills": [],
            "reason": "demo",
            "apiKey": "sk_live_" + "x" * 24,
        },
    }


class IngestService(NamedTuple):
    url: str  # the base URL: POST {url}/v1/events
    token: str  # the demo source's token (every tenant, every type)
    process: subprocess.Popen[bytes]


def start_ingest(settings: Settings, env: dict[str, str], port: int, log: Path) -> IngestService:
    """The ingest service in its own process on ``port``, and a fresh token of the demo source."""
    try:
        token = add_source(settings, DEMO_SOURCE, Scope(None, None), by="make run")
    except SourceError:
        token = rotate_source(settings, DEMO_SOURCE, by="make run")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ingest", "--port", str(port)],
            env={**os.environ, **env},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return IngestService(url, token, process)
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the ingest service did not start on port {port}; see {log}")


def ingest_client(service: IngestService) -> Any:
    """The standard-library client (clients/python/compliance_client.py) pointed at ``service``."""
    path = REPO / "clients" / "python" / "compliance_client.py"
    spec = importlib.util.spec_from_file_location("compliance_client", path)
    assert spec is not None and spec.loader is not None, f"{path} is missing"
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.IngestClient(service.url, service.token)


class DemoEmitter(threading.Thread):
    """Emits ``rate`` events a second until stopped: a quarter over HTTP when ``ingest`` is given, the rest
    in one outbox transaction a second."""

    def __init__(self, settings: Settings, rate: int = 20, ingest: IngestService | None = None) -> None:
        super().__init__(name="demo-emitter", daemon=True)
        self.settings, self.rate = settings, rate
        self.client = ingest_client(ingest) if ingest else None
        self.stopped = threading.Event()
        self.emitted = 0

    def run(self) -> None:
        rng = random.Random()
        conn = connect(self.settings, "compliance_writer")
        try:
            while not self.stopped.wait(1.0):
                events = [demo_event(rng) for _ in range(self.rate)]
                if self.client is not None:
                    over_http = len(events) // 4
                    self.emitted += self.client.emit_batch(events[:over_http]).stored
                    events = events[over_http:]
                with conn.transaction():
                    self.emitted += emit_batch(conn, events).stored
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopped.set()


DEMO_OPERATOR = "demo-operator@example.com"


def enrol_demo_operator(settings: Settings) -> tuple[str, str]:
    """Enrol (or, on a later start, give a new secret to) the demo's cross-tenant operator; its address and
    base32 secret. Only the demo shows a secret again: a real enrolment prints it once."""
    from compliance.operators import secret_base32
    from tasks.operators import enrol, list_operators

    enrolled = any(r.address == DEMO_OPERATOR for r in list_operators(settings))
    enrolment = enrol(settings, DEMO_OPERATOR, cross_tenant=not enrolled, rotate=enrolled, by="make run")
    return enrolment.address, secret_base32(enrolment.secret)


def code_command(secret: str) -> str:
    """A shell command that prints the demo operator's current one-time code."""
    return f".venv/bin/python -c \"import pyotp; print(pyotp.TOTP('{secret}').now())\""
