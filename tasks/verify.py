"""`compliance verify chain`: stream every event from the database and recompute its chain (the chain stage of
the verification core, ``ledger_verify``, then its anchor stage through tasks/verify_anchors.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger_verify import ExportReport
from ledger_verify.chain import ChainVerifier
from ledger_verify.errors import VerificationFailure

from compliance.settings import Settings
from tasks.db import connect, utc_text_sql

__all__ = ["STORED_EVENT_COLUMNS", "ChainReport", "verify_chain", "verify_export_file"]

# What the chain check needs of a stored event, in StoredEvent's order: ChainVerifier.check takes such a row
# as it comes, the timestamps already in the hashed text form (docs/format.md §1).
STORED_EVENT_COLUMNS = (
    f"tenant_id, seq, event_id::text, {utc_text_sql('occurred_at')}, {utc_text_sql('recorded_at')}, "
    "actor_type, actor_id, source, event_type, payload, redacted_fields, prev_hash, event_hash"
)
_SELECT = "SELECT " + STORED_EVENT_COLUMNS + " FROM compliance.events {where} ORDER BY tenant_id, seq"


@dataclass
class ChainReport:
    ok: bool
    events: int
    tenants: int
    seconds: float
    failure: VerificationFailure | None = None
    anchors: int = 0
    checked: list[str] = field(default_factory=lambda: ["hashes", "links", "gaps", "heads"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "tenants": self.tenants,
            "anchors": self.anchors,
            "seconds": round(self.seconds, 3),
            "checked": self.checked,
            "failure": None if self.failure is None else self.failure.as_dict(),
        }

    def summary(self) -> str:
        head = (
            f"checked {self.events} events of {self.tenants} tenants and {self.anchors} anchors in "
            f"{self.seconds:.1f} s ({', '.join(self.checked)})"
        )
        if self.ok:
            return f"OK: {head}"
        return f"FAILED: {self.failure}\n{head}"


def verify_chain(
    settings: Settings, tenant: str | None = None, batch: int = 20_000, anchors: bool | None = None
) -> ChainReport:
    """Recompute every event hash, link and seq, and each tenant's head; then, with an anchor bucket
    configured (``anchors`` None: when an S3 endpoint is set), every anchor. Stops at the first failure."""
    started = time.perf_counter()
    verifier = ChainVerifier()
    conn = connect(settings, "compliance_reader")
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            where, params = ("WHERE tenant_id = %s", (tenant,)) if tenant else ("", ())
            heads = {
                t: (s, bytes(h))
                for t, s, h in conn.execute(
                    "SELECT tenant_id, last_seq, head_hash FROM compliance.tenant_heads " + where, params
                )
            }
            cur = conn.cursor(name="verify_chain")
            cur.itersize = batch
            cur.execute(_SELECT.format(where=where), params)
            current: str | None = None
            seen: set[str] = set()
            ok = True
            check = verifier.check
            while ok:
                rows = cur.fetchmany(batch)
                if not rows:
                    break
                for r in rows:
                    if r[0] != current:
                        if current is not None and not verifier.finish_tenant(current, heads.get(current)):
                            ok = False
                            break
                        current = r[0]
                        seen.add(current)
                    if not check(r):
                        ok = False
                        break
            if ok and current is not None:
                verifier.finish_tenant(current, heads.get(current))
            if verifier.failure is None:
                for t in sorted(set(heads) - seen):
                    if heads[t][0] > 0:
                        verifier.finish_tenant(t, heads[t])
                        break
            cur.close()
            failure = verifier.failure
            checked_anchors = 0
            check_anchors = bool(settings.s3_endpoint_url) if anchors is None else anchors
            if failure is None and check_anchors:
                from tasks.verify_anchors import verify_anchors

                checked_anchors, failure = verify_anchors(settings, conn, tenant)
    finally:
        conn.close()
    report = ChainReport(
        failure is None, verifier.events, verifier.tenants, time.perf_counter() - started, failure, checked_anchors
    )
    if check_anchors:
        report.checked += ["anchor signatures", "anchor links", "retention", "proofs", "events roots", "tiling"]
    return report


def verify_export_file(
    settings: Settings, data: Path, manifest: dict[str, Any] | None, *, allow_pending: bool = False
) -> ExportReport:
    """Verify an export file as an auditor would, trusting this deployment's trust file (``compliance trust
    show``) and reading its anchor bucket: the operator's own check of an export before handing it over."""
    from ledger_verify import ExportVerifier, S3Store

    from tasks.storage import s3_client
    from tasks.trust import deployment_trust

    store = S3Store(settings.anchor_bucket, s3_client(settings))
    return ExportVerifier(store, deployment_trust(settings), manifest, allow_pending=allow_pending).verify_file(data)
