"""The ledger's pure domain: RFC 8785, chains, RFC 6962 Merkle trees, anchors, events, exports, verification.

Some modules may be compiled by mypyc (see setup.py). A compiled module older than its source would
silently run old code, so importing the package refuses that: reinstall (`make install`) after editing.
"""

from pathlib import Path as _Path


def _refuse_stale_compiled_modules() -> None:
    here = _Path(__file__).resolve().parent
    for compiled in here.glob("*.so"):
        source = here / (compiled.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > compiled.stat().st_mtime + 1:
            raise ImportError(
                f"{compiled.name} is older than {source.name}: the compiled hot path is stale; "
                "run `make install` (or `pip install -e .`), or delete the .so files to run plain Python"
            )


_refuse_stale_compiled_modules()
