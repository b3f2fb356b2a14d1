"""A small, safe expression language for channel configs and ``replay --where``.

``when: amount > threshold and currency == "USD"``. Text is parsed with :mod:`ast` (eval mode)
and every node is checked against a whitelist, then turned into a tree of closures; nothing is
ever handed to ``eval``. Anything not listed here is an :class:`ExprError` at compile time.

Allowed: literals (numbers, strings, ``True``/``False``/``None``, lists/tuples); names (looked up
in the environment, a missing name is ``None``); ``a.b`` and ``a[0]`` on mappings and lists
(missing keys and out-of-range indexes give ``None``); comparisons ``== != < <= > >= in not in``
(chained); ``and or not``; ``+ - * /`` and unary minus; the functions ``len lower upper
contains(a, b) startswith(s, prefix) decimal(x)``.

Semantics, decided once:

* Every number is a ``Decimal``: literals from their exact source text (``300.01`` is
  ``Decimal("300.01")``), ``int`` from the environment exactly, ``float`` via ``str``.
  ``bool`` is not a number (``True == 1`` is false).
* A numeric string meets a number as its ``Decimal`` value (``"349.99" > 300`` is true). Ordering a
  non-numeric string against a number, or unrelated types, raises :class:`ExprError`;
  ``==`` between them is simply false.
* ``None`` (a missing field) never raises: ``None`` ordered against anything is false
  (so ``amount > 300`` is false and ``not amount > 300`` is true when ``amount`` is missing),
  arithmetic and ``len/lower/upper/decimal`` on ``None`` give ``None``, ``x in None`` is false.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from alertpipe.steps._exprvalues import (
    ARITH,
    COMPARE,
    FUNCTIONS,
    ExprError,
    arith,
    item,
    show,
    signed,
)

_Fn = Callable[[Mapping[str, Any]], Any]
_MAX_LENGTH, _MAX_DEPTH = 2000, 40
_FORBIDDEN = {"Lambda": "lambda", "ListComp": "comprehension", "SetComp": "comprehension",
              "DictComp": "comprehension", "GeneratorExp": "generator expression",
              "NamedExpr": "assignment (:=)", "IfExp": "conditional expression (x if c else y)",
              "Pow": "the ** operator", "FloorDiv": "the // operator", "Mod": "the % operator",
              "JoinedStr": "f-string", "Starred": "*unpacking", "Slice": "slicing",
              "Is": "'is' (use ==)", "IsNot": "'is not' (use !=)", "Await": "await"}


class _Compiler:
    def __init__(self, source: str) -> None:
        self.source = source
        self.names: set[str] = set()

    def fail(self, node: ast.AST, what: str) -> ExprError:
        col = getattr(node, "col_offset", None)
        where = f" at column {col + 1}" if col is not None else ""
        return ExprError(f"{what}{where} in expression {show(self.source)}")

    def compile(self, node: ast.AST, depth: int = 0) -> _Fn:
        if depth > _MAX_DEPTH:
            raise self.fail(node, "expression nested too deeply")
        method = getattr(self, f"do_{type(node).__name__}", None)
        if method is None:
            name = type(node).__name__
            raise self.fail(node, f"{_FORBIDDEN.get(name, name)} is not allowed")
        fn: _Fn = method(node, depth + 1)
        return fn

    def do_Constant(self, node: ast.Constant, depth: int) -> _Fn:
        value: Any = node.value
        if isinstance(value, int) and not isinstance(value, bool):
            value = Decimal(value)
        elif isinstance(value, float):
            value = Decimal(ast.get_source_segment(self.source, node) or repr(value))
        elif not isinstance(value, str | bool) and value is not None:
            raise self.fail(node, f"literal {value!r} is not allowed")
        return lambda env: value

    def do_Name(self, node: ast.Name, depth: int) -> _Fn:
        name = node.id
        if name.startswith("__"):
            raise self.fail(node, f"name {name!r} is not allowed")
        if name in ("true", "false", "null", "none"):
            raise self.fail(node, f"unknown literal {name!r} (write True, False or None)")
        self.names.add(name)
        return lambda env: env.get(name)

    def do_Attribute(self, node: ast.Attribute, depth: int) -> _Fn:
        attr = node.attr
        if attr.startswith("_"):
            raise self.fail(node, f"attribute {attr!r} is not allowed")
        value = self.compile(node.value, depth)
        return lambda env: item(value(env), attr)

    def do_Subscript(self, node: ast.Subscript, depth: int) -> _Fn:
        value, key = self.compile(node.value, depth), self.compile(node.slice, depth)
        return lambda env: item(value(env), key(env))

    def do_List(self, node: ast.List | ast.Tuple, depth: int) -> _Fn:
        parts = [self.compile(element, depth) for element in node.elts]
        return lambda env: [part(env) for part in parts]

    do_Tuple = do_List

    def do_BoolOp(self, node: ast.BoolOp, depth: int) -> _Fn:
        parts = [self.compile(value, depth) for value in node.values]
        stop_when = isinstance(node.op, ast.Or)  # `and` stops at a falsy value, `or` a truthy

        def run(env: Mapping[str, Any]) -> Any:
            result: Any = None
            for part in parts:
                result = part(env)
                if bool(result) is stop_when:
                    break
            return result
        return run

    def do_UnaryOp(self, node: ast.UnaryOp, depth: int) -> _Fn:
        operand = self.compile(node.operand, depth)
        if isinstance(node.op, ast.Not):
            return lambda env: not operand(env)
        if isinstance(node.op, ast.USub | ast.UAdd):
            sign = -1 if isinstance(node.op, ast.USub) else 1
            return lambda env: signed(sign, operand(env))
        raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")

    def do_BinOp(self, node: ast.BinOp, depth: int) -> _Fn:
        op = ARITH.get(type(node.op))
        if op is None:
            name = type(node.op).__name__
            raise self.fail(node, f"{_FORBIDDEN.get(name, name)} is not allowed")
        symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}[type(node.op)]
        left, right = self.compile(node.left, depth), self.compile(node.right, depth)
        return lambda env: arith(op, symbol, left(env), right(env))

    def do_Compare(self, node: ast.Compare, depth: int) -> _Fn:
        for op in node.ops:
            if type(op) not in COMPARE:
                name = type(op).__name__
                raise self.fail(node, f"{_FORBIDDEN.get(name, name)} is not allowed")
        tests = [COMPARE[type(op)] for op in node.ops]
        operands = [self.compile(part, depth) for part in (node.left, *node.comparators)]

        def compare(env: Mapping[str, Any]) -> bool:
            left = operands[0](env)
            for test, operand in zip(tests, operands[1:], strict=True):
                right = operand(env)
                if not test(left, right):
                    return False
                left = right
            return True
        return compare

    def do_Call(self, node: ast.Call, depth: int) -> _Fn:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, "method calls are not allowed (write lower(x), not x.lower())")
        name = node.func.id
        if name not in FUNCTIONS:
            allowed = ", ".join(sorted(FUNCTIONS))
            raise self.fail(node, f"function {name!r} is not allowed (allowed: {allowed})")
        arity, fn = FUNCTIONS[name]
        if node.keywords or len(node.args) != arity:
            raise self.fail(node, f"{name}() takes exactly {arity} positional argument(s)")
        args = [self.compile(arg, depth) for arg in node.args]
        return lambda env: fn(*(arg(env) for arg in args))


class Expr:
    """A compiled expression: ``source`` is its text, ``names`` the top-level names it reads."""

    __slots__ = ("_fn", "names", "source")

    def __init__(self, source: str, fn: _Fn, names: frozenset[str]) -> None:
        self.source, self._fn, self.names = source, fn, names

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        """Evaluate against ``env``; raises :class:`ExprError` on a type clash (see module doc)."""
        return self._fn(env)

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"


def compile_expr(text: str) -> Expr:
    """Parse and check ``text``; raise :class:`ExprError` naming what is not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError(f"an expression must be a non-empty string, got {show(text)}")
    if len(text) > _MAX_LENGTH:
        raise ExprError(f"expression longer than {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        detail = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
        raise ExprError(f"invalid expression {show(text)}: {detail}") from None
    compiler = _Compiler(text.strip())
    fn = compiler.compile(tree.body)
    return Expr(text, fn, frozenset(compiler.names))


__all__ = ["Expr", "ExprError", "compile_expr"]
