"""RFC 8785 (JSON Canonicalization Scheme), exact, with the standard library alone.

    >>> canonical({"b": [1, 2.5, None], "a": "zoë"})
    b'{"a":"zo\\xc3\\xab","b":[1,2.5,null]}'

Numbers are IEEE doubles in RFC 8785, so integers outside +-(2**53 - 1) and
non-finite floats are refused with :class:`CanonicalError`; object keys sort
by their UTF-16 code units; strings escape only the quote, the backslash and
the control characters below U+0020.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = [
    "MAX_SAFE_INTEGER",
    "CanonicalError",
    "canonical",
    "encode_string",
    "format_number",
    "int_or_double",
    "loads_as_doubles",
    "loads_strict",
    "unescaped",
]

MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalError(ValueError):
    """A value has no RFC 8785 form (unsafe integer, NaN, lone surrogate, non-JSON type)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        self.steps: tuple[str | int, ...] = ()  # the keys and list indexes to the value, outermost first
        super().__init__(f"{path or '<root>'}: {reason}")

    def inside(self, step: str | int) -> CanonicalError:
        """The same error one level further out: inside the object member ``step`` (a key) or the list item
        ``step`` (an index). The path is built only when a value fails, never on the way in."""
        steps = (step, *self.steps)
        path = ""
        for s in steps:
            path = f"{path}[{s}]" if isinstance(s, int) else (f"{path}.{s}" if path else s)
        exc = CanonicalError(path, self.reason)
        exc.steps = steps
        return exc


def canonical(value: Any) -> bytes:
    """The RFC 8785 UTF-8 bytes of a JSON value (dict, list, str, int, float, bool, None)."""
    parts: list[str] = []
    _write(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalError("", "string is not valid Unicode (lone surrogate)") from None


def encode_string(text: str) -> str:
    """The RFC 8785 form of one string, quotes included (json's escapes are RFC 8785's when it may keep
    non-ASCII as it is: quote, backslash, \\b \\f \\n \\r \\t, and \\u00xx for the other controls)."""
    if unescaped(text):
        return '"' + text + '"'
    return json.dumps(text, ensure_ascii=False)


def unescaped(text: str) -> bool:
    """Whether RFC 8785 writes ``text`` as it is between its quotes: no quote, no backslash, and nothing that is
    not printable (a printable character is never a control character, the only others escaped)."""
    return text.isprintable() and '"' not in text and "\\" not in text


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _write(value: Any, out: list[str]) -> None:
    """Append the RFC 8785 text of ``value`` to ``out``; a CanonicalError names where, relative to ``value``."""
    kind = type(value)
    if kind is str:
        out.append(encode_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int:
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise CanonicalError("", f"integer {value} is outside +-(2**53 - 1); send it as a string")
        out.append(str(value))
    elif kind is float:
        if not math.isfinite(value):
            raise CanonicalError("", f"{value} is not a JSON number")
        out.append(format_number(value))
    elif kind is dict:
        ascii_keys = True
        for key in value:
            if type(key) is not str:
                raise CanonicalError("", f"object key {key!r} is not a string")
            if not key.isascii():
                ascii_keys = False
        out.append("{")
        # ASCII keys sort alike by code point and by UTF-16 code unit; others are sorted as UTF-16.
        for i, key in enumerate(sorted(value) if ascii_keys else sorted(value, key=_utf16_key)):
            if i:
                out.append(",")
            out.append(encode_string(key))
            out.append(":")
            try:
                _write(value[key], out)
            except CanonicalError as exc:
                raise exc.inside(key) from None
        out.append("}")
    elif kind is list or kind is tuple:
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            try:
                _write(item, out)
            except CanonicalError as exc:
                raise exc.inside(i) from None
        out.append("]")
    else:
        raise CanonicalError("", f"{kind.__name__} is not a JSON type")


def format_number(value: float) -> str:
    """ECMAScript Number.prototype.toString of a finite double (RFC 8785 §3.2.2.3)."""
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return str(int(value))  # exact: every integer of this size is a double
    sign = "-" if value < 0 else ""
    # repr gives the shortest round-tripping digits, as ECMAScript requires.
    text = repr(abs(value))
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    # value = 0.digits * 10**n
    n = len(whole) + exponent if whole != "0" else exponent - (len(frac) - len(frac.lstrip("0")))
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        body = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))
    return sign + body


def loads_strict(text: str | bytes) -> Any:
    """json.loads that refuses duplicate object keys and NaN/Infinity (ValueError, or RecursionError when
    absurdly deep): what a signed or hashed document must never contain."""
    return json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)


def loads_as_doubles(text: str | bytes) -> Any:
    """:func:`loads_strict`, reading an integer beyond +-(2**53 - 1) as the double it denotes, as RFC 8785 reads
    every number: the canonical text of such a double (``1e20`` is ``100000000000000000000``) reads back as it."""
    return json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant, parse_int=int_or_double)


def int_or_double(digits: str) -> int | float:
    """A JSON integer's digits as an int when exact as a double, else as the double they denote."""
    value = int(digits)
    return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else float(value)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
