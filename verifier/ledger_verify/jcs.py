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

__all__ = ["MAX_SAFE_INTEGER", "CanonicalError", "canonical", "encode_string", "format_number", "loads_strict"]

MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalError(ValueError):
    """A value has no RFC 8785 form (unsafe integer, NaN, lone surrogate, non-JSON type)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path or '<root>'}: {reason}")


def canonical(value: Any) -> bytes:
    """The RFC 8785 UTF-8 bytes of a JSON value (dict, list, str, int, float, bool, None)."""
    parts: list[str] = []
    _write(value, parts, "")
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalError("", "string is not valid Unicode (lone surrogate)") from None


def encode_string(text: str) -> str:
    """The RFC 8785 form of one string, quotes included (json's escapes are RFC 8785's when it may keep
    non-ASCII as it is: quote, backslash, \\b \\f \\n \\r \\t, and \\u00xx for the other controls)."""
    return json.dumps(text, ensure_ascii=False)


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _write(value: Any, out: list[str], path: str) -> None:
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
            raise CanonicalError(path, f"integer {value} is outside +-(2**53 - 1); send it as a string")
        out.append(str(value))
    elif kind is float:
        if not math.isfinite(value):
            raise CanonicalError(path, f"{value} is not a JSON number")
        out.append(format_number(value))
    elif kind is dict:
        for key in value:
            if type(key) is not str:
                raise CanonicalError(path, f"object key {key!r} is not a string")
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_key)):
            if i:
                out.append(",")
            out.append(encode_string(key))
            out.append(":")
            _write(value[key], out, f"{path}.{key}" if path else key)
        out.append("}")
    elif kind is list or kind is tuple:
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, f"{path}[{i}]")
        out.append("]")
    else:
        raise CanonicalError(path, f"{kind.__name__} is not a JSON type")


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


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
