"""The values of the expression language (:mod:`alertpipe.steps.expr`): comparison, arithmetic,
indexing and the allowed functions, with the semantics its module docstring fixes.

Every number is a ``Decimal`` (computed in a 34-digit context that traps invalid operations,
division by zero and overflow); a numeric string meets a number as its value; ``None`` (a missing
field) never raises. A type clash raises :class:`ExprError`, which names the values it met
(shortened, see :func:`show`).
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from decimal import Context, Decimal, DecimalException, DivisionByZero, InvalidOperation, Overflow
from typing import Any

from alertpipe.errors import ConfigError


class ExprError(ConfigError):
    """An expression that is not allowed, does not parse, or cannot be evaluated on its input."""


_CTX = Context(prec=34, traps=[InvalidOperation, DivisionByZero, Overflow])
_NUMERIC = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
ARITH = {ast.Add: _CTX.add, ast.Sub: _CTX.subtract, ast.Mult: _CTX.multiply, ast.Div: _CTX.divide}


def show(value: Any) -> str:
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def number(value: Any) -> Decimal | None:
    """``value`` as a Decimal if it is a number or a numeric string, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, str) and len(value) <= 100 and _NUMERIC.fullmatch(value):
        return Decimal(value.strip())
    return None


def is_num(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def equal(a: Any, b: Any) -> bool:
    if is_num(a) or is_num(b):
        x, y = number(a), number(b)
        return x is not None and y is not None and x == y
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(equal(p, q) for p, q in zip(a, b, strict=True))
    return bool(a == b)


def order(op: Callable[[Any, Any], bool], a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    if is_num(a) or is_num(b):
        x, y = number(a), number(b)
        if x is None or y is None:
            raise ExprError(f"cannot compare {show(a)} with {show(b)}: not both numbers")
        return False if x.is_nan() or y.is_nan() else op(x, y)
    if isinstance(a, str) and isinstance(b, str):
        return op(a, b)
    raise ExprError(f"cannot order {type(a).__name__} against {type(b).__name__}")


def contains(container: Any, item: Any) -> bool:
    if container is None or item is None:
        return False
    if isinstance(container, str):
        if not isinstance(item, str):
            raise ExprError(f"'in' a string needs a string, got {type(item).__name__}")
        return item in container
    if isinstance(container, Mapping):
        return item in container
    if isinstance(container, list | tuple):
        return any(equal(item, member) for member in container)
    raise ExprError(f"'in' needs a string, list or mapping, got {type(container).__name__}")


def arith(op: Callable[[Decimal, Decimal], Decimal], name: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if name == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    x, y = number(a), number(b)
    if x is None or y is None or not (is_num(a) or is_num(b)):
        raise ExprError(f"cannot compute {show(a)} {name} {show(b)}: not both numbers")
    try:
        return op(x, y)
    except (DecimalException, ZeroDivisionError) as exc:
        reason = type(exc).__name__
        raise ExprError(f"cannot compute {show(a)} {name} {show(b)}: {reason}") from None


def signed(sign: int, value: Any) -> Any:
    n = number(value)
    if n is None and value is not None:
        raise ExprError(f"cannot apply unary {'-' if sign < 0 else '+'} to {show(value)}")
    return n if n is None or sign > 0 else -n


def item(container: Any, key: Any) -> Any:
    if isinstance(container, Mapping):
        return container.get(key) if isinstance(key, str) else None
    if isinstance(container, list | tuple):
        index = number(key) if is_num(key) else None
        if index is None or index != index.to_integral_value() or abs(index) > len(container):
            return None
        position = int(index)
        return container[position] if -len(container) <= position < len(container) else None
    return None


def _text_fn(name: str, fn: Callable[[str], Any]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            return fn(value)
        raise ExprError(f"{name}() needs a string, got {type(value).__name__}")
    return apply


def _len(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str | list | tuple | Mapping):
        return Decimal(len(value))
    raise ExprError(f"len() needs a string, list or mapping, got {type(value).__name__}")


def _decimal(value: Any) -> Any:
    n = number(value)
    if n is None and value is not None:
        raise ExprError(f"decimal() cannot convert {show(value)} to a number")
    return n


def _startswith(text: Any, prefix: Any) -> bool:
    return isinstance(text, str) and isinstance(prefix, str) and text.startswith(prefix)


COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: lambda a, b: order(operator.lt, a, b), ast.LtE: lambda a, b: order(operator.le, a, b),
    ast.Gt: lambda a, b: order(operator.gt, a, b), ast.GtE: lambda a, b: order(operator.ge, a, b),
    ast.Eq: equal, ast.NotEq: lambda a, b: not equal(a, b),
    ast.In: lambda a, b: contains(b, a), ast.NotIn: lambda a, b: not contains(b, a),
}
FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "len": (1, _len), "lower": (1, _text_fn("lower", str.lower)),
    "upper": (1, _text_fn("upper", str.upper)), "decimal": (1, _decimal),
    "contains": (2, contains), "startswith": (2, _startswith),
}


__all__ = ["ARITH", "COMPARE", "FUNCTIONS", "ExprError", "arith", "contains", "equal", "is_num",
           "item", "number", "order", "show", "signed"]
