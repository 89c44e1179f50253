"""RFC 8785: byte-identical to the reference `rfc8785` package, fast path and exact path alike."""

from __future__ import annotations

import os
import struct

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance.jcs import MAX_SAFE_INTEGER, CanonicalError, canonical, format_number

EXAMPLES = int(os.environ.get("COMPLIANCE_FUZZ_EXAMPLES", "1500"))

# Unicode without lone surrogates (those have no UTF-8 form; refused separately below).
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
keys = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
safe_ints = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
finite = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | safe_ints | finite | text
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5), max_leaves=25
)


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(json_values)
def test_canonical_bytes_match_reference_for_generated_values(value: object) -> None:
    assert canonical(value) == rfc8785.dumps(value)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.dictionaries(keys, safe_ints | text | st.none() | st.booleans(), max_size=8))
def test_fast_path_objects_match_reference(value: dict[str, object]) -> None:
    assert canonical(value) == rfc8785.dumps(value)


@settings(max_examples=EXAMPLES, deadline=None)
@given(finite)
def test_every_double_formats_as_ecmascript(value: float) -> None:
    assert canonical(value) == rfc8785.dumps(value)


def test_random_bit_patterns_of_doubles_format_as_reference() -> None:
    rng = __import__("random").Random(6962)
    for _ in range(20_000):
        value = struct.unpack("<d", rng.randbytes(8))[0]
        if value != value or value in (float("inf"), float("-inf")):
            continue
        assert format_number(value).encode() == rfc8785.dumps(value), value


@pytest.mark.parametrize(
    "value, expected",
    [
        (1.0, b"1"),
        (-0.0, b"0"),
        (1e21, b"1e+21"),
        (1e-7, b"1e-7"),
        (1e-6, b"0.000001"),
        (0.1, b"0.1"),
        (1e16, b"10000000000000000"),
        (123456789012345680000.0, b"123456789012345680000"),
        (5e-324, b"5e-324"),
        (9007199254740991, b"9007199254740991"),
    ],
)
def test_number_forms_pinned(value: float, expected: bytes) -> None:
    assert canonical(value) == expected


def test_keys_sort_by_utf16_code_units_not_code_points() -> None:
    value = {"\ue000": 1, "\U0001f600": 2, "a": 3}
    assert canonical(value) == rfc8785.dumps(value)
    assert canonical(value).decode().index("\U0001f600") < canonical(value).decode().index("\ue000")


def test_string_escapes_match_reference() -> None:
    value = '\x00\x1f\b\f\n\r\t"\\/\x7f\u2028zoë😀'
    assert canonical(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value", [2**53, -(2**53), 10**30, float("nan"), float("inf"), "\ud800", {"k": "\udfff"}, {1: 2}, b"x"]
)
def test_values_without_a_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(CanonicalError):
        canonical(value)


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(keys, json_values, max_size=6))
def test_canonical_problem_accepts_exactly_the_canonical_text(value: dict) -> None:
    from compliance.jcs import canonical_problem

    text = canonical(value).decode("utf-8")
    assert canonical_problem(text, dict) is None
    for other in (
        __import__("json").dumps(value, ensure_ascii=False),  # spaces, Python number forms
        __import__("json").dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
        __import__("orjson").dumps(value, option=__import__("orjson").OPT_SORT_KEYS).decode("utf-8"),
    ):
        assert (canonical_problem(other, dict) is None) == (other == text)


def test_canonical_problem_accepts_keys_in_utf16_order() -> None:
    from compliance.jcs import canonical_problem

    assert canonical_problem('{"\U0001f600":1,"\ue000":2}', dict) is None


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1e21}',
        '{"a":1.0}',
        '{"a":1e+21 }',
        '{"b":1,"a":2}',
        '{"a":9007199254740993}',
        '{"a":10000000000000000000000}',
        '{"a":-0}',
        '{"a":{"b":[1,2,1E2]}}',
        '{"a":[0.5,1.0]}',
        '{"\ue000":2,"\U0001f600":1}',
        "[1]",
        "{",
        '{"a":NaN}',
    ],
)
def test_canonical_problem_names_non_canonical_text(text: str) -> None:
    from compliance.jcs import canonical_problem

    assert canonical_problem(text, dict) is not None


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(json_values)
def test_canonical_fast_equals_canonical(value: object) -> None:
    from compliance.jcs import canonical_fast

    assert canonical_fast(value) == rfc8785.dumps(value)


# The auditor's package serializes with the standard library alone (ledger_verify.jcs), the ledger's fallback.
exact_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["", '"', "\\", "\x7f", "\u2028", "\x00\x1f", "zoë", "😀", "\ue000", "tab\there", "0123abcdef"]
)
exact_keys = st.text(st.characters(exclude_categories=("Cs",)), max_size=6) | st.sampled_from(
    ["", "a", "A", "\ue000", "\U0001f600", "é", "[0]", "a.b"]
)
exact_values = st.recursive(
    st.none() | st.booleans() | safe_ints | finite | exact_text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(exact_keys, inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(exact_values)
def test_the_packages_own_serializer_matches_the_reference(value: object) -> None:
    from ledger_verify.jcs import canonical as package_canonical

    assert package_canonical(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": [1, {"b": 2**60}]}, "a[1].b"),
        ([{"x": [float("nan")]}], "[0].x[0]"),
        ({"a.b": {"[c": [None, {1: 2}]}}, "a.b.[c[1]"),
        ({"k": object()}, "k"),
        ("\ud800", ""),
    ],
)
def test_the_packages_serializer_names_where_a_value_has_no_canonical_form(value: object, path: str) -> None:
    from ledger_verify.jcs import CanonicalError as PackageCanonicalError
    from ledger_verify.jcs import canonical as package_canonical

    with pytest.raises(PackageCanonicalError) as caught:
        package_canonical(value)
    assert caught.value.path == path and str(caught.value).startswith(f"{path or '<root>'}: ")
