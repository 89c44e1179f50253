"""Demo traffic for the local stack: a few tenants, a steady trickle of realistic events (stoppable)."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime

from compliance.settings import Settings
from tasks.db import connect
from tasks.outbox import emit_batch

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


class DemoEmitter(threading.Thread):
    """Emits ``rate`` events a second, one transaction a second, until stopped."""

    def __init__(self, settings: Settings, rate: int = 20) -> None:
        super().__init__(name="demo-emitter", daemon=True)
        self.settings, self.rate = settings, rate
        self.stopped = threading.Event()
        self.emitted = 0

    def run(self) -> None:
        rng = random.Random()
        conn = connect(self.settings, "compliance_writer")
        try:
            while not self.stopped.wait(1.0):
                with conn.transaction():
                    self.emitted += emit_batch(conn, [demo_event(rng) for _ in range(self.rate)]).stored
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
