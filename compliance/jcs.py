"""RFC 8785 (JSON Canonicalization Scheme) serialization.

    >>> canonical({"b": [1, 2.5, None], "a": "zoë"})
    b'{"a":"zo\\xc3\\xab","b":[1,2.5,null]}'

The fast path hands the value to orjson, whose output is byte-identical to
RFC 8785 when the value holds no float (orjson and ECMAScript format numbers
differently) and no object key outside the Basic Multilingual Plane (RFC 8785
sorts keys by UTF-16 code units, orjson by code points). Values that have
either go through the exact, slower serializer of ``ledger_verify.jcs`` (the
auditor's package, which has no orjson). Both are pinned against
the reference ``rfc8785`` package by property tests.

Numbers are IEEE doubles in RFC 8785, so integers outside +-(2**53 - 1) and
non-finite floats are refused with :class:`CanonicalError`, as the reference
implementation does.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson
from ledger_verify.jcs import (
    MAX_SAFE_INTEGER,
    CanonicalError,
    encode_string,
    format_number,
    int_or_double,
    loads_strict,
)
from ledger_verify.jcs import canonical as exact_canonical

__all__ = [
    "MAX_SAFE_INTEGER",
    "CanonicalError",
    "canonical",
    "canonical_fast",
    "canonical_problem",
    "canonical_value",
    "canonical_str",
    "encode_string",
    "format_number",
    "loads_strict",
    "numbers_print_alike",
]

_SORT_KEYS = orjson.OPT_SORT_KEYS


def canonical(value: Any) -> bytes:
    """The RFC 8785 UTF-8 bytes of a JSON value (dict, list, str, int, float, bool, None)."""
    if _orjson_is_exact(value, ""):
        try:
            return orjson.dumps(value, option=_SORT_KEYS)
        except orjson.JSONEncodeError as exc:  # lone surrogates, non-str keys
            raise CanonicalError("", str(exc)) from None
    return exact_canonical(value)


def canonical_str(value: Any) -> str:
    """:func:`canonical` decoded, for building larger canonical documents."""
    return canonical(value).decode("utf-8")


def _orjson_is_exact(value: Any, path: str) -> bool:
    """True when orjson's sorted output is already RFC 8785; raises on values with no JSON form."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return True
        raise CanonicalError(path, f"integer {value} is outside +-(2**53 - 1); send it as a string")
    if kind is dict:
        exact = True
        for key, item in value.items():
            if type(key) is not str:
                raise CanonicalError(path, f"object key {key!r} is not a string")
            if key and max(key) > "\uffff":
                exact = False
            if not _orjson_is_exact(item, f"{path}.{key}" if path else key):
                exact = False
        return exact
    if kind is list or kind is tuple:
        exact = True
        for index, item in enumerate(value):
            if not _orjson_is_exact(item, f"{path}[{index}]"):
                exact = False
        return exact
    if kind is float:
        if not math.isfinite(value):
            raise CanonicalError(path, f"{value} is not a JSON number")
        return False
    raise CanonicalError(path, f"{kind.__name__} is not a JSON type")


# orjson writes what RFC 8785 writes except for some numbers (1e21 vs 1e+21, 1.0 vs 1) and the order of
# keys outside the BMP. Text that survives an orjson round trip is canonical when its keys are in the BMP
# and it holds no float or large integer, or none written in one of the forms below.
_NUMBER_FORMS_DIFFER = re.compile(r"[0-9](?:[eE]|\.0(?:[,\]}]|$)|[0-9]{15})")


def canonical_problem(text: str, want: type) -> str | None:
    """None when ``text`` is the RFC 8785 form of a JSON value of type ``want``; else why not."""
    return canonical_value(text, want)[1]


def canonical_value(text: str, want: type) -> tuple[Any, str | None]:
    """``text`` parsed, and None when it is the RFC 8785 form of a JSON value of type ``want``, else why not
    (the value is then None)."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON: {exc}"
    if type(parsed) is not want:
        return None, f"not a JSON {want.__name__}"
    encoded = text.encode("utf-8")
    if (
        (text.isascii() or max(text) <= "\uffff")
        and orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS) == encoded
        and (_numbers_print_alike(parsed) or not _NUMBER_FORMS_DIFFER.search(text))
    ):
        return parsed, None
    try:
        # RFC 8785 numbers are doubles: an integer too large for exactness is the double it denotes.
        if canonical(json.loads(text, parse_int=int_or_double)) == encoded:
            return parsed, None
    except CanonicalError as exc:
        return None, f"has no RFC 8785 form: {exc}"
    return None, "not in RFC 8785 canonical form"


def numbers_print_alike(value: Any, text: str) -> bool:
    """True when every number in ``value``, parsed from the JSON ``text``, prints the same in orjson's output
    as in RFC 8785's (as :func:`canonical_value` requires of a text that survived an orjson round trip)."""
    return _numbers_print_alike(value) or not _NUMBER_FORMS_DIFFER.search(text)


def _numbers_print_alike(value: Any) -> bool:
    """True when every number in a parsed JSON value is an integer within +-(2**53 - 1), which orjson prints
    exactly as RFC 8785 does (floats and larger integers may print differently)."""
    kind = type(value)
    if kind is dict:
        for item in value.values():
            if not _numbers_print_alike(item):
                return False
        return True
    if kind is list:
        for item in value:
            if not _numbers_print_alike(item):
                return False
        return True
    if kind is int:
        number: int = value
        return -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER
    return kind is not float


def canonical_fast(value: Any) -> bytes:
    """:func:`canonical`, trying orjson's sorted output first: it is RFC 8785 unless it shows a number form
    where the two differ or a key outside the BMP, in which case the exact serializer decides."""
    try:
        out = orjson.dumps(value, option=_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return canonical(value)
    if _NUMBER_FORMS_DIFFER.search(out.decode("utf-8")) or (not out.isascii() and max(out.decode("utf-8")) > "\uffff"):
        return canonical(value)
    return out
