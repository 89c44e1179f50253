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
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Final, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from compliance.jcs import MAX_SAFE_INTEGER, CanonicalError, canonical, canonical_str, format_number
from compliance.timefmt import is_utc_instant, utc_text

__all__ = [
    "ACTOR_TYPES",
    "LEDGER_TENANT",
    "MAX_PAYLOAD_BYTES",
    "MAX_STRING_BYTES",
    "REDACTED_SECRET",
    "EventRefused",
    "PreparedEvent",
    "Registry",
    "new_event_id",
    "kept_payload_text",
    "plainly_redacted",
    "plainness",
    "prepare_event",
    "stored_event_problem",
    "text_problem",
]

ACTOR_TYPES = frozenset({"user", "service", "agent", "system", "operator"})
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_STRING_BYTES = 4 * 1024
MAX_DEPTH = 32  # payload nesting; deeper is refused (and would exhaust recursion in every JSON library)
REDACTED_SECRET = "<REDACTED:secret>"
_SORT = orjson.OPT_SORT_KEYS
_new_tuple = tuple.__new__
_INF = float("inf")
EVENT_FIELDS = frozenset(
    {"event_id", "tenant_id", "occurred_at", "actor_type", "actor_id", "source", "event_type", "payload"}
)

LEDGER_TENANT = "ledger:platform"  # written only by the ledger itself, as are the types admin.*
LEDGER_TYPE_PREFIX = "admin."
# Unicode category Cc and the bidirectional controls: a printed value must not rewrite a terminal or hide text.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_TENANT_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
EVENT_TYPE_RE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)+")
_UUID7_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_RFC3339_RE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.(\d{1,9}))?(?:[Zz]|[+-]\d{2}:\d{2})")
# Credentials by shape: bearer tokens, JWTs, cloud access keys, common API tokens, the ledger's ingest tokens.
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
    r"|\bclg_[A-Za-z0-9_-]{32,}"  # the ledger's own ingest tokens (compliance.ingest.new_token)
)
# Every shape above holds a run of 16 token characters or the word bearer: a cheap first look.
_SECRET_HINT = re.compile(r"[A-Za-z0-9_-]{16}|[Bb][Ee][Aa][Rr][Ee][Rr]\s")
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
    redacted_fields_jcs: str  # RFC 8785 text of the sorted list


@dataclass(frozen=True)
class TypeRule:
    keep: frozenset[str]  # top-level keys kept whole
    nested: Mapping[str, TypeRule]  # top-level keys of which only some sub-keys are kept
    caps: Mapping[str, int]
    urls: frozenset[str]

    @classmethod
    def from_spec(cls, keep: list[str], caps: Mapping[str, int], urls: list[str]) -> TypeRule:
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
            if not EVENT_TYPE_RE.fullmatch(name):
                raise ValueError(f"event type {name!r} is not dotted lower-case (e.g. auth.signin.success)")
            self._rules[name] = TypeRule.from_spec(
                list(spec.get("keep", [])), dict(spec.get("caps", {})), list(spec.get("urls", []))
            )

    @classmethod
    def default(cls) -> Registry:
        """The packaged registry, plus the entries of COMPLIANCE_EVENT_TYPES_FILE when that is set."""
        return cls(registry_data())

    @property
    def rules(self) -> Mapping[str, TypeRule]:
        return self._rules

    def rule(self, name: str) -> TypeRule | None:
        return self._rules.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._rules

    def names(self) -> list[str]:
        return sorted(self._rules)


def registry_data() -> dict[str, Any]:
    """The registry as data: the packaged types plus those of COMPLIANCE_EVENT_TYPES_FILE."""
    text = resources.files("compliance.data").joinpath("event_types.json").read_text("utf-8")
    types = dict(json.loads(text)["types"])
    extra = os.environ.get("COMPLIANCE_EVENT_TYPES_FILE")
    if extra:
        with open(extra, encoding="utf-8") as fh:
            types.update(json.load(fh)["types"])
    return types


def new_event_id() -> str:
    """A fresh UUID v7 (RFC 9562): 48-bit millisecond time, version 7, 74 random bits from the OS CSPRNG."""
    global _random_pool, _random_at, _last_ms, _ms_prefix
    if _random_at + 20 > len(_random_pool):  # 20 hex characters per id
        _random_pool, _random_at = os.urandom(10 * 4096).hex(), 0
    r = _random_pool[_random_at : _random_at + 20]
    _random_at += 20
    ms = time.time_ns() // 1_000_000
    if ms != _last_ms:  # many ids share a millisecond: its hex form is made once
        h = "%012x" % (ms & 0xFFFFFFFFFFFF)
        _last_ms, _ms_prefix = ms, f"{h[:8]}-{h[8:]}-7"
    return f"{_ms_prefix}{r[:3]}-{_VARIANT[r[3]]}{r[4:7]}-{r[7:19]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 9562 variant bits 10xx
_random_pool = ""
_random_at = 0
# tenant ids already found valid (a few thousand tenants emit most events); cleared when it grows large
_valid_tenants: set[str] = set()
_last_ms = -1
_ms_prefix = ""


def _text(value: Any, field: str, max_chars: int) -> str:
    if type(value) is str and 0 < len(value) <= max_chars and value.isascii() and value.isprintable():
        return value  # the common case, in one look
    if value is None:
        raise EventRefused(field, "is required")
    if type(value) is not str:
        raise EventRefused(field, f"must be a string, not {type(value).__name__}")
    if not 1 <= len(value) <= max_chars:
        raise EventRefused(field, f"must be 1 to {max_chars} characters, got {len(value)}")
    reason = text_problem(value)
    if reason is not None:
        raise EventRefused(field, reason)
    if _has_surrogate(value):
        raise EventRefused(field, "must be valid Unicode (it holds a lone surrogate)")
    return value


def text_problem(value: str) -> str | None:
    """Why a text field is refused for the characters it holds (Unicode Cc, bidirectional controls), or None.
    The SQL emit function and the drain give the same reason, word for word."""
    if value.isascii() and value.isprintable():
        return None
    found = _CONTROL_RE.search(value)
    if found is None:
        return None
    return f"holds the control or bidirectional character U+{ord(found.group()):04X}; remove it"


def reserved_problem(tenant_id: str, event_type: str) -> tuple[str, str] | None:
    """(field, reason) when an event names what only the ledger itself writes, else None."""
    if tenant_id == LEDGER_TENANT:
        return "tenant_id", f"{LEDGER_TENANT} is written only by the ledger itself; use your own tenant id"
    if event_type.startswith(LEDGER_TYPE_PREFIX):
        return "event_type", f"{LEDGER_TYPE_PREFIX}* types are written only by the ledger itself"
    return None


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
    if is_utc_instant(value):  # already the stored form, naming a real date and time
        return value
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
    lowered: str = str(value).lower()
    if not _UUID7_RE.fullmatch(lowered):
        raise EventRefused("event_id", f"{value[:64]!r} is not a UUID v7 (xxxxxxxx-xxxx-7xxx-[89ab]xxx-xxxxxxxxxxxx)")
    return lowered


def prepare_event(raw: Mapping[str, Any], registry: Registry, ledger: bool = False) -> PreparedEvent:
    """Validate and redact one event as handed over by a caller. Raises :class:`EventRefused`.

    The tenant ``ledger:platform`` and the types ``admin.*`` are refused unless ``ledger`` is true (the
    ledger's own events); the drain chains those only when the outbox row was written by a ledger role."""
    if type(raw) is not dict:
        if not isinstance(raw, Mapping):
            raise EventRefused("event", "must be an object")
        raw = dict(raw)
    fields_in: dict[str, Any] = raw  # typed as a dict, the lookups below compile to direct dict access
    if not EVENT_FIELDS.issuperset(fields_in):
        unknown = fields_in.keys() - EVENT_FIELDS
        raise EventRefused(sorted(unknown)[0], f"is not an event field; allowed: {', '.join(sorted(EVENT_FIELDS))}")
    tenant_id = fields_in.get("tenant_id")
    if type(tenant_id) is not str or tenant_id not in _valid_tenants:
        if type(tenant_id) is not str or not _TENANT_RE.fullmatch(tenant_id):
            raise EventRefused("tenant_id", "is required: 1 to 128 characters of A-Z a-z 0-9 . _ : -")
        if len(_valid_tenants) >= 65_536:
            _valid_tenants.clear()
        _valid_tenants.add(tenant_id)
    actor_type = fields_in.get("actor_type")
    if type(actor_type) is not str or actor_type not in ACTOR_TYPES:
        raise EventRefused("actor_type", f"must be one of {', '.join(sorted(ACTOR_TYPES))}; got {actor_type!r}")
    event_type: Any = fields_in.get("event_type")
    rule = registry.rule(event_type) if type(event_type) is str else None
    if rule is None:
        raise EventRefused("event_type", f"{event_type!r} is not a registered event type")
    if not ledger:
        reserved = reserved_problem(tenant_id, event_type)
        if reserved is not None:
            raise EventRefused(*reserved)
    actor_id = _text(fields_in.get("actor_id"), "actor_id", 256)
    source = _text(fields_in.get("source"), "source", 128)
    occurred_at = _occurred_at(fields_in.get("occurred_at"))
    event_id = _event_id(fields_in.get("event_id"))
    payload = fields_in.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise EventRefused("payload", f"must be a JSON object, not {type(payload).__name__}")
    redacted: set[str] = set()
    walk = _Walk(redacted)
    kept = walk.redact(payload, rule, "")
    try:
        # orjson's sorted output is RFC 8785 unless a key lies outside the BMP (RFC 8785 sorts by UTF-16).
        payload_bytes = canonical(_plain(kept, walk.floats)) if walk.exact_needed else orjson.dumps(kept, option=_SORT)
    except (CanonicalError, orjson.JSONEncodeError) as exc:
        path = getattr(exc, "path", "")
        reason = getattr(exc, "reason", "string is not valid Unicode (lone surrogate)")
        raise EventRefused(f"payload.{path}" if path else "payload", reason) from None
    if redacted or walk.floats or walk.exact_needed:
        _check_size(payload)  # the kept payload differs from the one sent, whose size the limit is about
    elif len(payload_bytes) > MAX_PAYLOAD_BYTES:
        _refuse_size(len(payload_bytes))  # nothing dropped or changed: the same members, the same length
    payload_jcs = payload_bytes.decode("utf-8")
    fields = tuple(sorted(redacted)) if redacted else ()
    # tuple.__new__ directly: NamedTuple's generated __new__ is a Python call on the hot path.
    return _new_tuple(
        PreparedEvent,
        (
            event_id,
            tenant_id,
            occurred_at,
            actor_type,
            actor_id,
            source,
            event_type,
            payload_jcs,
            fields,
            orjson.dumps(fields).decode("utf-8") if fields else "[]",
        ),
    )


def stored_event_problem(
    tenant_id: str,
    actor_id: str,
    source: str,
    event_type: str,
    payload: dict[str, Any],
    rule: TypeRule | None,
    ledger: bool,
) -> str | None:
    """Why an outbox row breaks a SPEC §1 rule that emit applies, as ``"field: reason"``, or None.

    This is the server side of the contract: a row inserted past emit (by hand, by another runtime) is
    checked again before it is chained. ``payload`` is the stored payload, parsed; it must already be what
    redaction keeps (redacting it again drops, scrubs and truncates nothing). ``ledger`` says the row was written by one of the ledger's own roles."""
    if rule is None:
        return f"event_type: {event_type!r} is not a registered event type"
    if not ledger:
        reserved = reserved_problem(tenant_id, event_type)
        if reserved is not None:
            return f"{reserved[0]}: {reserved[1]}"
    reason = text_problem(actor_id)
    if reason is not None:
        return f"actor_id: {reason}"
    reason = text_problem(source)
    if reason is not None:
        return f"source: {reason}"
    if plainly_redacted(payload, rule):
        return None
    walk = _Walk(set())
    try:
        walk.redact(payload, rule, "")
    except EventRefused as exc:
        return str(exc)
    if not walk.redacted:
        return None
    found = sorted(walk.redacted)[0]
    if found.endswith(":scrubbed"):
        return f"payload.{found[:-9]}: holds a credential that was not redacted"
    if found.endswith(":truncated"):
        return f"payload.{found[:-10]}: is longer than its cap and was not truncated"
    return f"payload.{found}: is not on the allow-list of {event_type}"


def plainly_redacted(payload: dict[str, Any], rule: TypeRule) -> bool:
    """True when redacting ``payload`` again would surely change nothing, found without building anything:
    only kept keys, holding scalars, short strings and no longer string with a hint of a credential's shape.
    False sends the payload to the exact walk (:class:`_Walk`), which names the problem if any."""
    return plainness(payload, rule) != NOT_PLAIN


NOT_PLAIN: Final = 0  # plainness(): redaction might change the payload
PLAIN: Final = 1  # it surely would not, and the payload holds no float
PLAIN_WITH_FLOATS: Final = 2  # it surely would not; the payload holds a float


def plainness(payload: dict[str, Any], rule: TypeRule) -> int:
    """:func:`plainly_redacted`'s answer in one pass that also tells whether the payload holds a float (every
    integer of a plain payload is within +-(2**53 - 1)): :data:`NOT_PLAIN`, :data:`PLAIN` or
    :data:`PLAIN_WITH_FLOATS`."""
    if rule.nested or rule.caps:
        return NOT_PLAIN
    keep = rule.keep
    urls = rule.urls
    found = PLAIN
    for key, value in payload.items():
        if key not in keep:
            return NOT_PLAIN
        if urls and key in urls and type(value) is str and ("@" in value or "?" in value):
            return NOT_PLAIN
        plain = _plain_value(value, 1)
        if plain == NOT_PLAIN:
            return NOT_PLAIN
        if plain == PLAIN_WITH_FLOATS:
            found = PLAIN_WITH_FLOATS
    return found


def _plain_value(value: Any, depth: int) -> int:
    kind = type(value)
    if kind is str:
        text: str = value
        if len(text) < 15 or text in _plain_strings:
            return PLAIN  # shorter than any credential shape and than any cap, or seen plain already
        if len(text) * 4 > MAX_STRING_BYTES or _SECRET_HINT.search(text):
            return NOT_PLAIN
        if len(text) <= 64:
            if len(_plain_strings) >= 65_536:
                _plain_strings.clear()
            _plain_strings.add(text)
        return PLAIN
    if kind is int:
        number: int = value
        return PLAIN if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER else NOT_PLAIN
    if kind is float:
        return PLAIN_WITH_FLOATS
    if kind is dict or kind is list:
        if depth >= MAX_DEPTH:
            return NOT_PLAIN
        found = PLAIN
        items = value.values() if kind is dict else value
        for item in items:
            plain = _plain_value(item, depth + 1)
            if plain == NOT_PLAIN:
                return NOT_PLAIN
            if plain == PLAIN_WITH_FLOATS:
                found = PLAIN_WITH_FLOATS
        return found
    return PLAIN


# Strings of 15 to 64 characters already found free of any hint of a credential (user agents, e-mail
# addresses and the like recur from event to event); cleared when it grows large.
_plain_strings: set[str] = set()


WITHHELD_PAYLOAD = '"<withheld: not a redactable JSON object of a registered type>"'


def kept_payload_text(payload: str, rule: TypeRule | None) -> str:
    """What redaction keeps of a stored payload text, as JSON (the form a quarantined row is kept in, so that
    a payload written past emit never stores what redaction drops); :data:`WITHHELD_PAYLOAD` when the text is
    not a JSON object or its type is not registered."""
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return WITHHELD_PAYLOAD
    if rule is None or type(parsed) is not dict:
        return WITHHELD_PAYLOAD
    try:
        kept = _Walk(set()).redact(parsed, rule, "")
        return orjson.dumps(kept, option=_SORT).decode("utf-8")
    except (EventRefused, orjson.JSONEncodeError, TypeError):
        return WITHHELD_PAYLOAD


def _depth_ok(value: Any, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        return False
    if type(value) is dict:
        return all(_depth_ok(v, depth + 1) for v in value.values())
    if type(value) is list or type(value) is tuple:
        return all(_depth_ok(v, depth + 1) for v in value)
    return True


def _check_size(payload: dict[str, Any]) -> None:
    try:
        size = len(orjson.dumps(payload))
    except (orjson.JSONEncodeError, TypeError):
        if not _depth_ok(payload):
            raise EventRefused("payload", f"is nested deeper than {MAX_DEPTH} levels") from None
        try:
            size = len(canonical_str(payload).encode("utf-8"))
        except CanonicalError as exc:
            raise EventRefused(f"payload.{exc.path}" if exc.path else "payload", exc.reason) from None
    if size > MAX_PAYLOAD_BYTES:
        _refuse_size(size)


def _refuse_size(size: int) -> None:
    raise EventRefused("payload", f"is {size} bytes serialized; the limit is {MAX_PAYLOAD_BYTES} (64 KiB)")


def _plain(value: Any, floats: dict[int, float]) -> Any:
    """Fragments back to the floats they stand for, for the exact serializer."""
    kind = type(value)
    if kind is orjson.Fragment:
        return floats[id(value)]
    if kind is dict:
        return {k: _plain(v, floats) for k, v in value.items()}
    if kind is list:
        return [_plain(v, floats) for v in value]
    return value


class _Walk:
    """One pass over a payload: allow-list, URL credentials, secret scrubbing, caps, number checks."""

    __slots__ = ("exact_needed", "floats", "redacted")

    def __init__(self, redacted: set[str]) -> None:
        self.redacted = redacted
        self.exact_needed = False
        self.floats: dict[int, float] = {}  # id(Fragment) -> the float it stands for (kept alive by the payload)

    def redact(self, obj: dict[str, Any], rule: TypeRule, prefix: str) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        keep = rule.keep
        for key, value in obj.items():
            if type(key) is not str:
                raise EventRefused(f"payload.{prefix}{key}", "object keys must be strings")
            if key in keep:
                if rule.urls and key in rule.urls and type(value) is str:
                    stripped = strip_url_credentials(value)
                    if stripped != value:
                        self.redacted.add(prefix + key + ":scrubbed")
                        value = stripped
                kind = type(value)
                if (kind is str and len(value) < 15 and not rule.caps) or value is None or kind is bool:
                    # shorter than any credential shape and than the 4 KiB cap: nothing to scrub or truncate
                    kept[key] = value
                else:
                    kept[key] = self.scrub(
                        value, prefix + key, rule.caps.get(key, MAX_STRING_BYTES) if rule.caps else MAX_STRING_BYTES
                    )
            elif key in rule.nested and isinstance(value, dict):
                kept[key] = self.redact(value, rule.nested[key], prefix + key + ".")
            else:
                self.redacted.add(prefix + key)
        return kept

    def scrub(self, value: Any, path: str, cap: int, depth: int = 1) -> Any:
        kind = type(value)
        if kind is str:
            n = len(value)
            # The shortest credential shape is 15 characters long.
            if n >= 15 and _SECRET_HINT.search(value) and _SECRET_RE.search(value):
                self.redacted.add(path + ":scrubbed")
                return REDACTED_SECRET
            if n > cap // 4 and len(value.encode("utf-8", "surrogatepass")) > cap:
                self.redacted.add(path + ":truncated")
                return value.encode("utf-8", "surrogatepass")[:cap].decode("utf-8", "ignore")
            return value
        if kind is int:
            if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                raise EventRefused(f"payload.{path}", f"integer {value} is outside +-(2**53 - 1); send it as a string")
            return value
        if depth > MAX_DEPTH and (kind is dict or kind is list or kind is tuple):
            raise EventRefused("payload", f"is nested deeper than {MAX_DEPTH} levels")
        if kind is dict:
            out = {}
            for k, v in value.items():
                if type(k) is not str:
                    raise EventRefused(f"payload.{path}", f"object key {k!r} is not a string")
                if k and max(k) > "\uffff":
                    self.exact_needed = True
                if type(v) is str and len(v) < 15 and cap >= 60:
                    out[k] = v  # shorter than any credential, and than the cap even at 4 bytes a character
                else:
                    out[k] = self.scrub(v, f"{path}.{k}", cap, depth + 1)
            return out
        if kind is list or kind is tuple:
            return [
                v if type(v) is str and len(v) < 15 and cap >= 60 else self.scrub(v, path, cap, depth + 1)
                for v in value
            ]
        if kind is float:
            if value != value or value in (_INF, -_INF):
                raise EventRefused(f"payload.{path}", f"{value} is not a JSON number")
            # orjson writes a Fragment verbatim: the number in its RFC 8785 (ECMAScript) form.
            fragment = orjson.Fragment(format_number(value))
            self.floats[id(fragment)] = value
            return fragment
        if value is None or kind is bool:
            return value
        raise EventRefused(f"payload.{path}", f"{kind.__name__} is not a JSON type")


def strip_url_credentials(url: str) -> str:
    """The URL without user-info and without query parameters whose names suggest a secret."""
    if "@" not in url and "?" not in url:
        return url
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
