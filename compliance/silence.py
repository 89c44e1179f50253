"""Silent sources (pure): which (tenant, source) pairs that emitted steadily have gone quiet.

    >>> from datetime import datetime, timedelta, timezone
    >>> now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    >>> steady = SourceRhythm("acme", "billing", 120, 60.0, 120.0, now - timedelta(minutes=30))
    >>> [s.source for s in silent_sources([steady], now)]
    ['billing']

How it decides. The watchdog reads, for every (tenant, source), the minutes of
the look-back window (default 48 h) in which it emitted at least one event
(by ``occurred_at``), the gaps between those minutes, and its latest event.

- A source is *steady* when it emitted in at least :data:`STEADY_MIN_ACTIVE_MINUTES` distinct minutes of
  the window. Fewer is *quiet by nature* (a nightly job, a rare admin action): it never alarms.
- A steady source is *silent* when it has been quiet longer than all of: :data:`SILENT_FACTOR` times its
  median gap (its usual interval), the longest gap it showed in the window and came back from (so a
  source that pauses every night, or every hour, is judged against that pause), and
  :data:`MIN_QUIET_SECONDS` (minute buckets, clock skew and drain lag must not alarm).

A look-back window that spans the source's longest natural pause is needed for that pause to be learnt:
48 h covers nights; a source idle on weekends needs ``COMPLIANCE_SILENCE_LOOKBACK_HOURS=192``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

__all__ = [
    "MIN_QUIET_SECONDS",
    "SILENT_FACTOR",
    "STEADY_MIN_ACTIVE_MINUTES",
    "SilentSource",
    "SourceRhythm",
    "silent_sources",
]

STEADY_MIN_ACTIVE_MINUTES = 12
SILENT_FACTOR = 5
MIN_QUIET_SECONDS = 300


class SourceRhythm(NamedTuple):
    tenant_id: str
    source: str
    active_minutes: int  # distinct minutes of the window with at least one event
    median_gap_seconds: float  # between consecutive active minutes (60: every minute)
    longest_gap_seconds: float  # the longest pause it came back from, within the window
    last_seen: datetime  # its latest occurred_at (never later than now)


class SilentSource(NamedTuple):
    tenant_id: str
    source: str
    quiet_seconds: float
    usual_gap_seconds: float
    last_seen: datetime

    def describe(self) -> str:
        return (
            f"{self.tenant_id}/{self.source}: quiet {self.quiet_seconds / 60:.0f} min "
            f"(usually every {self.usual_gap_seconds / 60:.0f} min), last event {self.last_seen.isoformat()}"
        )


def silent_sources(
    rhythms: Iterable[SourceRhythm],
    now: datetime,
    *,
    factor: float = SILENT_FACTOR,
    min_active_minutes: int = STEADY_MIN_ACTIVE_MINUTES,
    min_quiet_seconds: float = MIN_QUIET_SECONDS,
) -> list[SilentSource]:
    """The steady sources that have gone quiet, longest silence first."""
    out = []
    for r in rhythms:
        if r.active_minutes < min_active_minutes:
            continue  # quiet by nature, or too new to have a rhythm
        quiet = (now - r.last_seen).total_seconds()
        if quiet > max(factor * r.median_gap_seconds, r.longest_gap_seconds, min_quiet_seconds):
            out.append(SilentSource(r.tenant_id, r.source, quiet, r.median_gap_seconds, r.last_seen))
    return sorted(out, key=lambda s: (-s.quiet_seconds, s.tenant_id, s.source))
