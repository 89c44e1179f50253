"""The watchdog's figures and their thresholds (pure): what counts as trouble, and how bad.

>>> judge({"anchor_lag_seconds": 10, "outbox_depth": 0, "outbox_oldest_age_seconds": 0, "poison_rows": 0,
...        "stuck_exports": 0, "chain_tail_ok": True, "posture_ok": True})["anchor_lag_seconds"].state
'ok'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["THRESHOLDS", "Judgement", "Threshold", "alert_event", "judge", "thresholds_with"]


class Threshold(NamedTuple):
    figure: str
    limit: float | bool  # a number: breached when the figure exceeds it; True: breached when the figure is not True
    severity: str  # "warning" or "critical"
    meaning: str


THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("anchor_lag_seconds", 1800, "warning", "the oldest unanchored chained event is older than the limit"),
    Threshold("outbox_depth", 10_000, "warning", "more events than the limit wait in the outbox"),
    Threshold("outbox_oldest_age_seconds", 300, "warning", "an event has waited in the outbox longer than the limit"),
    Threshold("poison_rows", 0, "warning", "an event could not be chained and was set aside"),
    Threshold("stuck_exports", 0, "warning", "an export ran over 15 min and was marked failed"),
    Threshold("silent_sources", 0, "warning", "a source that emitted steadily has gone quiet"),
    Threshold("chain_tail_ok", True, "critical", "a recently written chain no longer verifies"),
    Threshold("posture_ok", True, "critical", "the anchor bucket is weaker than configured"),
    Threshold("anchors_ok", True, "critical", "an anchor object is missing, rewritten or unlocked in the bucket"),
    Threshold("queued_exports_oldest_age_seconds", 900, "warning", "an export has waited queued longer than the limit"),
)


def thresholds_with(overrides: Mapping[str, float]) -> tuple[Threshold, ...]:
    """THRESHOLDS with the numeric limits in ``overrides`` (by figure) replaced; an unknown figure or a limit on
    a true/false figure is refused, so that a misspelt setting cannot silently leave the default in force."""
    known = {t.figure: t for t in THRESHOLDS}
    for figure in overrides:
        if figure not in known or known[figure].limit is True:
            numeric = ", ".join(t.figure for t in THRESHOLDS if t.limit is not True)
            raise ValueError(f"no numeric watchdog figure {figure!r}; thresholds can be set for: {numeric}")
    return tuple(t._replace(limit=overrides[t.figure]) if t.figure in overrides else t for t in THRESHOLDS)


class Judgement(NamedTuple):
    figure: str
    value: Any
    limit: Any
    state: str  # ok, breached (warning), critical, unknown
    severity: str
    meaning: str

    @property
    def critical(self) -> bool:
        """Critical, or a critical figure that could not be measured (a check that did not run proves nothing)."""
        return self.state == "critical" or (self.state == "unknown" and self.severity == "critical")


def judge(figures: Mapping[str, Any], thresholds: tuple[Threshold, ...] = THRESHOLDS) -> dict[str, Judgement]:
    out = {}
    for t in thresholds:
        value = figures.get(t.figure)
        if value is None:
            state = "unknown"
        elif t.limit is True:
            state = "ok" if value is True else ("critical" if t.severity == "critical" else "breached")
        else:
            over = float(value) > float(t.limit)
            state = ("critical" if t.severity == "critical" else "breached") if over else "ok"
        out[t.figure] = Judgement(t.figure, value, t.limit, state, t.severity, t.meaning)
    return out


def alert_event(figure: str, state: str) -> str:
    """The Prefect event name the watchdog emits for a figure in a state (automations match on it): ``ok``,
    ``breached`` (warning or critical), or ``unknown`` when the figure could not be measured, which alerts as
    a breach does: a check that cannot run proves nothing."""
    suffix = {"ok": "ok", "unknown": "unknown"}.get(state, "breached")
    return f"compliance.watchdog.{figure}.{suffix}"
