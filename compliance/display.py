"""Values shown to people (console artifacts, terminal lines) so that no stored value can forge a row, a link or
a terminal's state.

    >>> safe_cell("a|b`c\\x1b[31m")
    'a\\\\|b\\\\`c\\\\u001b\\\\[31m'
    >>> safe_cell({"k": 1})
    '{"k":1}'

Control characters (Unicode Cc) and bidirectional controls become visible ``\\uXXXX`` text, and the characters
that make table cells, code spans, links and HTML (``| ` [ ] < > \\``) are backslash-escaped. Events written
before the SPEC §1 text rule may hold any of them, so the rule is applied where values are shown.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

__all__ = ["safe_cell", "safe_row"]

_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_MARKUP = frozenset("|`[]<>\\")
MAX_CELL = 2048


def safe_cell(value: Any) -> str:
    """One value as inert text of at most ``MAX_CELL`` characters (JSON for anything not a string)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    out = []
    for ch in text:
        if ch in _BIDI or unicodedata.category(ch) == "Cc":
            out.append(f"\\u{ord(ch):04x}")
        elif ch in _MARKUP:
            out.append("\\" + ch)
        else:
            out.append(ch)
    shown = "".join(out)
    return shown if len(shown) <= MAX_CELL else shown[: MAX_CELL - 1] + "…"


def safe_row(row: dict[str, Any]) -> dict[str, str]:
    return {key: safe_cell(value) for key, value in row.items()}
