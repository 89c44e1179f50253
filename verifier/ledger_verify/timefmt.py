"""The timestamp form that is hashed and exported: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC (SPEC §2)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["parse_utc_text"]


def parse_utc_text(text: str) -> datetime:
    """A SPEC §2 timestamp (or any RFC 3339 text with offset) as an aware UTC datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment.astimezone(UTC)
