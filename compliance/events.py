"""Audit events as callers hand them over: validation, redaction, preparation (SPEC §1).

    >>> registry = Registry.default()
    >>> event = prepare_event({
    ...     "tenant_id": "acme", "occurred_at": "2026-11-22T10:00:00+01:00",
    ...     "actor_type": "user", "actor_id": "u-1", "source": "web",
    ...     "event_type": "auth.signin.success",
    ...     "payload": {"userId": "u-1", "password": "hunter2"},
    ... }, registry)
    >>> event.occurred_at, event.payload_jcs, event.redacted_fields
    ('2026-11-22T09:00:00.000000Z', '{"userId":"u-1"}', ('password',))

:func:`prepare_event` either returns a :class:`PreparedEvent` (validated,
redacted, its payload already in RFC 8785 form) or raises
:class:`EventRefused` naming the field and the reason. It never touches a
database: the outbox stores exactly what it returns.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Mapping, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from compliance.jcs import CanonicalError, canonical_str
from compliance.timefmt import utc_text

__all__ = [
    "ACTOR_TYPES",
    "EventRefused",
    "PreparedEvent",
    "Registry",
    "prepare_event",
    "new_event_id",
    "MAX_PAYLOAD_BYTES",
    "MAX_STRING_BYTES",
    "REDACTED_SECRET",
]

ACTOR_TYPES = frozenset({"user", "service", "agent", "system", "operator"})
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_STRING_BYTES = 4 * 1024
REDACTED_SECRET = "<REDACTED:secret>"
EVENT_FIELDS = frozenset(
    {"event_id", "tenant_id", "occurred_at", "actor_type", "actor_id", "source", "event_type", "payload"}
)

_TENANT_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_EVENT_TYPE_RE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)+")
_UUID7_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_RFC3339_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.(\d{1,9}))?(?:[Zz]|[+-]\d{2}:\d{2})"
)
# Credentials by shape: bearer tokens, JWTs, cloud access keys, common API tokens.
_SECRET_RE = re.compile(
    r"(?i:\bbearer\s+[A-Za-z0-9._~+/=-]{8,})"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
    r"|\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"
    r"|\bAIza[0-9A-Za-z_-]{35}\b"
    r"|\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{30,}"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"
    r"|\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"
    r"|\bglpat-[A-Za-z0-9_-]{20,}"
    r"|\bnpm_[A-Za-z0-9]{30,}"
)
_SECRET_QUERY_KEYS = re.compile(r"(?i)(token|secret|password|passwd|pwd|key|sig|signature|auth|credential)")


class EventRefused(ValueError):
    """An event was refused; nothing was written. ``field`` names the culprit, ``reason`` says what to change."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class PreparedEvent(NamedTuple):
    """A validated, redacted event, as the outbox stores it. Strings are final (hashed as they are)."""

    event_id: str
    tenant_id: str
    occurred_at: str  # YYYY-MM-DDTHH:MM:SS.ffffffZ
    actor_type: str
    actor_id: str
    source: str
    event_type: str
    payload_jcs: str  # RFC 8785 text of the redacted payload
    redacted_fields: tuple[str, ...]  # sorted

    @property
    def redacted_fields_jcs(self) -> str:
        return canonical_str(list(self.redacted_fields))


@dataclass(frozen=True)
class TypeRule:
    keep: frozenset[str]  # top-level keys kept whole
    nested: Mapping[str, "TypeRule"]  # top-level keys of which only some sub-keys are kept
    caps: Mapping[str, int]
    urls: frozenset[str]

    @classmethod
    def from_spec(cls, keep: list[str], caps: Mapping[str, int], urls: list[str]) -> "TypeRule":
        whole = {k for k in keep if "." not in k}
        children: dict[str, list[str]] = {}
        for k in keep:
            if "." in k:
                head, rest = k.split(".", 1)
                if head not in whole:
                    children.setdefault(head, []).append(rest)
        nested = {
            head: cls.from_spec(
                rest,
                {k.split(".", 1)[1]: v for k, v in caps.items() if k.startswith(head + ".")},
                [u.split(".", 1)[1] for u in urls if u.startswith(head + ".")],
            )
            for head, rest in children.items()
        }
        return cls(
            frozenset(whole),
            nested,
            {k: v for k, v in caps.items() if "." not in k},
            frozenset(u for u in urls if "." not in u),
        )


class Registry:
    """The registered event types and their payload allow-lists (data, not code)."""

    def __init__(self, types: Mapping[str, Mapping[str, Any]]) -> None:
        self._rules: dict[str, TypeRule] = {}
        for name, spec in types.items():
            if not _EVENT_TYPE_RE.fullmatch(name):
                raise ValueError(f"event type {name!r} is not dotted lower-case (e.g. auth.signin.success)")
            self._rules[name] = TypeRule.from_spec(
                list(spec.get("keep", [])), dict(spec.get("caps", {})), list(spec.get("urls", []))
            )

    @classmethod
    def default(cls) -> "Registry":
        """The packaged registry, plus the entries of COMPLIANCE_EVENT_TYPES_FILE when that is set."""
        text = resources.files("compliance").joinpath("data/event_types.json").read_text("utf-8")
        types = dict(json.loads(text)["types"])
        extra = os.environ.get("COMPLIANCE_EVENT_TYPES_FILE")
        if extra:
            with open(extra, encoding="utf-8") as fh:
                types.update(json.load(fh)["types"])
        return cls(types)

    def __contains__(self, name: object) -> bool:
        return name in self._rules

    def names(self) -> list[str]:
        return sorted(self._rules)

    def rule(self, name: str) -> TypeRule:
        return self._rules[name]


def new_event_id() -> str:
    """A fresh UUID v7 (RFC 9562): 48-bit millisecond time, then random bits."""
    ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64 | 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def _text(raw: Mapping[str, Any], field: str, max_chars: int) -> str:
    value = raw.get(field)
    if value is None:
        raise EventRefused(field, "is required")
    if type(value) is not str:
        raise EventRefused(field, f"must be a string, not {type(value).__name__}")
    if not 1 <= len(value) <= max_chars:
        raise EventRefused(field, f"must be 1 to {max_chars} characters, got {len(value)}")
    if "\x00" in value:
        raise EventRefused(field, "must not contain NUL characters")
    if _has_surrogate(value):
        raise EventRefused(field, "must be valid Unicode (it holds a lone surrogate)")
    return value


def _has_surrogate(value: str) -> bool:
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _occurred_at(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise EventRefused("occurred_at", "must carry a UTC offset (a naive datetime is ambiguous)")
        return utc_text(value)
    if type(value) is not str:
        raise EventRefused("occurred_at", "is required, as an RFC 3339 timestamp with offset")
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        raise EventRefused(
            "occurred_at",
            f"{value[:64]!r} is not an RFC 3339 timestamp with offset, e.g. 2026-11-22T10:00:00.123456Z",
        )
    fraction = match.group(1)
    if fraction is not None and len(fraction) > 6:
        raise EventRefused("occurred_at", "has more than microsecond precision; send at most 6 fractional digits")
    try:
        parsed = datetime.fromisoformat(value.upper().replace(" ", "T"))
    except ValueError as exc:
        raise EventRefused("occurred_at", f"{value!r} is not a valid date and time ({exc})") from None
    return utc_text(parsed)


def _event_id(value: Any) -> str:
    if value is None:
        return new_event_id()
    if type(value) is not str:
        if isinstance(value, uuid.UUID):
            value = str(value)
        else:
            raise EventRefused("event_id", "must be a UUID v7 string")
    lowered = value.lower()
    if not _UUID7_RE.fullmatch(lowered):
        raise EventRefused("event_id", f"{value[:64]!r} is not a UUID v7 (xxxxxxxx-xxxx-7xxx-[89ab]xxx-xxxxxxxxxxxx)")
    return lowered


def prepare_event(raw: Mapping[str, Any], registry: Registry) -> PreparedEvent:
    """Validate and redact one event as handed over by a caller. Raises :class:`EventRefused`."""
    if not isinstance(raw, Mapping):
        raise EventRefused("event", "must be an object")
    unknown = raw.keys() - EVENT_FIELDS
    if unknown:
        raise EventRefused(sorted(unknown)[0], f"is not an event field; allowed: {', '.join(sorted(EVENT_FIELDS))}")
    tenant_id = raw.get("tenant_id")
    if type(tenant_id) is not str or not _TENANT_RE.fullmatch(tenant_id):
        raise EventRefused("tenant_id", "is required: 1 to 128 characters of A-Z a-z 0-9 . _ : -")
    actor_type = raw.get("actor_type")
    if actor_type not in ACTOR_TYPES:
        raise EventRefused("actor_type", f"must be one of {', '.join(sorted(ACTOR_TYPES))}; got {actor_type!r}")
    event_type = raw.get("event_type")
    if type(event_type) is not str or event_type not in registry:
        raise EventRefused("event_type", f"{event_type!r} is not a registered event type")
    actor_id = _text(raw, "actor_id", 256)
    source = _text(raw, "source", 128)
    occurred_at = _occurred_at(raw.get("occurred_at"))
    event_id = _event_id(raw.get("event_id"))
    payload = raw.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise EventRefused("payload", f"must be a JSON object, not {type(payload).__name__}")
    _check_size(payload)
    redacted: set[str] = set()
    kept = _redact(payload, registry.rule(event_type), "", redacted)
    try:
        payload_jcs = canonical_str(kept)
    except CanonicalError as exc:
        raise EventRefused(f"payload.{exc.path}" if exc.path else "payload", exc.reason) from None
    return PreparedEvent(
        event_id, tenant_id, occurred_at, actor_type, actor_id, source, event_type, payload_jcs,
        tuple(sorted(redacted)),
    )


def _check_size(payload: dict[str, Any]) -> None:
    try:
        size = len(orjson.dumps(payload))
    except (orjson.JSONEncodeError, TypeError):
        try:
            size = len(canonical_str(payload).encode("utf-8"))
        except CanonicalError as exc:
            raise EventRefused(f"payload.{exc.path}" if exc.path else "payload", exc.reason) from None
    if size > MAX_PAYLOAD_BYTES:
        raise EventRefused("payload", f"is {size} bytes serialized; the limit is {MAX_PAYLOAD_BYTES} (64 KiB)")


def _redact(obj: dict[str, Any], rule: TypeRule, prefix: str, redacted: set[str]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in obj.items():
        if type(key) is not str:
            raise EventRefused(f"payload.{prefix}{key}", "object keys must be strings")
        path = prefix + key
        if key in rule.keep:
            cap = rule.caps.get(key, MAX_STRING_BYTES)
            if key in rule.urls and type(value) is str:
                stripped = strip_url_credentials(value)
                if stripped != value:
                    redacted.add(path + ":scrubbed")
                    value = stripped
            kept[key] = _scrub(value, path, cap, redacted)
        elif key in rule.nested and isinstance(value, dict):
            kept[key] = _redact(value, rule.nested[key], path + ".", redacted)
        else:
            redacted.add(path)
    return kept


def _scrub(value: Any, path: str, cap: int, redacted: set[str]) -> Any:
    kind = type(value)
    if kind is str:
        if _SECRET_RE.search(value):
            redacted.add(path + ":scrubbed")
            return REDACTED_SECRET
        if len(value) > cap // 4 and len(value.encode("utf-8", "surrogatepass")) > cap:
            redacted.add(path + ":truncated")
            return value.encode("utf-8", "surrogatepass")[:cap].decode("utf-8", "ignore")
        return value
    if kind is dict:
        return {k: _scrub(v, f"{path}.{k}", cap, redacted) for k, v in value.items()}
    if kind is list:
        return [_scrub(v, path, cap, redacted) for v in value]
    return value


def strip_url_credentials(url: str) -> str:
    """The URL without user-info and without query parameters whose names suggest a secret."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED_SECRET
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        safe = [(k, v) for k, v in pairs if not _SECRET_QUERY_KEYS.search(k)]
        if len(safe) != len(pairs):
            query = urlencode(safe)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
