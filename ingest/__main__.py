"""Run the ingest service: ``python -m ingest [--host H] [--port P]``.

Settings come from the environment as for every other command (COMPLIANCE_DATABASE_URL, or the writer
role's own COMPLIANCE_WRITER_DATABASE_URL), plus COMPLIANCE_INGEST_HOST (127.0.0.1), COMPLIANCE_INGEST_PORT
(8787), COMPLIANCE_INGEST_MAX_OUTBOX_DEPTH, COMPLIANCE_INGEST_DEPTH_CHECK_SECONDS and
COMPLIANCE_INGEST_CONNECTIONS.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

DEFAULT_PORT = 8787


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("COMPLIANCE_INGEST_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("COMPLIANCE_INGEST_PORT", DEFAULT_PORT)))
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
    handler = logging.StreamHandler(sys.stderr) if args.access_log == "-" else logging.FileHandler(args.access_log)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("compliance.ingest.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    # uvicorn's own access log prints the request line, query string included: ours never does.
    uvicorn.run(create_app(settings, config), host=args.host, port=args.port, access_log=False, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
