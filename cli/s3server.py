"""The local S3 server (moto) with its objects kept on disk, so that they survive `compliance dev down` / `dev up`
and a restart of the machine, as the database's rows do (docs/operator-runbook.md, Configuration).

    python -m cli.s3server --port 15433 --state .dev/s3/state.pickle

moto keeps S3 in memory and has no persistence of its own (its recorder replays requests, which would give
every object a new version id and every lock a retain-until date counted from the replay). This server is
moto's own WSGI application with a snapshot of moto's S3 state: loaded at start, written after every change
(a burst of changes makes one snapshot) and once more when the server is told to stop (SIGTERM, SIGINT).
The snapshot holds moto's objects themselves, so every bucket keeps its configuration (versioning, the
Object Lock default, policies) and every object version its bytes, version id, last-modified time, Object
Lock mode, retain-until date and legal hold, exactly. It is written to a temporary file and renamed over the
old one, so a crash while writing leaves the previous snapshot whole.
"""

from __future__ import annotations

import argparse
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

SNAPSHOT_FORMAT = 1
# Requests that cannot change state; every other method (PUT, POST, DELETE, including moto's own reset) may.
READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SnapshotError(RuntimeError):
    """The S3 snapshot on disk cannot be loaded; the message says what to do."""


def _moto_version() -> str:
    from importlib.metadata import version

    return version("moto")


def _rebuild_versioned_store(cls: type, lists: list[tuple[str, list[Any]]]) -> Any:
    store = cls()
    for key, versions in lists:
        store.setlist(key, versions)
    return store


class _StatePickler(pickle.Pickler):
    """moto's versioned key store is a dict whose ``items()`` gives only each key's newest version: pickled as
    a plain dict it would drop every older version, so it is written as its full lists instead."""

    def reducer_override(self, obj: Any) -> Any:
        from moto.s3.utils import _VersionedKeyStore

        if isinstance(obj, _VersionedKeyStore):
            return _rebuild_versioned_store, (type(obj), list(obj.iterlists()))
        return NotImplemented


def _s3_state() -> dict[str, Any]:
    from moto.s3.models import s3_backends

    backends = {
        (account_id, region): backend
        for account_id, per_account in dict.items(s3_backends)
        for region, backend in dict.items(per_account)
    }
    return {
        "format": SNAPSHOT_FORMAT,
        "moto": _moto_version(),
        "backends": backends,
        "bucket_accounts": dict(s3_backends.bucket_accounts),
    }


def save_snapshot(path: Path) -> None:
    """Write moto's S3 state to ``path`` atomically (temporary file, fsync, rename, fsync of the directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        _StatePickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(_s3_state())
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_snapshot(path: Path) -> int:
    """Put the S3 state saved in ``path`` into this process's moto; returns the number of buckets restored."""
    from moto.s3.models import s3_backends

    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError) as exc:
        raise SnapshotError(
            f"the local S3 snapshot {path} cannot be read ({exc}); it was written by another version of moto or "
            "is damaged. Install the moto it names, or `compliance dev down --purge` to start with empty buckets"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{path} is not a local S3 snapshot of format {SNAPSHOT_FORMAT}")
    if state["moto"] != _moto_version():
        raise SnapshotError(
            f"the local S3 snapshot {path} was written by moto {state['moto']} and this is moto {_moto_version()}: "
            f"install moto=={state['moto']} to read it, or `compliance dev down --purge` to start with empty buckets"
        )
    buckets = 0
    for (account_id, region), backend in state["backends"].items():
        dict.__setitem__(s3_backends[account_id], region, backend)
        buckets += len(backend.buckets)
    s3_backends.bucket_accounts.update(state["bucket_accounts"])
    return buckets


class PersistentApp:
    """moto's WSGI application, with a snapshot written after the requests that change state.

    Changing requests run one at a time and never while a snapshot is being taken, so a snapshot never sees
    half a change; reads run alongside both."""

    def __init__(self, app: Callable[..., Iterable[bytes]], state: Path) -> None:
        self.app = app
        self.state = state
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.stopping = threading.Event()
        self.writer = threading.Thread(target=self._write_when_changed, name="s3-snapshot", daemon=True)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET") in READ_ONLY_METHODS:
            return self.app(environ, start_response)
        with self.lock:
            response = self.app(environ, start_response)
        self.changed.set()
        return response

    def save(self) -> None:
        with self.lock:
            self.changed.clear()
            save_snapshot(self.state)

    def _write_when_changed(self) -> None:
        while not self.stopping.is_set():
            if self.changed.wait(timeout=1):
                # A short pause lets a burst of changes (an anchor's objects, an export's parts) share a snapshot.
                self.stopping.wait(0.2)
                self.save()

    def start(self) -> None:
        self.writer.start()

    def stop(self) -> None:
        """Stop writing in the background and write the final snapshot."""
        self.stopping.set()
        self.writer.join()
        self.save()


def serve(host: str, port: int, state: Path) -> int:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    if state.exists():
        buckets = load_snapshot(state)
        print(f"restored {buckets} bucket(s) from {state}", flush=True)
    app = PersistentApp(DomainDispatcherApplication(create_backend_app), state)
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    app.start()
    threading.Thread(target=server.serve_forever, name="s3-http", daemon=True).start()
    print(f"S3 server (moto {_moto_version()}) on http://{host}:{port}, objects kept in {state}", flush=True)
    while not stop.wait(1):
        pass
    server.shutdown()
    app.stop()
    print(f"stopped; objects saved to {state}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True, help="the snapshot file (created on the first change)")
    args = parser.parse_args(argv)
    try:
        return serve(args.host, args.port, args.state.resolve())
    except SnapshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
