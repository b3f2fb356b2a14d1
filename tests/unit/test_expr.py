"""Tests of the safe expression language."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alertpipe.errors import ConfigError
from alertpipe.steps.expr import Expr, ExprError, compile_expr

ORDER: dict[str, Any] = {
    "amount": Decimal("349.99"), "currency": "USD", "high_value": True, "threshold": 300,
    "billing": {"phone": "+14155550123"}, "items": [{"sku": "A", "qty": 2}, {"sku": "B"}],
    "note": "Gift", "price_text": "12.50",
}


def ev(text: str, env: dict[str, Any] | None = None) -> Any:
    return compile_expr(text).evaluate(ORDER if env is None else env)


@pytest.mark.parametrize(("amount", "expected"), [
    (300, False), (Decimal("300.00"), False), (Decimal("300.01"), True), (300.01, True),
    ("300.01", True), ("300", False), (None, False),
])
def test_threshold_boundary(amount: Any, expected: bool) -> None:
    expr = compile_expr("amount > threshold")
    assert expr.evaluate({"amount": amount, "threshold": Decimal("300")}) is expected


def test_literals_are_exact_decimals() -> None:
    assert ev("300.01") == Decimal("300.01")
    assert str(ev("300.01")) == "300.01"
    assert ev("0.1 + 0.2 == 0.3") is True
    assert ev("amount > 300") is True
    assert ev("1_000.5") == Decimal("1000.5")


def test_source_and_names() -> None:
    expr = compile_expr("high_value and currency == 'USD' and len(items[0].sku) > 0")
    assert isinstance(expr, Expr)
    assert expr.source == "high_value and currency == 'USD' and len(items[0].sku) > 0"
    assert expr.names == frozenset({"high_value", "currency", "items"})
    assert expr.evaluate(ORDER) is True


@pytest.mark.parametrize(("text", "expected"), [
    ("billing.phone", "+14155550123"), ("items[0].qty", 2), ("items[1].qty", None),
    ("items[9].sku", None), ("items[-1].sku", "B"), ("billing['phone']", "+14155550123"),
    ("missing.deeper[0]", None), ("currency in ['USD', 'EUR']", True),
    ("currency not in ('USD',)", False), ("'ift' in note", True), ("'phone' in billing", True),
    ("2 in [1, 2.0]", True), ("lower(note)", "gift"), ("upper(currency)", "USD"),
    ("contains(note, 'Gi')", True), ("startswith(billing.phone, '+1')", True),
    ("startswith(missing, '+1')", False), ("len(items)", 2), ("decimal(price_text) * 2", 25),
    ("-amount", Decimal("-349.99")), ("amount - 49.99", 300), ("10 / 4", Decimal("2.5")),
    ("not high_value", False), ("high_value or missing", True), ("missing or 'x'", "x"),
    ("1 < 2 <= 2 < 3", True), ("1 < 2 > 3", False), ("price_text == 12.5", True),
    ("'a' + 'b'", "ab"), ("True == 1", False), ("None == missing", True), ("'x' == 1", False),
])
def test_evaluation(text: str, expected: Any) -> None:
    assert ev(text) == expected


def test_none_never_raises() -> None:
    for text in ("missing > 1", "missing < 1", "1 <= missing", "missing >= 'a'"):
        assert ev(text) is False
    assert ev("not missing > 300") is True
    assert ev("missing * 2") is None
    assert ev("len(missing)") is None
    assert ev("1 in missing") is False
    assert ev("missing != 1") is True


def test_large_ints_and_floats_from_env_compare_exactly() -> None:
    assert ev("a > b", {"a": 2**64 + 1, "b": 2**64}) is True
    assert ev("a == 0.1", {"a": 0.1}) is True
    assert ev("a == 300.01", {"a": 300.01}) is True


@pytest.mark.parametrize(("text", "env", "fragment"), [
    ("a > 1", {"a": "abc"}, "not both numbers"), ("a / 0", {"a": 1}, "DivisionByZero"),
    ("a > b", {"a": [1], "b": [2]}, "cannot order"), ("1 in a", {"a": "abc"}, "needs a string"),
    ("len(a)", {"a": 5}, "len() needs"), ("decimal(a)", {"a": "x"}, "cannot convert"),
    ("a - 1", {"a": "x"}, "not both numbers"), ("-a", {"a": "x"}, "unary -"),
    ("lower(a)", {"a": 1}, "lower() needs"), ("a * b", {"a": "ab", "b": 3}, "not both numbers"),
])
def test_evaluation_errors(text: str, env: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ExprError) as info:
        compile_expr(text).evaluate(env)
    assert fragment in str(info.value)


@pytest.mark.parametrize(("text", "fragment"), [
    ("__import__('os').system('true')", "method calls"),
    ("__import__('os')", "function '__import__' is not allowed"),
    ("open('/etc/passwd')", "function 'open' is not allowed"),
    ("x.__class__", "attribute '__class__'"), ("x._private", "attribute '_private'"),
    ("__builtins__", "name '__builtins__'"), ("lambda: 1", "lambda"),
    ("[x for x in y]", "comprehension"), ("{x for x in y}", "comprehension"),
    ("(x for x in y)", "generator expression"), ("(y := 1)", "assignment"),
    ("a if b else c", "conditional expression"), ("2 ** 100000", "**"), ("7 // 2", "//"),
    ("7 % 2", "%"), ("a[1:2]", "slicing"), ("x is None", "'is'"), ("f'{x}'", "f-string"),
    ("x.lower()", "method calls"), ("len(x, y)", "exactly 1"), ("len(x=1)", "exactly 1"),
    ("{'a': 1}", "Dict"), ("b'x'", "literal"), ("1j", "literal"), ("true", "write True"),
    ("import os", "invalid expression"), ("a = 1", "invalid expression"), ("(", "invalid"),
    ("", "non-empty"), ("-" * 100 + "1", "nested too deeply"), ("a\x00b", "invalid"),
    ("x" * 3000, "longer than"), ("~x", "Invert"), ("a & b", "BitAnd"),
])
def test_compile_rejections(text: str, fragment: str) -> None:
    with pytest.raises(ExprError) as info:
        compile_expr(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_not_a_string_is_rejected() -> None:
    with pytest.raises(ExprError):
        compile_expr(42)  # type: ignore[arg-type]


amounts = st.decimals(min_value=-10**9, max_value=10**9, places=2)


@given(amounts)
def test_comparison_matches_decimal_semantics(amount: Decimal) -> None:
    expr = compile_expr("amount > 300")
    assert expr.evaluate({"amount": amount}) is (amount > Decimal("300"))
    assert expr.evaluate({"amount": str(amount)}) is (amount > Decimal("300"))


@given(st.text(max_size=40))
def test_arbitrary_text_compiles_or_raises_expr_error(text: str) -> None:
    try:
        expr = compile_expr(text)
    except ExprError:
        return
    with contextlib.suppress(ExprError):
        expr.evaluate({})
