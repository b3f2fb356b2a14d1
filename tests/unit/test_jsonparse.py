"""Tests of the strict JSON intake parser."""

from __future__ import annotations

import contextlib
import json
import sys
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alertpipe.errors import MalformedInput, UsageError
from alertpipe.sources.jsonparse import parse_json_object


def reject(raw: bytes | str, **kwargs: Any) -> str:
    with pytest.raises(MalformedInput) as info:
        parse_json_object(raw, **kwargs)
    return str(info.value)


def test_parses_an_object_with_exact_numbers() -> None:
    body = b'{"order_id": 12345678901234567890, "amount": 349.99, "big": 1e3, "ok": true}'
    parsed = parse_json_object(body)
    assert parsed == {"order_id": 12345678901234567890, "amount": Decimal("349.99"),
                      "big": Decimal("1E+3"), "ok": True}
    assert type(parsed["amount"]) is Decimal
    assert type(parsed["order_id"]) is int


def test_no_float_ever_appears() -> None:
    parsed = parse_json_object(b'{"a": [0.1, {"b": -2.5e-3}], "c": 0.30000000000000004}')
    assert parsed["a"][0] == Decimal("0.1")
    assert parsed["a"][1]["b"] == Decimal("-0.0025")
    assert parsed["c"] == Decimal("0.30000000000000004")


def test_utf8_bom_is_tolerated_and_str_is_accepted() -> None:
    assert parse_json_object(b'\xef\xbb\xbf{"a": "\xc3\xa9"}') == {"a": "é"}
    assert parse_json_object('{"a": 1}') == {"a": 1}


@pytest.mark.parametrize("raw", [b"\xff{}", b'{"a": "\xc3"}', b'{"a": "\xed\xa0\x80"}'])
def test_invalid_utf8_is_refused(raw: bytes) -> None:
    assert "not valid UTF-8" in reject(raw)


@pytest.mark.parametrize("raw", [b"", b"   \n\t ", b"\xef\xbb\xbf"])
def test_empty_body(raw: bytes) -> None:
    assert "empty body" in reject(raw)


def test_syntax_error_names_line_and_column() -> None:
    message = reject(b'{\n  "a": 1,\n  "b": }')
    assert "invalid JSON" in message
    assert "line 3 column 8" in message


def test_unterminated_string_reads_well() -> None:
    assert "Unterminated string starting at line 1 column 7" in reject(b'{"a": "abc')


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_literals_are_refused(literal: str) -> None:
    message = reject(f'{{"amount":\n {literal}}}'.encode())
    assert literal in message
    assert "line 2 column 2" in message


def test_nan_inside_a_string_is_just_text() -> None:
    assert parse_json_object(b'{"a": "NaN"}') == {"a": "NaN"}


def test_duplicate_keys_are_refused_at_any_depth() -> None:
    assert "duplicate key 'amount'" in reject(b'{"amount": 1, "x": 2, "amount": 3}')
    assert "duplicate key 'qty'" in reject(b'{"items": [{"qty": 1, "qty": 2}]}')


def test_ten_thousand_deep_array_fails_fast_and_cleanly() -> None:
    body = b"[" * 10_000 + b"]" * 10_000
    message = reject(b'{"a": ' + body + b"}")
    assert "nested deeper than 64 levels" in message
    assert "line 1 column 70" in message  # the 65th bracket: after `{"a": ` and 63 more `[`


def test_deep_nesting_even_if_unbalanced_or_beyond_recursion_limit() -> None:
    depth = sys.getrecursionlimit() * 3
    assert "nested deeper" in reject(b"{" + b'"a":{' * depth)
    assert "nested deeper" in reject(b"[" * depth, max_depth=10_000)


def test_depth_limit_is_exact() -> None:
    nested = '{"a": ' * 63 + "1" + "}" * 63
    assert parse_json_object(f'{{"x": {nested}}}', max_depth=64)
    assert "nested deeper than 63" in reject(f'{{"x": {nested}}}', max_depth=63)


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"a": "[" * 500 + '\\"{' * 100, "b": ["]]]"]})
    assert parse_json_object(text)["b"] == ["]]]"]


def test_hundred_thousand_digit_integer() -> None:
    message = reject(b'{"n": ' + b"7" * 100_000 + b"}")
    assert "longer than 4300 digits" in message
    assert "line 1 column 7" in message


def test_hundred_thousand_digit_decimal() -> None:
    assert "longer than 4300" in reject(b'{"n": 1.' + b"5" * 100_000 + b"}")


def test_integer_at_the_limit_is_fine() -> None:
    assert parse_json_object(b'{"n": ' + b"9" * 4300 + b"}")["n"] == 10**4300 - 1


@pytest.mark.parametrize(("raw", "kind"), [
    (b"[1, 2]", "an array"), (b'"x"', "a string"), (b"null", "null"), (b"3.5", "a number"),
    (b"true", "a boolean"),
])
def test_top_level_must_be_an_object(raw: bytes, kind: str) -> None:
    assert f"expected a JSON object at the top level, got {kind}" in reject(raw)


def test_lone_surrogate_escape_is_refused_but_pairs_are_fine() -> None:
    assert "lone UTF-16 surrogate" in reject(b'{"a": ["\\udc00"]}')
    assert parse_json_object(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}


def test_bad_max_depth_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_json_object(b"{}", max_depth=0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.decimals(allow_nan=False, allow_infinity=False, places=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_round_trip_of_valid_objects(obj: dict[str, Any]) -> None:
    from alertpipe.jsoncodec import dumps

    assert parse_json_object(dumps(obj).encode()) == obj


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_else(raw: bytes) -> None:
    with contextlib.suppress(MalformedInput):
        assert isinstance(parse_json_object(raw), dict)
