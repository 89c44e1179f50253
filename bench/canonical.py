"""validate + redact + canonicalise + hash of realistic events, beside the reference rfc8785 package.

    python bench/canonical.py [--events 1000000]

Prints one JSON line. Both sides run in this process on the same events: ours is
prepare_event() (validation, redaction, RFC 8785 payload) then the chain hash of
the full v1 body; the reference is rfc8785.dumps() of the same redacted v1 body
object then SHA-256, with the same validation and redaction excluded from its
timing (so the reference side is flattered, not us).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rfc8785

from compliance.chain import GENESIS_HASH, canonical_body
from compliance.events import Registry, prepare_event

TYPES = [
    (
        "auth.signin.success",
        lambda r, i: {
            "userId": f"u-{i % 5000}",
            "method": r.choice(["password", "sso", "passkey"]),
            "ip": f"10.{i % 256}.{(i >> 8) % 256}.{i % 7}",
            "userAgent": "Mozilla/5.0 (X11)",
            "password": "hunter2",
        },
    ),
    (
        "auth.signin.failure",
        lambda r, i: {
            "userId": f"u-{i % 5000}",
            "email": f"user{i % 5000}@example.com",
            "method": "password",
            "reason": "bad_password",
            "ip": "192.168.1.20",
        },
    ),
    (
        "agent.skills_changed",
        lambda r, i: {
            "agentId": f"a-{i % 300}",
            "addedSkills": ["search", "mail"],
            "removedSkills": [],
            "reason": "quarterly review",
        },
    ),
    (
        "policy.evaluated",
        lambda r, i: {
            "policyId": f"p-{i % 40}",
            "decision": r.choice(["allow", "deny"]),
            "reason": None,
            "subject": {"score": 0.25, "resource": f"doc-{i}"},
        },
    ),
    ("user.invited", lambda r, i: {"email": f"new{i}@example.com", "role": "member", "invitedBy": f"u-{i % 50}"}),
    ("mcp.added", lambda r, i: {"mcpId": f"m-{i % 90}", "url": "https://mcp.example.com/v1", "scopes": ["read"]}),
]


def make_events(n: int) -> list[dict]:
    r = random.Random(8785)
    out = []
    for i in range(n):
        etype, payload = TYPES[i % len(TYPES)]
        out.append(
            {
                "tenant_id": f"tenant-{i % 1000:04d}",
                "occurred_at": f"2026-11-22T{i // 3600000 % 24:02d}:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}123Z",
                "actor_type": r.choice(["user", "service", "agent"]),
                "actor_id": f"actor-{i % 977}",
                "source": "api-gateway",
                "event_type": etype,
                "payload": payload(r, i),
            }
        )
    return out


REFERENCE_SAMPLE = 200_000  # the reference is timed on the first 200,000 events (it is several times slower)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    events = make_events(args.events)
    registry = Registry.default()
    recorded_at = "2026-11-22T12:00:00.000000Z"
    sha256 = hashlib.sha256

    gc.disable()
    start = time.perf_counter()
    prev = GENESIS_HASH
    prepared = []
    for seq, raw in enumerate(events, 1):
        e = prepare_event(raw, registry)
        event_id, tenant_id, occurred_at, actor_type, actor_id, source, event_type, payload_jcs, _, redacted_jcs = e
        body = canonical_body(
            seq=seq,
            event_id=event_id,
            tenant_id=tenant_id,
            occurred_at=occurred_at,
            recorded_at=recorded_at,
            actor_type=actor_type,
            actor_id=actor_id,
            source=source,
            event_type=event_type,
            payload_jcs=payload_jcs,
            redacted_fields_jcs=redacted_jcs,
        )
        prev = sha256(prev + body).digest()
        if seq <= REFERENCE_SAMPLE:
            prepared.append(e)
    ours = time.perf_counter() - start
    gc.enable()

    # The reference: the same body objects, serialised by rfc8785 and hashed.
    sample = prepared
    objects = [
        {
            "v": 1,
            "seq": i,
            "event_id": e.event_id,
            "tenant_id": e.tenant_id,
            "occurred_at": e.occurred_at,
            "recorded_at": recorded_at,
            "actor": {"type": e.actor_type, "id": e.actor_id},
            "source": e.source,
            "event_type": e.event_type,
            "payload": json.loads(e.payload_jcs),
            "redacted_fields": list(e.redacted_fields),
        }
        for i, e in enumerate(sample, 1)
    ]
    # Same bytes, first: the comparison is only fair if both produce the identical body.
    e0 = sample[0]
    assert rfc8785.dumps(objects[0]) == canonical_body(
        seq=1,
        event_id=e0.event_id,
        tenant_id=e0.tenant_id,
        occurred_at=e0.occurred_at,
        recorded_at=recorded_at,
        actor_type=e0.actor_type,
        actor_id=e0.actor_id,
        source=e0.source,
        event_type=e0.event_type,
        payload_jcs=e0.payload_jcs,
        redacted_fields_jcs=e0.redacted_fields_jcs,
    )
    gc.disable()
    start = time.perf_counter()
    prev = GENESIS_HASH
    for obj in objects:
        prev = sha256(prev + rfc8785.dumps(obj)).digest()
    reference = time.perf_counter() - start
    gc.enable()

    ours_rate = args.events / ours
    ref_rate = len(objects) / reference
    print(
        json.dumps(
            {
                "bench": "canonical",
                "events": args.events,
                "ours_seconds": round(ours, 2),
                "ours_events_per_s": round(ours_rate),
                "reference_events": len(objects),
                "reference_events_per_s": round(ref_rate),
                "ratio": round(ours_rate / ref_rate, 2),
                "target": {"events_per_s": 150_000, "ratio": 5},
                "ok": ours_rate >= 150_000 and ours_rate / ref_rate >= 5,
            }
        )
    )


if __name__ == "__main__":
    main()
