"""The built-in steps: validate, filter, map, route."""

from __future__ import annotations

from typing import Any

from alertpipe.errors import ConfigError
from alertpipe.schemas import SCHEMAS
from alertpipe.steps.base import BuildContext, Step, StepContext, register
from alertpipe.steps.expr import Expr, compile_expr


class ValidateStep:
    """Validate and normalise the body against a named schema (``validate: order``)."""

    kind = "validate"

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._fn = SCHEMAS[schema]

    def __call__(self, ctx: StepContext) -> None:
        ctx.body = self._fn(ctx.body)


class FilterStep:
    """Keep the message only when the expression is true (``filter: currency == "USD"``)."""

    kind = "filter"

    def __init__(self, expr: Expr) -> None:
        self.expr = expr

    def __call__(self, ctx: StepContext) -> None:
        if not self.expr.evaluate(ctx.env()):
            ctx.dropped = True


class MapStep:
    """Set fields from expressions (``map: {high_value: amount > threshold}``), in order."""

    kind = "map"

    def __init__(self, fields: dict[str, Expr]) -> None:
        self.fields = fields

    def __call__(self, ctx: StepContext) -> None:
        env = ctx.env()
        for name, expr in self.fields.items():
            value = ctx.body[name] = expr.evaluate(env)
            if name not in ctx.vars:  # later fields see earlier ones; vars still win
                env[name] = value


class RouteStep:
    """Send to every destination whose rule matches (``route: [{to: sheet}, {to: sms, when: …}]``).

    A rule without ``when`` always matches. The destinations are added in rule order.
    """

    kind = "route"

    def __init__(self, rules: list[tuple[str, Expr | None]]) -> None:
        self.rules = rules

    def __call__(self, ctx: StepContext) -> None:
        env = ctx.env()
        routes = list(ctx.routes or [])
        for dest, when in self.rules:
            if (when is None or when.evaluate(env)) and dest not in routes:
                routes.append(dest)
        ctx.routes = routes


def _expr(text: Any, key: str) -> Expr:
    if isinstance(text, bool | int | float):
        text = str(text)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("expected an expression string", key=key)
    try:
        return compile_expr(text)
    except ConfigError as exc:
        raise ConfigError(exc.reason, key=key) from None


@register("validate")
def _validate(arg: Any, bctx: BuildContext) -> Step:
    if not isinstance(arg, str) or arg not in SCHEMAS:
        raise ConfigError(f"unknown schema {arg!r}; known: {', '.join(sorted(SCHEMAS))}")
    return ValidateStep(arg)


@register("filter")
def _filter(arg: Any, bctx: BuildContext) -> Step:
    return FilterStep(_expr(arg, "when") if not isinstance(arg, dict)
                      else _expr(arg.get("when"), "when"))


@register("map")
def _map(arg: Any, bctx: BuildContext) -> Step:
    if not isinstance(arg, dict) or not arg:
        raise ConfigError("expected a mapping of field name to expression")
    return MapStep({str(k): _expr(v, str(k)) for k, v in arg.items()})


@register("route")
def _route(arg: Any, bctx: BuildContext) -> Step:
    if not isinstance(arg, list) or not arg:
        raise ConfigError("expected a list of rules like {to: DESTINATION, when: EXPR}")
    rules: list[tuple[str, Expr | None]] = []
    for i, rule in enumerate(arg):
        if not isinstance(rule, dict) or "to" not in rule or set(rule) - {"to", "when"}:
            raise ConfigError("a rule is a mapping with 'to' and an optional 'when'", key=str(i))
        dest = rule["to"]
        if dest not in bctx.destinations:
            raise ConfigError(f"unknown destination {dest!r}; this channel has: "
                              + ", ".join(bctx.destinations), key=f"{i}.to")
        when = _expr(rule["when"], f"{i}.when") if "when" in rule else None
        rules.append((dest, when))
    return RouteStep(rules)
