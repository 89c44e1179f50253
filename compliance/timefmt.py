"""The one timestamp form that is hashed and exported: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC (SPEC §2)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from ledger_verify.timefmt import parse_utc_text

__all__ = ["is_utc_instant", "parse_utc_text", "pg_timestamp", "utc_text"]

_SECOND_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")
# "YYYY-MM-DDTHH:MM:SS" prefixes already found real (events share seconds), each with its microseconds since
# 2000-01-01T00:00:00Z, PostgreSQL's epoch (see pg_timestamp).
_instant_seconds: dict[str, int] = {}
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def utc_text(moment: datetime) -> str:
    """An aware datetime as UTC text with exactly six fractional digits."""
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")[:26] + "Z"


def is_utc_instant(text: str) -> bool:
    """Whether ``text`` is exactly the SPEC §2 form and names a real instant. PostgreSQL takes some texts
    of that shape as another instant (second 60 and hour 24 roll over) and refuses others (month 13), so
    an outbox row whose text fails this could not be stored as it is hashed."""
    fraction = text[20:26]
    if len(text) != 27 or text[19] != "." or text[26] != "Z" or not (fraction.isascii() and fraction.isdigit()):
        return False
    second = text[:19]
    if second in _instant_seconds:
        return True
    if _SECOND_RE.fullmatch(second) is None:
        return False
    try:
        moment = datetime.fromisoformat(second + "+00:00")  # refuses month 13, day 31 of a 30-day month, 24:00, :60
    except ValueError:
        return False
    if len(_instant_seconds) >= 100_000:
        _instant_seconds.clear()
    _instant_seconds[second] = (moment - _PG_EPOCH) // _MICROSECOND
    return True


def pg_timestamp(text: str) -> int:
    """The instant that a text :func:`is_utc_instant` accepted names, as PostgreSQL's binary ``timestamptz``
    holds it: signed microseconds since 2000-01-01T00:00:00Z (ValueError when its second, not remembered any
    more, is found not to be real)."""
    base = _instant_seconds.get(text[:19])
    if base is None:
        if not is_utc_instant(text):
            raise ValueError(f"{text[:40]!r} is not a real instant in the SPEC §2 form")
        base = _instant_seconds[text[:19]]
    return base + int(text[20:26])
