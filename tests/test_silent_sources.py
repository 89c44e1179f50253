"""Silent sources: a steady source that stops is named by the watchdog; a source that never was steady, or
one that is in a pause it has come back from before, is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from compliance.settings import Settings
from compliance.silence import SourceRhythm, silent_sources
from compliance.timefmt import utc_text
from compliance.watchdog import judge
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.outbox import emit_batch
from tasks.watchdog import measure
from tests.conftest import sample_event

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def rhythm(source: str, active: int, median: float, longest: float, quiet: timedelta) -> SourceRhythm:
    return SourceRhythm("acme", source, active, median, longest, NOW - quiet)


def test_a_steady_source_quiet_for_many_intervals_is_silent() -> None:
    found = silent_sources([rhythm("billing", 170, 60, 120, timedelta(minutes=30))], NOW)
    assert [(s.source, round(s.quiet_seconds)) for s in found] == [("billing", 1800)]
    assert "acme/billing: quiet 30 min (usually every 1 min)" in found[0].describe()


def test_a_source_that_never_was_steady_is_not_silent() -> None:
    assert silent_sources([rhythm("admin-console", 5, 2400, 3600, timedelta(hours=10))], NOW) == []


def test_a_pause_it_has_come_back_from_before_is_not_silent() -> None:
    nightly_pause = 14 * 3600.0
    assert silent_sources([rhythm("office-app", 600, 60, nightly_pause, timedelta(hours=3))], NOW) == []
    assert len(silent_sources([rhythm("office-app", 600, 60, nightly_pause, timedelta(hours=15))], NOW)) == 1


def test_a_short_quiet_spell_is_not_silent_even_for_a_fast_source() -> None:
    assert silent_sources([rhythm("web", 2000, 60, 60, timedelta(minutes=4))], NOW) == []


def _events(source: str, tenant: str, times: list[datetime]) -> list[dict]:
    return [sample_event(i, tenant=tenant, source=source, occurred_at=utc_text(t)) for i, t in enumerate(times)]


def test_the_watchdog_names_the_source_that_stopped_and_not_the_rare_one(settings: Settings) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    minutes = [now - timedelta(minutes=m) for m in range(180, 0, -1)]
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(conn, _events("billing-worker", "acme", [t for t in minutes if t <= now - timedelta(minutes=40)]))
        emit_batch(conn, _events("web", "acme", minutes))
        emit_batch(conn, _events("web", "globex", minutes[::2]))
        emit_batch(conn, _events("admin-console", "acme", [now - timedelta(minutes=m) for m in (170, 120, 95, 60)]))
    drain_pending.fn(settings)
    figures, details = measure(settings, posture=False, now=now)
    assert figures["silent_sources"] == 1
    assert len(details["silent_sources"]) == 1 and details["silent_sources"][0].startswith("acme/billing-worker:")
    assert judge(figures)["silent_sources"].state == "breached"
    figures, _ = measure(settings, posture=False, now=now - timedelta(minutes=38))  # it had only just stopped
    assert figures["silent_sources"] == 0 and judge(figures)["silent_sources"].state == "ok"
