"""The ledger's pure domain: RFC 8785, chains, RFC 6962 Merkle trees, anchors, events, exports, verification.

Some modules may be compiled by mypyc (see setup.py). A compiled module older than its source would
silently run old code, so importing the package refuses that: reinstall (`make install`) after editing.
"""

from pathlib import Path as _Path

from ledger_verify import refuse_stale_compiled

refuse_stale_compiled(_Path(__file__).resolve().parent)
