"""The HTTP ingest service (FastAPI): emit events from runtimes without a database login. See ingest.app."""
