"""The install compiles the hot path (setup.py) unless told not to: a fresh machine's first install once
compiled nothing, silently, because the build environment lacked a module the hot path's types import."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parent.parent / "setup.py"
VERIFIER_SETUP = Path(__file__).resolve().parent.parent / "verifier" / "setup.py"


def hot_path_modules() -> list[str]:
    """The ledger's compiled modules, and the verification core's, which the ledger's install compiles too."""
    return ["compliance." + name for name in re.findall(r'"compliance/(\w+)\.py"', SETUP.read_text())] + [
        "ledger_verify." + name for name in re.findall(r'"ledger_verify/(\w+)\.py"', VERIFIER_SETUP.read_text())
    ]


def test_setup_lists_the_hot_path() -> None:
    assert {"compliance.jcs", "compliance.events", "compliance.chain", "ledger_verify.export"} <= set(
        hot_path_modules()
    )


@pytest.mark.skipif(os.environ.get("COMPLIANCE_NO_COMPILE") == "1", reason="plain Python asked for")
def test_every_hot_path_module_is_compiled() -> None:
    plain = [m for m in hot_path_modules() if not (importlib.import_module(m).__file__ or "").endswith(".so")]
    assert not plain, f"{plain} run as plain Python: `pip install -v -e .` shows why mypyc did not compile them"
