"""Run the ingest service: ``python -m ingest [--host H] [--port P] [--workers N]``.

Settings come from the environment as for every other command (COMPLIANCE_DATABASE_URL, or the writer
role's own COMPLIANCE_WRITER_DATABASE_URL), plus COMPLIANCE_INGEST_HOST (127.0.0.1), COMPLIANCE_INGEST_PORT
(8787), COMPLIANCE_INGEST_WORKERS (one process per core, at most 4), COMPLIANCE_INGEST_MAX_OUTBOX_DEPTH,
COMPLIANCE_INGEST_DEPTH_CHECK_SECONDS and COMPLIANCE_INGEST_CONNECTIONS (per process).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

DEFAULT_PORT = 8787
# Where each serving process writes its access log: set by main() for the processes uvicorn starts.
_ACCESS_LOG_ENV = "COMPLIANCE_INGEST_ACCESS_LOG"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("COMPLIANCE_INGEST_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("COMPLIANCE_INGEST_PORT", DEFAULT_PORT)))
    parser.add_argument("--workers", type=int, default=None, help="serving processes (COMPLIANCE_INGEST_WORKERS)")
    parser.add_argument("--access-log", default="-", help="file for the JSON access log lines ('-': stderr)")
    args = parser.parse_args(argv)

    import psycopg
    import uvicorn

    from compliance.settings import Settings, SettingsError
    from ingest.app import IngestConfig, check_database, create_app

    try:
        settings = Settings.from_env()
        config = IngestConfig.from_env()
        if not settings.database_url and "compliance_writer" not in settings.role_urls:
            raise SettingsError("COMPLIANCE_DATABASE_URL (or COMPLIANCE_WRITER_DATABASE_URL) is not set")
        if args.workers is not None and args.workers < 1:
            raise SettingsError("--workers must be at least 1")
        check_database(settings)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except psycopg.Error as exc:
        print(
            f"error: the database cannot be used ({exc}); is it up, and migrated (`compliance migrate`)?",
            file=sys.stderr,
        )
        return 1
    workers = args.workers or config.workers
    # uvicorn's own access log prints the request line, query string included: ours never does.
    options: dict[str, Any] = {"host": args.host, "port": args.port, "access_log": False, "log_level": "warning"}
    if workers == 1:
        _log_access_to(args.access_log)
        uvicorn.run(create_app(settings, config), **options)
    else:
        # Each process builds its own app (connections, depth check) from the same environment.
        os.environ[_ACCESS_LOG_ENV] = args.access_log
        uvicorn.run("ingest.__main__:serving_app", factory=True, workers=workers, **options)
    return 0


def serving_app() -> Any:
    """The app of one of several serving processes (uvicorn's factory), configured as main() was."""
    from compliance.settings import Settings
    from ingest.app import IngestConfig, create_app

    _log_access_to(os.environ.get(_ACCESS_LOG_ENV, "-"))
    return create_app(Settings.from_env(), IngestConfig.from_env())


def _log_access_to(target: str) -> None:
    # Each line is flushed whole as it is written (a file in append mode): several processes can share the target.
    handler = logging.StreamHandler(sys.stderr) if target == "-" else logging.FileHandler(target)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("compliance.ingest.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


if __name__ == "__main__":
    sys.exit(main())
