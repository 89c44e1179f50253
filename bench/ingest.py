"""The ingest service's throughput and latency, beside a bare FastAPI/uvicorn endpoint on the same machine.

    python bench/ingest.py [--events 100000] [--singles 5000] [--concurrency 8] [--latency-seconds 10]

Starts its own PostgreSQL cluster (as the tests do), the ingest service (`python -m ingest`) and a bare
endpoint (FastAPI on uvicorn, in its own process too) that reads each body, parses it with the same JSON
parser and discards it. Both are driven over loopback with keep-alive connections from ``--concurrency``
threads, with the same pre-built bodies (fresh event ids, so every event is really stored). Prints one
JSON line:

- batched_events_per_s: batches of 100 through the service (each committed before its 202);
- single_events_per_s: one event per request;
- bare_endpoint_events_per_s: the same batches of 100 against the bare endpoint; ratio = batched / bare;
- latency_p50_s, latency_p95_s: per request of 100 events, sent open-loop at half the batched rate;
- bar_met: ratio >= 0.5 and batched_events_per_s >= 20,000.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.devstack import free_port
from compliance.events import new_event_id
from compliance.ingest import Scope
from compliance.settings import Settings
from tasks.sources import add_source

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stack import bench_stack

REPO = Path(__file__).resolve().parent.parent

BARE_APP = """
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from compliance.jcs import loads_strict

app = FastAPI()


@app.post("/v1/events")
async def events(request: Request) -> JSONResponse:
    value = loads_strict(await request.body())
    return JSONResponse({"received": len(value) if isinstance(value, list) else 1}, status_code=202)


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}
"""


def event(i: int) -> dict:
    return {
        "event_id": new_event_id(),
        "tenant_id": f"tenant-{i % 50}",
        "occurred_at": "2026-11-22T10:00:00.000000Z",
        "actor_type": "user",
        "actor_id": f"user-{i % 997}",
        "source": "bench",
        "event_type": "auth.signin.success",
        "payload": {"userId": f"u-{i}", "method": "sso", "ip": "10.0.0.1", "userAgent": "bench/1", "extra": "x"},
    }


def bodies(n_requests: int, per_request: int, start: int) -> list[bytes]:
    out = []
    for r in range(n_requests):
        chunk = [event(start + r * per_request + k) for k in range(per_request)]
        out.append(json.dumps(chunk if per_request > 1 else chunk[0], separators=(",", ":")).encode())
    return out


@contextmanager
def process(args: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, env={**os.environ, **env}, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"{args} ended: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def drive(port: int, token: str, payloads: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    """Send every body (closed loop, ``concurrency`` keep-alive connections); (seconds, latencies)."""
    lock = threading.Lock()
    queue = list(reversed(payloads))
    latencies: list[float] = []
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        while True:
            with lock:
                if not queue:
                    break
                body = queue.pop()
            t0 = time.perf_counter()
            conn.request("POST", "/v1/events", body, headers)
            response = conn.getresponse()
            answer = response.read()
            latencies.append(time.perf_counter() - t0)
            if response.status != 202:
                errors.append(f"{response.status} {answer[:300]!r}")
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} request(s) not accepted, e.g. {errors[0]}")
    return time.perf_counter() - started, latencies


def paced(port: int, token: str, payloads: list[bytes], rate_per_s: float, concurrency: int) -> list[float]:
    """Send the bodies open-loop at ``rate_per_s`` requests a second; each request's latency, measured
    from when it was due (so a backlog counts against the service)."""
    lock = threading.Lock()
    due = [i / rate_per_s for i in range(len(payloads))]
    next_index = [0]
    latencies: list[float] = []
    start = time.perf_counter() + 0.2

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        while True:
            with lock:
                i = next_index[0]
                if i >= len(payloads):
                    break
                next_index[0] += 1
            at = start + due[i]
            delay = at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            conn.request("POST", "/v1/events", payloads[i], headers)
            response = conn.getresponse()
            response.read()
            if response.status != 202:
                raise RuntimeError(f"paced request answered {response.status}")
            latencies.append(time.perf_counter() - at)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events sent in batches of 100 (each run)")
    parser.add_argument("--singles", type=int, default=5_000, help="events sent one per request")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    args = parser.parse_args()

    with bench_stack() as stack, tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        settings = Settings(database_url=stack.database_url)
        token = add_source(settings, "bench", Scope(None, None), by="bench")
        bare_file = Path(tmp) / "bare_app.py"
        bare_file.write_text(BARE_APP)
        batched = bodies(args.events // 100, 100, 0)
        bare_bodies = bodies(args.events // 100, 100, 10_000_000)
        singles = bodies(args.singles, 1, 20_000_000)
        env = {
            "COMPLIANCE_DATABASE_URL": stack.database_url,
            # the bench drains nothing: backpressure must not stop it
            "COMPLIANCE_INGEST_MAX_OUTBOX_DEPTH": str(10 * (args.events * 3 + args.singles)),
            "PYTHONPATH": f"{REPO}{os.pathsep}{tmp}",
        }
        bare_port, ingest_port = free_port(), free_port()
        bare_cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(bare_port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        with process(bare_cmd, env, bare_port, Path(tmp) / "bare.log"):
            drive(bare_port, token, bare_bodies[:20], args.concurrency)  # warm-up
            bare_s, _ = drive(bare_port, token, bare_bodies, args.concurrency)
        ingest_cmd = [sys.executable, "-m", "ingest", "--port", str(ingest_port), "--access-log", "/dev/null"]
        with process(ingest_cmd, env, ingest_port, Path(tmp) / "ingest.log"):
            batched_s, _ = drive(ingest_port, token, batched, args.concurrency)
            single_s, _ = drive(ingest_port, token, singles, args.concurrency)
            batched_rate = args.events / batched_s
            rate = batched_rate / 2 / 100  # requests of 100 a second at half the batched rate
            n = max(20, int(rate * args.latency_seconds))
            latencies = paced(ingest_port, token, bodies(n, 100, 30_000_000), rate, args.concurrency * 2)
        bare_rate = args.events / bare_s
        result = {
            "bench": "ingest",
            "events": args.events,
            "concurrency": args.concurrency,
            "batched_events_per_s": round(batched_rate),
            "single_events_per_s": round(args.singles / single_s),
            "bare_endpoint_events_per_s": round(bare_rate),
            "ratio": round(batched_rate / bare_rate, 3),
            "latency_rate_events_per_s": round(rate * 100),
            "latency_p50_s": round(percentile(latencies, 0.5), 4),
            "latency_p95_s": round(percentile(latencies, 0.95), 4),
            "bar_met": batched_rate / bare_rate >= 0.5 and batched_rate >= 20_000,
            "cpus": os.cpu_count(),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
