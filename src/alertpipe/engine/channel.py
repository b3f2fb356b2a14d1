"""A channel at run time: its steps, its destinations, its workers."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from alertpipe.config.loader import config_error_from
from alertpipe.config.model import ChannelSettings
from alertpipe.destinations import REGISTRY, Destination, load_builtins
from alertpipe.engine.retry import RetryPolicy
from alertpipe.errors import ConfigError
from alertpipe.message import Message
from alertpipe.steps import BuildContext, Step, StepContext, build_step
from alertpipe.store.base import NewDelivery, Store

_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def normalise_vars(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Channel vars: numbers (and strings that look like numbers) become exact ``Decimal``."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if isinstance(v, bool):
            out[k] = v
        elif isinstance(v, int | float):
            out[k] = Decimal(str(v))
        elif isinstance(v, str) and _NUMBER.match(v.strip()):
            out[k] = Decimal(v.strip())
        else:
            out[k] = v
    return out


def build_destination(channel: str, name: str, spec: Mapping[str, Any]) -> Destination:
    from pydantic import ValidationError

    load_builtins()
    key = f"destinations.{name}"
    kind = spec.get("type")
    cls = REGISTRY.get(str(kind))
    if cls is None:
        raise ConfigError(f"unknown destination type {kind!r}; expected one of: "
                          + ", ".join(sorted(REGISTRY)), channel=channel, key=f"{key}.type")
    try:
        cfg = cls.Config.model_validate(dict(spec))
        dest = cls(name, cfg)
    except ValidationError as exc:
        raise config_error_from(exc, prefix=("channels", channel, "destinations", name)) from None
    except ConfigError as exc:
        raise exc.located(channel=channel, key_prefix=key) from None
    return dest


@dataclass(frozen=True, slots=True)
class Accepted:
    message: Message
    routes: tuple[str, ...]
    deliveries: int


class ChannelRuntime:
    def __init__(self, name: str, settings: ChannelSettings, store: Store) -> None:
        self.name = name
        self.settings = settings
        self.store = store
        self.vars = normalise_vars(settings.vars)
        self.destinations: dict[str, Destination] = {
            dname: build_destination(name, dname, spec)
            for dname, spec in settings.destinations.items()}
        bctx = BuildContext(channel=name, destinations=tuple(self.destinations))
        self.steps: list[Step] = [build_step(s, i, bctx) for i, s in enumerate(settings.steps)]
        self.policy = RetryPolicy(settings.retry)
        self.running = True
        self.received = 0
        self.filtered = 0

    def check(self) -> None:
        for dname, dest in self.destinations.items():
            try:
                dest.check()
            except ConfigError as exc:
                raise exc.located(channel=self.name, key_prefix=f"destinations.{dname}") from None

    def process(self, body: dict[str, Any], raw: bytes,
                meta: Mapping[str, Any] | None = None) -> tuple[Message, list[NewDelivery]]:
        """Run the steps. Raises ValidationFailed to reject; returns the message and its rows."""
        ctx = StepContext(channel=self.name, body=body, vars=self.vars, meta=dict(meta or {}))
        for step in self.steps:
            step(ctx)
            if ctx.dropped:
                break
        message = Message.new(self.name, ctx.body, raw=raw, meta=ctx.meta)
        if ctx.dropped:
            return message, []
        routes = ctx.routes if ctx.routes is not None else list(self.destinations)
        rows = [NewDelivery(r, t) for r in routes for t in self.destinations[r].targets(message)]
        return message, rows

    async def accept(self, body: dict[str, Any], raw: bytes,
                     meta: Mapping[str, Any] | None = None,
                     before_commit: Callable[[Message], None] | None = None) -> Accepted:
        """Process and durably store a message; returns after the commit.

        ``before_commit`` sees the message once its id exists, before it can be delivered.
        """
        message, rows = self.process(body, raw, meta)
        if before_commit is not None:
            before_commit(message)
        await self.store.enqueue(message, rows)
        self.received += 1
        if not rows:
            self.filtered += 1
        return Accepted(message=message, routes=tuple(dict.fromkeys(r.destination for r in rows)),
                        deliveries=len(rows))
