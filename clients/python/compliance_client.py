"""A client for the compliance ledger's ingest service, standard library only (copy this one file).

    from compliance_client import IngestClient
    client = IngestClient(spool_path="/var/spool/audit.ndjson")   # or no spool: failures raise
    ids = client.emit({
        "tenant_id": "acme", "actor_type": "user", "actor_id": "u-1", "source": "billing-worker",
        "event_type": "auth.signin.success", "payload": {"userId": "u-1", "method": "sso"},
    }).event_ids

What a caller may rely on:

- The endpoint and token are read when a call is made (``COMPLIANCE_INGEST_URL``, the base URL, and
  ``COMPLIANCE_INGEST_TOKEN``), never at import: a warm container that is handed a new token uses it.
- Every event gets its ``event_id`` (UUID v7) and, if missing, ``occurred_at`` (now) here, before the first
  attempt, so a retry is recognised by the ledger and stored once; a ``datetime`` (with its time zone)
  is sent as RFC 3339.
- ``429`` and ``503`` answers and network failures are retried with exponential backoff, waiting at
  least what ``Retry-After`` asks.
- Nothing is dropped silently: a refusal (401, 403, 413, 422) raises :class:`IngestRefused` with the
  problem document; when retries run out the events are appended to the spool file (if one is given, with
  fsync) and replayed before the next call's events, or else :class:`IngestUnavailable` is raised.
"""

from __future__ import annotations

import email.utils
import fcntl
import json
import os
import random
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

__all__ = ["IngestClient", "IngestError", "IngestRefused", "IngestUnavailable", "SendResult", "uuid7"]

MAX_BATCH = 1000  # the service's documented limit


class IngestError(Exception):
    """Base of this client's errors."""


class IngestRefused(IngestError):
    """The service refused the request (not retried): ``status`` and its RFC 9457 ``problem``."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        self.errors = list(problem.get("errors", []))
        super().__init__(f"HTTP {status}: {problem.get('detail') or problem.get('title')}")


class IngestUnavailable(IngestError):
    """Retries ran out and no spool file was configured; ``event_ids`` were not acknowledged."""

    def __init__(self, message: str, event_ids: list[str]) -> None:
        self.event_ids = event_ids
        super().__init__(message)


class SendResult(NamedTuple):
    event_ids: list[str]
    stored: int  # newly stored now (0 for spooled events)
    duplicates: int  # already stored before (a retry)
    spooled: bool  # True: written to the spool file, to be delivered by a later call


def uuid7() -> str:
    """A UUID v7 (RFC 9562): 48-bit unix milliseconds, version 7, variant 10, 74 random bits."""
    value = (time.time_ns() // 1_000_000 & (1 << 48) - 1) << 80 | secrets.randbits(80)
    value = value & ~(0xF << 76) | 7 << 76  # version
    value = value & ~(0x3 << 62) | 0x2 << 62  # variant
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class IngestClient:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        spool_path: str | None = None,
        max_attempts: int = 8,
        max_backoff: float = 30.0,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``url``/``token`` override the environment (read at each call when None)."""
        self._url, self._token = url, token
        self.spool_path = spool_path
        self.max_attempts, self.max_backoff, self.timeout = max_attempts, max_backoff, timeout
        self.sleep = sleep
        self.retries = 0  # answers or failures retried so far (429, 503, network)

    def emit(self, event: Mapping[str, Any]) -> SendResult:
        return self.emit_batch([event])

    def emit_batch(self, events: Iterable[Mapping[str, Any]]) -> SendResult:
        """Send the events (in requests of up to 1,000); the spool, if any, is replayed first."""
        ready = [_complete(e) for e in events]
        ids = [e["event_id"] for e in ready]
        if self.spool_path:
            try:
                self.replay_spool()
            except IngestUnavailable:
                self._spool(ready)  # the service is still away: keep order, queue behind the spool
                return SendResult(ids, 0, 0, True)
        stored = duplicates = 0
        for start in range(0, len(ready), MAX_BATCH):
            chunk = ready[start : start + MAX_BATCH]
            try:
                answer = self._post(chunk)
            except IngestUnavailable:
                if not self.spool_path:
                    raise IngestUnavailable(
                        f"{len(ready) - start} event(s) not delivered; set spool_path to keep them", ids[start:]
                    ) from None
                self._spool(ready[start:])
                return SendResult(ids, stored, duplicates, True)
            stored += int(answer.get("stored", 0))
            duplicates += int(answer.get("duplicates", 0))
        return SendResult(ids, stored, duplicates, False)

    def replay_spool(self) -> int:
        """Deliver what the spool holds, oldest first; the number delivered. Raises IngestUnavailable (the
        rest kept) when the service is still away, IngestRefused when the service refuses a spooled batch."""
        if not self.spool_path or not os.path.exists(self.spool_path):
            return 0
        delivered = 0
        with open(self.spool_path, "r+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # one replayer at a time, and no append while it rewrites
            pending = [json.loads(line) for line in fh if line.strip()]
            while pending:
                chunk = pending[:MAX_BATCH]
                try:
                    self._post(chunk)
                except IngestError:
                    _rewrite(fh, pending)
                    raise
                pending = pending[MAX_BATCH:]
                delivered += len(chunk)
            _rewrite(fh, pending)
        return delivered

    def _spool(self, events: list[dict[str, Any]]) -> None:
        assert self.spool_path
        with open(self.spool_path, "a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
            fh.flush()
            os.fsync(fh.fileno())

    def _post(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """One request, retried on 429/503/network failures; the 202 body."""
        body = json.dumps(events, separators=(",", ":")).encode("utf-8")
        last = "no attempt made"
        for attempt in range(self.max_attempts):
            url, token = self._endpoint()
            request = urllib.request.Request(
                url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            )
            wait: float | None = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return dict(json.loads(response.read()))
            except urllib.error.HTTPError as exc:
                text = exc.read()
                if exc.code not in (429, 502, 503, 504):
                    try:
                        problem = json.loads(text)
                    except ValueError:
                        problem = {"title": exc.reason, "detail": text[:500].decode("utf-8", "replace")}
                    raise IngestRefused(exc.code, problem) from None
                wait = _retry_after(exc.headers.get("Retry-After"))
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out: outcome unknown
                last = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < self.max_attempts:
                self.retries += 1
                backoff = min(self.max_backoff, 0.25 * 2**attempt) * (0.5 + random.random() / 2)
                self.sleep(max(backoff, wait or 0.0))
        raise IngestUnavailable(f"gave up after {self.max_attempts} attempts ({last})", [e["event_id"] for e in events])

    def _endpoint(self) -> tuple[str, str]:
        base = self._url or os.environ.get("COMPLIANCE_INGEST_URL")
        token = self._token or os.environ.get("COMPLIANCE_INGEST_TOKEN")
        if not base or not token:
            raise IngestError("set COMPLIANCE_INGEST_URL and COMPLIANCE_INGEST_TOKEN (or pass url= and token=)")
        return base.rstrip("/") + "/v1/events", token


def _complete(event: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(event)
    out.setdefault("event_id", uuid7())
    when = out.get("occurred_at", None)
    if when is None:
        when = datetime.now(UTC)
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("occurred_at: a datetime without a time zone is ambiguous; give it one")
        when = when.isoformat(timespec="microseconds")
    out["occurred_at"] = when
    return out


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _rewrite(fh: Any, events: list[dict[str, Any]]) -> None:
    fh.seek(0)
    fh.truncate()
    fh.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
    fh.flush()
    os.fsync(fh.fileno())
