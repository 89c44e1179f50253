"""Probing the Prefect API as a stranger would: without credentials."""

from __future__ import annotations

import urllib.error
import urllib.request

__all__ = ["probe_without_credentials"]


def probe_without_credentials(api_url: str, timeout: float = 10.0) -> int | None:
    """The HTTP status the Prefect API at ``api_url`` gives a request that carries no credentials, or None
    when it does not answer. The request reads the server's version, which every authenticated client may."""
    request = urllib.request.Request(api_url.rstrip("/") + "/admin/version", method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (the configured API URL)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, TimeoutError, OSError):
        return None
