"""The settings a flow run uses: the Prefect blocks (the deployments' source of truth), with the process
environment laid over them (a worker can pin a value), checked as compliance.settings checks every source.

Read once at the start of each flow run, so a block edited in the UI or through the API is what the next run
uses. Without a Prefect API (a command run outside any deployment) the environment alone."""

from __future__ import annotations

import os
from collections.abc import Mapping

from compliance.settings import Settings

__all__ = ["load_settings", "settings_env"]


def settings_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The blocks' settings as environment variables, overridden by ``environ`` (default: the process's)."""
    environ = os.environ if environ is None else environ
    from_blocks: dict[str, str] = {}
    if _prefect_api_configured():
        from blocks.ledger import env_from_blocks

        from_blocks = env_from_blocks()
    return from_blocks | {k: v for k, v in environ.items() if v != ""}


def load_settings() -> Settings:
    return Settings.from_env(settings_env())


def _prefect_api_configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())
