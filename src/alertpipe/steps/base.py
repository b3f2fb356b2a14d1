"""What a step is: a function of a :class:`StepContext`, run in order before the commit.

A step may change ``ctx.body``, set ``ctx.routes`` (which destinations get the message), drop the
message (``ctx.dropped``; it is stored as filtered and delivered nowhere), or reject it by raising
:class:`~alertpipe.errors.ValidationFailed` (HTTP 422; nothing is stored).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from alertpipe.errors import ConfigError


@dataclass
class StepContext:
    """The state one message carries through the steps."""

    channel: str
    body: dict[str, Any]
    vars: Mapping[str, Any]
    routes: list[str] | None = None
    dropped: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def env(self) -> dict[str, Any]:
        """Names an expression sees: the body's fields, then the channel's vars, which win (so a
        client can never override a configured threshold by sending a field of that name)."""
        return {**self.body, **self.vars}


class Step(Protocol):
    kind: str

    def __call__(self, ctx: StepContext) -> None: ...


@dataclass(frozen=True)
class BuildContext:
    """What a step builder may look at: the channel's name and destination names."""

    channel: str
    destinations: tuple[str, ...]


StepBuilder = Callable[[Any, BuildContext], Step]
BUILDERS: dict[str, StepBuilder] = {}


def register(kind: str) -> Callable[[StepBuilder], StepBuilder]:
    def deco(fn: StepBuilder) -> StepBuilder:
        BUILDERS[kind] = fn
        return fn
    return deco


def build_step(spec: Any, index: int, bctx: BuildContext) -> Step:
    """Build one step from its YAML form: a mapping with exactly one key naming the step kind."""
    key = f"steps.{index}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError("a step is a mapping with exactly one key, one of: "
                          + ", ".join(sorted(BUILDERS)), channel=bctx.channel, key=key)
    (kind, arg), = spec.items()
    builder = BUILDERS.get(kind)
    if builder is None:
        raise ConfigError(f"unknown step {kind!r}; expected one of: " + ", ".join(sorted(BUILDERS)),
                          channel=bctx.channel, key=key)
    try:
        return builder(arg, bctx)
    except ConfigError as exc:
        raise exc.located(channel=bctx.channel, key_prefix=f"{key}.{kind}") from None
