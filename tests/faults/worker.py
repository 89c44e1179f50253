"""One flow, run the way a deployment runs it, in its own process (for the fault tests to kill or starve).

    python -m tests.faults.worker drain|anchor|watchdog
    python -m tests.faults.worker drain-for SECONDS      (polling, as the scheduled deployment does)
    python -m tests.faults.worker export JOB_ID

Settings come from the environment (COMPLIANCE_*, PREFECT_API_URL), as on a worker. Prints the flow's
result as one JSON line; a flow that fails exits 1 with its traceback.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    what = sys.argv[1]
    if what == "drain":
        from flows.drain import drain_outbox

        result = drain_outbox(run_seconds=0, poll_seconds=0.2)
    elif what == "drain-for":
        from flows.drain import drain_outbox

        result = drain_outbox(run_seconds=float(sys.argv[2]), poll_seconds=0.2)
    elif what == "anchor":
        from flows.anchor import anchor

        result = anchor()
    elif what == "watchdog":
        from flows.watchdog import watchdog

        result = watchdog()
    elif what == "export":
        from flows.export import export_runner

        result = export_runner(job_id=sys.argv[2])
    else:
        raise SystemExit(f"unknown flow {what!r}: use drain, anchor, watchdog or export JOB_ID")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
