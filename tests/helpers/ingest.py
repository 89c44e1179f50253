"""The ingest service on a free loopback port, in a thread of the test process (real uvicorn, real HTTP)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from cli.devstack import free_port
from compliance.settings import Settings
from ingest.app import IngestConfig, create_app


@contextmanager
def running_service(settings: Settings, config: IngestConfig | None = None) -> Iterator[str]:
    """The service's base URL while the block runs."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, config), host="127.0.0.1", port=port, access_log=False, log_level="error")
    )
    thread = threading.Thread(target=server.run, name="ingest-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the ingest service did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def post(url: str, body: Any, token: str | None, content_type: str = "application/json") -> tuple[int, dict, Any]:
    """(status, headers, parsed JSON body) of one POST; ``body`` as bytes is sent as it is."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        return exc.code, dict(exc.headers), json.loads(text) if text else None


def get(url: str) -> tuple[int, Any]:
    """(status, parsed JSON body) of one GET."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
