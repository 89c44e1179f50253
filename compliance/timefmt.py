"""The one timestamp form that is hashed and exported: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC (SPEC §2)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["parse_utc_text", "utc_text"]


def utc_text(moment: datetime) -> str:
    """An aware datetime as UTC text with exactly six fractional digits."""
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")[:26] + "Z"


def parse_utc_text(text: str) -> datetime:
    """The inverse of :func:`utc_text` (also accepts any RFC 3339 text with offset)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment.astimezone(UTC)
