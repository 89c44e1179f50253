"""Export requests and export files (SPEC §4): the filter, the refusal codes, the rows, the manifest.

>>> f = parse_filter('{"since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z", "tenant_id": "acme"}')
>>> f.tenant_id, f.since
('acme', '2026-11-01T00:00:00.000000Z')
>>> parse_filter('{"since": "2026-11-01T00:00:00Z"}')
Traceback (most recent call last):
...
compliance.exports.ExportRefused: FILTER_INVALID: "until" is required (RFC 3339 with offset)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from ledger_verify.rows import EXPORT_COLUMNS, PathRenderer, compress_seqs, expand_seqs, neutralise

from compliance.events import ACTOR_TYPES, EVENT_TYPE_RE
from compliance.jcs import loads_strict
from compliance.timefmt import parse_utc_text, utc_text

__all__ = [
    "EXPORT_COLUMNS",
    "FORMATS",
    "MAX_FILTER_BYTES",
    "MAX_WINDOW",
    "RATE_LIMIT",
    "ExportFilter",
    "ExportRefused",
    "PathRenderer",
    "check_rate",
    "compress_seqs",
    "csv_row",
    "expand_seqs",
    "ndjson_line",
    "parse_filter",
]

MAX_FILTER_BYTES = 4096
MAX_WINDOW = timedelta(days=90)
RATE_LIMIT = 10  # requests per operator per rolling hour
FORMATS = ("csv", "ndjson", "parquet")
_FILTER_KEYS = {"since", "until", "tenant_id", "event_types", "actor_types"}
_TENANT_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_RFC3339_RE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[Zz]|[+-]\d{2}:\d{2})")


class ExportRefused(ValueError):
    """A refused export request; ``code`` is one of SPEC §4's, the message says what to change. Nothing was written."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True)
class ExportFilter:
    since: str  # SPEC §2 timestamp form, UTC
    until: str
    tenant_id: str | None = None
    event_types: tuple[str, ...] | None = None
    actor_types: tuple[str, ...] | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"since": self.since, "until": self.until}
        if self.tenant_id is not None:
            out["tenant_id"] = self.tenant_id
        if self.event_types is not None:
            out["event_types"] = list(self.event_types)
        if self.actor_types is not None:
            out["actor_types"] = list(self.actor_types)
        return out

    @property
    def cross_tenant(self) -> bool:
        return self.tenant_id is None


def _timestamp(raw: Mapping[str, Any], key: str) -> datetime:
    value = raw.get(key)
    if value is None:
        raise ExportRefused("FILTER_INVALID", f'"{key}" is required (RFC 3339 with offset)')
    if type(value) is not str or not _RFC3339_RE.fullmatch(value):
        raise ExportRefused(
            "FILTER_INVALID",
            f'"{key}" must be an RFC 3339 timestamp with offset, e.g. 2026-11-01T00:00:00Z; got {str(value)[:60]!r}',
        )
    try:
        return parse_utc_text(value.upper())
    except ValueError as exc:
        raise ExportRefused("FILTER_INVALID", f'"{key}" is not a valid date and time: {exc}') from None


def _names(raw: Mapping[str, Any], key: str, valid: Any, what: str) -> tuple[str, ...] | None:
    value = raw.get(key)
    if value is None:
        return None
    if type(value) is not list or not value or any(type(v) is not str for v in value):
        raise ExportRefused("FILTER_INVALID", f'"{key}" must be a non-empty list of {what}')
    bad = [v for v in value if not valid(v)]
    if bad:
        raise ExportRefused("FILTER_INVALID", f'"{key}" holds {bad[0][:60]!r}, which is not {what}')
    return tuple(dict.fromkeys(value))


def parse_filter(
    text: str | bytes | Mapping[str, Any], *, known_event_types: Iterable[str] | None = None
) -> ExportFilter:
    """Validate an export filter; raises :class:`ExportRefused` with FILTER_TOO_LARGE, FILTER_INVALID or
    FILTER_RANGE_TOO_WIDE."""
    if isinstance(text, Mapping):
        text = json.dumps(text, separators=(",", ":"), ensure_ascii=False)
    raw_bytes = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if len(raw_bytes) > MAX_FILTER_BYTES:
        raise ExportRefused(
            "FILTER_TOO_LARGE",
            f"the filter is {len(raw_bytes)} bytes serialized; the limit is "
            f"{MAX_FILTER_BYTES} (4 KiB): narrow the lists of types",
        )
    try:
        raw = loads_strict(raw_bytes)
    except (ValueError, RecursionError) as exc:
        raise ExportRefused("FILTER_INVALID", f"the filter is not a JSON object: {exc}") from None
    if not isinstance(raw, dict):
        raise ExportRefused("FILTER_INVALID", "the filter must be a JSON object")
    unknown = sorted(set(raw) - _FILTER_KEYS)
    if unknown:
        raise ExportRefused(
            "FILTER_INVALID", f'unknown key "{unknown[0][:60]}"; allowed: ' + ", ".join(sorted(_FILTER_KEYS))
        )
    since, until = _timestamp(raw, "since"), _timestamp(raw, "until")
    if since >= until:
        raise ExportRefused("FILTER_INVALID", '"since" must be before "until"')
    if until - since > MAX_WINDOW:
        raise ExportRefused(
            "FILTER_RANGE_TOO_WIDE",
            f"the window is {until - since}; at most 90 days: split the export into several requests",
        )
    tenant = raw.get("tenant_id")
    if tenant is not None and (type(tenant) is not str or not _TENANT_RE.fullmatch(tenant)):
        raise ExportRefused("FILTER_INVALID", '"tenant_id" must be 1 to 128 characters of A-Z a-z 0-9 . _ : -')
    known = set(known_event_types) if known_event_types is not None else None
    event_types = _names(
        raw,
        "event_types",
        lambda v: bool(EVENT_TYPE_RE.fullmatch(v)) and (known is None or v in known),
        "registered event types",
    )
    actor_types = _names(
        raw, "actor_types", lambda v: v in ACTOR_TYPES, "actor types (" + ", ".join(sorted(ACTOR_TYPES)) + ")"
    )
    return ExportFilter(utc_text(since), utc_text(until), tenant, event_types, actor_types)


def check_rate(previous: Sequence[datetime], now: datetime) -> None:
    """Refuse an 11th request within a rolling hour (``previous``: that operator's accepted requests)."""
    recent = sorted(t for t in previous if now - timedelta(hours=1) < t <= now)
    if len(recent) >= RATE_LIMIT:
        retry = recent[-RATE_LIMIT] + timedelta(hours=1)
        raise ExportRefused(
            "RATE_LIMIT_EXCEEDED",
            f"{len(recent)} exports requested in the last hour (limit {RATE_LIMIT}); try again after {utc_text(retry)}",
        )


# ---------------------------------------------------------------- rows

_NEEDS_QUOTES = re.compile('[,"\r\n]').search


def _csv_field(text: str) -> str:
    """A free-text cell: neutralised (no spreadsheet formula), then quoted as RFC 4180 needs."""
    text = neutralise(text)
    if _NEEDS_QUOTES(text):
        return '"' + text.replace('"', '""') + '"'
    return text


CSV_HEADER = ",".join(EXPORT_COLUMNS) + "\r\n"


def csv_row(r: Sequence[Any], path: str | None, cadence: str | None, index: int | None) -> str:
    """One CSV line (RFC 4180, CRLF) of a stored event ``r`` (tenant_id, seq, event_id, occurred_at,
    recorded_at, actor_type, actor_id, source, event_type, payload, redacted_fields, prev_hash hex, event_hash hex);
    ``path`` is the audit path already joined by ';'. Text cells that may begin with a formula lead
    (tenant_id, actor_id, source) are neutralised; the others cannot by their form (SPEC §1)."""
    return (
        ",".join(
            (
                _csv_field(r[0]),
                str(r[1]),
                r[2],
                r[3],
                r[4],
                r[5],
                _csv_field(r[6]),
                _csv_field(r[7]),
                r[8],
                '"' + r[9].replace('"', '""') + '"',
                _csv_field(r[10]),
                r[11],
                r[12],
                cadence or "",
                "" if index is None else str(index),
                path or "",
            )
        )
        + "\r\n"
    )


def ndjson_line(r: Sequence[Any], path: str | None, cadence: str | None, index: int | None) -> str:
    """One NDJSON line; ``payload`` and ``redacted_fields`` are embedded as the JSON they already are;
    ``path`` is the audit path already joined by '","'."""
    enc = orjson.dumps
    line: str = (
        '{"tenant_id":'
        + enc(r[0]).decode()
        + ',"seq":'
        + str(r[1])
        + ',"event_id":"'
        + r[2]
        + '","occurred_at":"'
        + r[3]
        + '","recorded_at":"'
        + r[4]
        + '","actor_type":'
        + enc(r[5]).decode()
        + ',"actor_id":'
        + enc(r[6]).decode()
        + ',"source":'
        + enc(r[7]).decode()
        + ',"event_type":'
        + enc(r[8]).decode()
        + ',"payload":'
        + r[9]
        + ',"redacted_fields":'
        + r[10]
        + ',"prev_hash":"'
        + r[11]
        + '","event_hash":"'
        + r[12]
        + '","cadence_id":'
        + ('"' + cadence + '"' if cadence else "null")
        + ',"event_index":'
        + ("null" if index is None else str(index))
        + ',"event_path":'
        + ('["' + path + '"]' if path else "[]")
        + "}\n"
    )
    return line
