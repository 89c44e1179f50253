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
- database_ceiling_events_per_s: the same batches, validated beforehand, stored by the service's own statement
  (``tasks.ingest.store_batch``) from ``--concurrency`` threads with no HTTP at all: what PostgreSQL and the
  statement allow on this machine, whatever serves HTTP in front of them; ceiling_ratio = ceiling / bare is the
  highest ratio any service could reach here;
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

import psycopg

from cli.devstack import free_port
from compliance.events import Registry, new_event_id
from compliance.ingest import Scope, parse_body, prepare_batch
from compliance.settings import Settings
from tasks.db import connect
from tasks.ingest import store_batch
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


def database_ceiling(settings: Settings, token: str, payloads: list[bytes], concurrency: int) -> float:
    """Events a second stored by the service's statement alone: the bodies parsed and validated first (not
    timed), then stored from ``concurrency`` threads, each on its own writer connection."""
    registry = Registry.default()
    batches = [prepare_batch(parse_body(body, "application/json"), registry, Scope(None, None)) for body in payloads]
    events = sum(len(b) for b in batches)
    lock = threading.Lock()
    queue = list(reversed(batches))
    conns = [connect(settings, "compliance_writer", autocommit=True) for _ in range(concurrency)]
    errors: list[str] = []

    def worker(conn: psycopg.Connection) -> None:
        while True:
            with lock:
                if not queue:
                    return
                batch = queue.pop()
            row = store_batch(conn, token, batch)
            if row is None or not row[4] or row[5] != len(batch):
                errors.append(f"batch not stored whole: {row!r}")

    try:
        for k, conn in enumerate(conns):  # warm-up: the statement is prepared on each connection after a few runs
            for body in bodies(6, 100, 40_000_000 + 1_000 * k):
                store_batch(conn, token, prepare_batch(parse_body(body, None), registry, Scope(None, None)))
        threads = [threading.Thread(target=worker, args=(conn,)) for conn in conns]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
    finally:
        for conn in conns:
            conn.close()
    if errors:
        raise RuntimeError(f"{len(errors)} batch(es) not stored, e.g. {errors[0]}")
    return events / seconds


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
        # after the service has stopped, so that it takes no CPU from the statement
        ceiling = database_ceiling(settings, token, bodies(args.events // 100, 100, 50_000_000), args.concurrency)
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
            "database_ceiling_events_per_s": round(ceiling),
            "ceiling_ratio": round(ceiling / bare_rate, 3),
            "bar_met": batched_rate / bare_rate >= 0.5 and batched_rate >= 20_000,
            "cpus": os.cpu_count(),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
