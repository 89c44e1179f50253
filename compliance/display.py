r"""Values shown to people (console artifacts, terminal lines) so that no stored value can forge a row, a link
or a terminal's state.

    >>> safe_cell("a|b`c\x1b[31m")
    'a\\|b\\`c\\u001b\\[31m'
    >>> safe_cell({"k": 1})
    '{"k":1}'
    >>> safe_text("user[1]\u202e")
    'user[1]\\u202e'

Control characters (Unicode Cc) and bidirectional controls become visible ``\uXXXX`` text (:func:`safe_text`,
for a terminal); in console cells the characters that make table cells, code spans, links and HTML
(``| ` [ ] < > \``) are backslash-escaped too (:func:`safe_cell`). Events written before the docs/format.md §1 text rule
may hold any of them, so the rule is applied where values are shown.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

__all__ = ["safe_cell", "safe_row", "safe_text"]

_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_MARKUP = frozenset("|`[]<>\\")
MAX_CELL = 2048


def safe_cell(value: Any) -> str:
    """One value as inert console text of at most ``MAX_CELL`` characters (JSON for anything not a string)."""
    shown = _shown(value, _MARKUP)
    return shown if len(shown) <= MAX_CELL else shown[: MAX_CELL - 1] + "…"


def safe_text(value: Any) -> str:
    """One value as text that cannot move a terminal's cursor, colour it, or reorder what it shows."""
    return _shown(value, frozenset())


def _shown(value: Any, escaped: frozenset[str]) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    out = []
    for ch in text:
        if ch in _BIDI or unicodedata.category(ch) == "Cc":
            out.append(f"\\u{ord(ch):04x}")
        elif ch in escaped:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def safe_row(row: dict[str, Any]) -> dict[str, str]:
    return {key: safe_cell(value) for key, value in row.items()}
