"""`compliance health`: the latest watchdog figures against their thresholds, the last run of each
deployment, stuck exports and schema drift, on one screen."""

from __future__ import annotations

import os
from typing import Any

from compliance.settings import Settings
from compliance.watchdog import judge, thresholds_with
from tasks.db import connect
from tasks.drain import outbox_pending
from tasks.schema import drift_problems, drift_report

FLOWS = ("drain-outbox", "anchor", "watchdog", "export-runner", "migration-drift", "events-query")
STALE_SECONDS = 600


def collect(settings: Settings) -> dict[str, Any]:
    with connect(settings, "compliance_reader", autocommit=True) as conn:
        row = conn.execute(
            "SELECT run_at, figures FROM compliance.watchdog_runs ORDER BY run_at DESC LIMIT 1"
        ).fetchone()
        live = conn.execute(
            "SELECT (SELECT count(*) FROM compliance.outbox_poison), (SELECT count(*) FROM compliance.export_jobs "
            "WHERE status = 'running' AND started_at < now() - interval '15 minutes'), clock_timestamp()"
        ).fetchone()
        depth, oldest = outbox_pending(conn)
        drift = [r._asdict() for r in drift_problems(drift_report(conn))]
        poison_reasons = conn.execute(
            "SELECT error, count(*), max(poisoned_at) FROM compliance.outbox_poison GROUP BY error "
            "ORDER BY max(poisoned_at) DESC LIMIT 5"
        ).fetchall()
    now = live[2]
    figures = dict(row[1]) if row else {}
    # The outbox figures are read live (cheap); the rest come from the watchdog's last run.
    figures.update(
        {
            "outbox_depth": depth,
            "poison_rows": live[0],
            "outbox_oldest_age_seconds": 0 if oldest is None else round((now - oldest).total_seconds(), 1),
        }
    )
    judgements = judge(figures, thresholds_with(settings.alert_thresholds))
    watchdog_age = None if row is None else (now - row[0]).total_seconds()
    # A figure the watchdog recorded as None could not be measured: critical if its threshold is. A figure it
    # never recorded (no run yet) is reported by the watchdog's age below instead.
    critical = [f"{j.figure} is {j.state}" for j in judgements.values() if j.critical and j.figure in figures]
    if drift:
        critical.append("schema drift")
    if watchdog_age is not None and watchdog_age > STALE_SECONDS:
        critical.append("no watchdog run in the last 10 minutes")
    api_auth = prefect_api_auth(settings)
    if api_auth["state"] == "open":
        critical.append(api_auth["detail"])
    return {
        "at": now.isoformat(),
        "watchdog_last_run_age_seconds": watchdog_age,
        "figures": [{**j._asdict()} for j in judgements.values()],
        "stuck_exports_now": live[1],
        "drift": drift,
        "poison_reasons": [{"reason": r[0], "rows": r[1], "last_at": r[2].isoformat()} for r in poison_reasons],
        "prefect_api_auth": api_auth,
        "last_runs": _last_runs(),
        "critical": critical,
    }


def prefect_api_auth(settings: Settings) -> dict[str, str]:
    """Whether the Prefect API lets in a caller without credentials (``state`` open, closed, unknown or not
    checked). Outside dev an open API is critical: anyone who reaches it can start deployments, read every
    run's parameters and results, and read Secret blocks."""
    url = os.environ.get("PREFECT_API_URL")
    if settings.stage == "dev":
        return {"state": "not checked", "detail": "the dev stack's Prefect API runs without authentication"}
    if not url:
        return {"state": "unknown", "detail": "PREFECT_API_URL is not set"}
    from tasks.prefect_api import probe_without_credentials

    status = probe_without_credentials(url)
    if status is None:
        return {"state": "unknown", "detail": f"the Prefect API at {url} did not answer"}
    if status in (401, 403):
        return {"state": "closed", "detail": f"the Prefect API refuses a caller without credentials (HTTP {status})"}
    if not 200 <= status < 300:
        return {"state": "unknown", "detail": f"the Prefect API at {url} answered HTTP {status} to the probe"}
    return {
        "state": "open",
        "detail": f"the Prefect API at {url} answers without authentication (HTTP {status}); set "
        "PREFECT_SERVER_API_AUTH_STRING on the server and PREFECT_API_AUTH_STRING on every client, or use "
        "Prefect Cloud (docs/operator-runbook.md)",
    }


def _last_runs() -> dict[str, Any]:
    if not os.environ.get("PREFECT_API_URL"):
        return {"note": "PREFECT_API_URL is not set: last runs unknown"}
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowFilter,
            FlowFilterName,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateName,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        # The API sorts by start time or, for a run not started, its expected start: unfiltered, the next
        # scheduled run came first. A run that has started (running, finished, crashed) is what is wanted.
        started = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=[StateType.SCHEDULED, StateType.PENDING]))
        )
        late = FlowRunFilter(state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Late"])))
        out: dict[str, Any] = {}
        with get_client(sync_client=True) as client:
            for name in FLOWS:
                flow = FlowFilter(name=FlowFilterName(any_=[name]))
                runs = client.read_flow_runs(
                    flow_filter=flow, flow_run_filter=started, sort=FlowRunSort.START_TIME_DESC, limit=1
                )
                late_now = client.count_flow_runs(flow_filter=flow, flow_run_filter=late)
                out[name] = (
                    None
                    if not runs and not late_now
                    else {
                        "state": runs[0].state_name if runs else None,
                        "start": runs[0].start_time.isoformat() if runs and runs[0].start_time else None,
                        "late": late_now,
                    }
                )
        return out
    except Exception as exc:
        return {"note": f"could not read the Prefect API: {exc}"}


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="compliance ledger health", title_justify="left")
    for col in ("figure", "value", "alert when", "state"):
        table.add_column(col)
    colour = {"ok": "green", "breached": "yellow", "critical": "bold red", "unknown": "dim"}
    for f in report["figures"]:
        limit = "not true" if f["limit"] is True else f"> {f['limit']}"
        table.add_row(f["figure"], str(f["value"]), limit, f"[{colour[f['state']]}]{f['state']}[/]")
    console.print(table)
    age = report["watchdog_last_run_age_seconds"]
    console.print(
        f"last watchdog run: {'never' if age is None else f'{age:.0f} s ago'}; "
        f"exports running over 15 min now: {report['stuck_exports_now']}"
    )
    runs = Table(title="last run per deployment", title_justify="left")
    runs.add_column("flow")
    runs.add_column("state")
    runs.add_column("started")
    runs.add_column("late now")
    last = report["last_runs"]
    if "note" in last:
        console.print(last["note"])
    else:
        for name, run in last.items():
            run = run or {}
            late = run.get("late") or 0
            runs.add_row(
                name, run.get("state") or "-", run.get("start") or "-", f"[bold red]{late}[/]" if late else "0"
            )
        console.print(runs)
    from rich.markup import escape

    for p in report["poison_reasons"]:
        console.print(f"[yellow]quarantined[/] {p['rows']} row(s), last at {p['last_at']}: {escape(p['reason'])}")
    auth = report["prefect_api_auth"]
    console.print(f"Prefect API authentication: {auth['state']} ({escape(auth['detail'])})")
    drift = report["drift"]
    console.print(
        "schema: all declared objects APPLIED"
        if not drift
        else "schema: " + "; ".join(f"{d['status']} {d['kind']} {d['name']}" for d in drift)
    )
    if report["critical"]:
        console.print("[bold red]CRITICAL: " + "; ".join(report["critical"]) + "[/]")
    else:
        console.print("[green]nothing critical[/]")
