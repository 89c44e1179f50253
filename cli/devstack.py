"""The local stack (docs/operator-runbook.md, Configuration): PostgreSQL 15, the moto S3 server, the Prefect server.

Everything lives under one project-local directory (``COMPLIANCE_DEV_DIR``,
default ``.dev/`` at the repository root): the database cluster, the S3
server's snapshot of its buckets and objects (``s3/state.pickle``, see
cli/s3server.py), logs, the Prefect home and ``stack.json`` (ports and
process ids). ``up`` reuses what is
already running, ``down`` stops it and keeps the data, ``down --purge``
deletes it. PostgreSQL refuses to run as root, so as root the cluster belongs
to the ``postgres`` user.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PG_BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
# Below the kernel's ephemeral range (32768-60999 by default): a port in it can be taken by any outgoing connection
# between the moment it is found free and the moment a slow-starting server binds it.
DEFAULT_PORTS = {"postgres": 15432, "s3": 15433, "prefect": 14200, "ingest": 8787}
DEV_SHELL_SOURCE = "dev-shell"  # the ingest source whose token `dev up` prints (every tenant, every type)
DEV_ACCESS_KEY = "compliance-dev"  # moto accepts any credentials; these are not secrets
ADMIN_USER = "compliance_admin"
DATABASE = "compliance"


class StackError(RuntimeError):
    """The local stack could not be started; the message says what is missing."""


def dev_dir() -> Path:
    return Path(os.environ.get("COMPLIANCE_DEV_DIR") or REPO / ".dev").resolve()


def pg_bin(name: str) -> str:
    for d in PG_BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    raise StackError(
        f"PostgreSQL server binary {name!r} not found under /usr/lib/postgresql/*/bin; "
        "install it with `apt-get install -y postgresql`"
    )


def free_port(preferred: int | None = None) -> int:
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise StackError("no free TCP port on 127.0.0.1")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    """Wait until ``process`` listens on ``port``; a StackError naming its log if it exits or never does."""
    deadline = time.monotonic() + seconds
    while not port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise StackError(f"the process on port {port} did not start; see {log}")
        time.sleep(0.1)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:  # a child of this process that has exited is a zombie until reaped, and a zombie is not running
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reachable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether a process of ``uid``/``gid`` can traverse every directory down to ``path`` (or to where it
    would be created)."""
    path = path.resolve()
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except FileNotFoundError:
            return True  # created below a reachable directory: the code creating it sets its owner
        if st.st_uid == uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


def _as_postgres_user() -> tuple[list[str], int | None, int | None]:
    """Command prefix and uid/gid to run PostgreSQL binaries as a non-root user."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise StackError("running as root needs a `postgres` user; install the postgresql package") from None
    return [], pw.pw_uid, pw.pw_gid


def _run_pg(args: list[str], log: Path | None = None) -> None:
    _, uid, gid = _as_postgres_user()

    def demote() -> None:
        if gid is not None and uid is not None:
            os.setgid(gid)
            os.setuid(uid)

    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        result = subprocess.run(
            args,
            preexec_fn=demote,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
            cwd="/",
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        raise StackError(f"{Path(args[0]).name} failed (exit {result.returncode}):\n{tail}")


@dataclass
class Postgres:
    """A PostgreSQL cluster of our own in ``data_dir``, listening on 127.0.0.1:``port``."""

    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://{ADMIN_USER}@127.0.0.1:{self.port}/{DATABASE}"

    def admin_url(self, database: str = DATABASE) -> str:
        return f"postgresql://{ADMIN_USER}@127.0.0.1:{self.port}/{database}"

    def running(self) -> bool:
        pidfile = self.data_dir / "postmaster.pid"
        if not pidfile.exists():
            return False
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except ValueError:
            return False
        return pid_alive(pid) and port_open(self.port)

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _, uid, gid = _as_postgres_user()
        if uid is not None:
            os.chown(self.data_dir, uid, gid)  # type: ignore[arg-type]
            os.chown(self.data_dir.parent, uid, gid)  # type: ignore[arg-type]
        log = self.data_dir.parent / "initdb.log"
        _run_pg(
            [
                pg_bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                ADMIN_USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            log,
        )
        # The owner logs in without a password only over loopback; the three roles need theirs.
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            f"local all all trust\nhost all {ADMIN_USER} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n"
        )
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
                "max_connections = 200\nshared_buffers = 256MB\nwal_level = minimal\nmax_wal_senders = 0\n"
                "max_wal_size = 4GB\nsynchronous_commit = on\nfsync = on\ntimezone = 'UTC'\n"
            )

    def start(self) -> None:
        if self.running():
            return
        self.init()
        _run_pg(
            [
                pg_bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                f"-p {self.port}",
                "-l",
                str(self.data_dir.parent / "postgres.log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        self._ensure_database()

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url("postgres"), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def stop(self, mode: str = "fast") -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        _run_pg([pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"])


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env or os.environ.copy(),
            cwd=str(log.parent),
        )
    return proc


def _wait_http(url: str, seconds: float, what: str, log: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except Exception:
            time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    if proc.poll() is not None:
        raise StackError(f"{what} exited (status {proc.returncode}) before answering at {url}; its log ends:\n{tail}")
    raise StackError(f"{what} did not answer at {url} within {seconds:.0f} s; its log ends:\n{tail}")


def start_s3_server(port: int, log: Path, state: Path | None = None) -> int:
    """moto's S3 server on ``port``; with ``state``, one that keeps its objects in that file (cli/s3server.py)."""
    if state is None:
        exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        args = [exe, "-H", "127.0.0.1", "-p", str(port)]
    else:
        args = [sys.executable, "-m", "cli.s3server", "--port", str(port), "--state", str(state)]
    proc = _spawn(args, log)
    _wait_http(f"http://127.0.0.1:{port}/moto-api/", 30, "the S3 server (moto)", log, proc)
    return proc.pid


def start_prefect_server(port: int, home: Path, log: Path) -> int:
    exe = shutil.which("prefect") or str(Path(sys.executable).parent / "prefect")
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
    }
    env.pop("PREFECT_API_URL", None)
    proc = _spawn([exe, "server", "start", "--host", "127.0.0.1", "--port", str(port)], log, env)
    _wait_http(f"http://127.0.0.1:{port}/api/health", 90, "the Prefect server", log, proc)
    return proc.pid


class Stack:
    """The local stack's state, kept in ``<dev dir>/stack.json``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or dev_dir()
        self.state_file = self.root / "stack.json"
        self.state: dict[str, Any] = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(self.state, indent=2))

    def _port(self, name: str) -> int:
        port = self.state.get(name, {}).get("port")
        if port is None:
            port = free_port(DEFAULT_PORTS[name])
            self.state.setdefault(name, {})["port"] = port
        return int(port)

    @property
    def postgres(self) -> Postgres:
        return Postgres(self.pg_data_dir, self._port("postgres"))

    @property
    def pg_data_dir(self) -> Path:
        """``<dev dir>/pg/data``; when run as root from a directory the ``postgres`` user cannot reach
        (a clone under /root, or in a private temporary directory), a directory of this project's under
        that user's home instead, remembered in the stack's state."""
        chosen = self.state.get("postgres", {}).get("data_dir")
        if chosen:
            return Path(chosen)
        wanted = self.root / "pg" / "data"
        _, uid, gid = _as_postgres_user()
        if uid is None or _reachable_by(wanted.parent.parent, uid, gid):  # type: ignore[arg-type]
            return wanted
        tag = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]
        elsewhere = Path(pwd.getpwuid(uid).pw_dir) / "compliance-dev" / tag / "data"
        self.state.setdefault("postgres", {})["data_dir"] = str(elsewhere)
        return elsewhere

    def up_postgres(self) -> str:
        pg = self.postgres
        pg.start()
        self.save()
        return pg.url

    def up_s3(self) -> str:
        port = self._port("s3")
        info = self.state.setdefault("s3", {"port": port})
        if not (pid_alive(info.get("pid")) and port_open(port)):
            info["pid"] = start_s3_server(port, self.root / "s3.log", self.s3_state_file)
            self.save()
        return f"http://127.0.0.1:{port}"

    @property
    def s3_state_file(self) -> Path:
        """Where the local S3 server keeps its buckets and objects between runs."""
        return self.root / "s3" / "state.pickle"

    def up_prefect(self) -> str:
        port = self._port("prefect")
        info = self.state.setdefault("prefect", {"port": port})
        if not (pid_alive(info.get("pid")) and port_open(port)):
            info["pid"] = start_prefect_server(port, self.root / "prefect", self.root / "prefect.log")
            self.save()
        return f"http://127.0.0.1:{port}/api"

    def up_ingest(self, env: dict[str, str]) -> tuple[str, str]:
        """The ingest service (``python -m ingest``) on the stack's port, started if it is not running, and the
        token of the ``dev-shell`` source: (base URL, token). The token is kept in the stack's state, which
        only this user can read, so that `dev up` run again prints the same one."""
        from compliance.ingest import Scope
        from compliance.settings import Settings
        from tasks.sources import SourceError, add_source, rotate_source

        port = self._port("ingest")
        info = self.state.setdefault("ingest", {"port": port})
        settings = Settings.from_env(env)
        if not info.get("token"):
            try:
                info["token"] = add_source(settings, DEV_SHELL_SOURCE, Scope(None, None), by="compliance dev up")
            except SourceError:  # the state was lost, the source not: a new token for it
                info["token"] = rotate_source(settings, DEV_SHELL_SOURCE, by="compliance dev up")
        if not (pid_alive(info.get("pid")) and port_open(port)):
            log = open(self.root / "ingest.log", "ab")
            process = subprocess.Popen(
                [sys.executable, "-m", "ingest", "--port", str(port)],
                env={**os.environ, **env},
                cwd=Path(__file__).resolve().parent.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # it outlives `dev up`; `dev down` stops it
            )
            info["pid"] = process.pid
            wait_for_port(port, process, self.root / "ingest.log")
        self.save()
        os.chmod(self.state_file, 0o600)
        return f"http://127.0.0.1:{port}", str(info["token"])

    def prefect_url_if_running(self) -> str | None:
        info = self.state.get("prefect", {})
        if pid_alive(info.get("pid")) and port_open(int(info.get("port", 0) or 0)):
            return f"http://127.0.0.1:{info['port']}/api"
        return None

    def down(self, purge: bool = False) -> None:
        # A `make run` still serving stops first, so that it cancels its runs while the stack is there; the S3
        # server writes its final snapshot on SIGTERM: each gets as long as that takes.
        for name, grace in (("serve", 150.0), ("ingest", 10.0), ("prefect", 5.0), ("s3", 300.0)):
            pid = self.state.get(name, {}).get("pid")
            kill = os.kill if name == "serve" else os.killpg  # `make run` shares its terminal's group: it alone
            if pid_alive(pid):
                try:
                    kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                deadline = time.monotonic() + grace
                while pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if pid_alive(pid):
                    kill(pid, signal.SIGKILL)
            self.state.get(name, {}).pop("pid", None)
        if "postgres" in self.state:
            self.postgres.stop()
        if purge:
            if self.pg_data_dir.parent != self.root / "pg":
                shutil.rmtree(self.pg_data_dir.parent, ignore_errors=True)
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            self.save()


def dev_env(pg_url: str, s3_url: str, prefect_url: str | None) -> dict[str, str]:
    """The settings a shell needs to use the local stack (printed as export lines by `dev up`)."""
    env = {
        "COMPLIANCE_DATABASE_URL": pg_url,
        "COMPLIANCE_S3_ENDPOINT_URL": s3_url,
        "COMPLIANCE_ANCHOR_BUCKET": os.environ.get("COMPLIANCE_ANCHOR_BUCKET") or "compliance-anchors",
        "COMPLIANCE_EXPORT_BUCKET": os.environ.get("COMPLIANCE_EXPORT_BUCKET") or "compliance-exports",
        "COMPLIANCE_STAGE": os.environ.get("COMPLIANCE_STAGE") or "dev",
        "AWS_ACCESS_KEY_ID": DEV_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": DEV_ACCESS_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    if prefect_url:
        env["PREFECT_API_URL"] = prefect_url
    return env
