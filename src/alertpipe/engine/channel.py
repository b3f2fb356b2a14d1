"""A channel at run time: its steps, its destinations, its workers."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
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
from alertpipe.steps.expr import compile_expr
from alertpipe.store.base import MessageKey, NewDelivery, Store

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


def build_source(channel: str, spec: Mapping[str, Any]) -> Any:
    """The channel's source, its config validated by the source's own spec."""
    from pydantic import ValidationError

    from alertpipe.sources import SOURCES, load_builtins

    load_builtins()
    kind = spec.get("type", "http_json")
    cls = SOURCES.get(str(kind))
    if cls is None:
        raise ConfigError(f"unknown source type {kind!r}; expected one of: "
                          + ", ".join(sorted(SOURCES)), channel=channel, key="source.type")
    try:
        return cls(channel, cls.Config.model_validate({"type": kind, **spec}))
    except ValidationError as exc:
        raise config_error_from(exc, prefix=("channels", channel, "source")) from None


@dataclass(frozen=True, slots=True)
class Accepted:
    """The result of intake. With ``conflict`` set, nothing new was stored: ``message_id`` is
    the message that already holds the key (a duplicate, or an idempotent replay)."""

    message: Message
    message_id: str
    routes: tuple[str, ...]
    deliveries: int
    conflict: MessageKey | None = None
    fingerprint: str | None = None


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
        self.source = build_source(name, settings.source)
        self.dedupe = settings.dedupe
        try:
            self._dedupe_expr = compile_expr(self.dedupe.key) if self.dedupe else None
        except ConfigError as exc:
            raise ConfigError(exc.reason, channel=name, key="dedupe.key") from None

    def check(self) -> None:
        try:
            self.source.check()
        except ConfigError as exc:
            raise exc.located(channel=self.name, key_prefix="source") from None
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
        message = Message.new(self.name, ctx.body, raw=raw, meta=ctx.meta,
                              ref=self._ref(ctx.body))
        if ctx.dropped:
            return message, []
        routes = ctx.routes if ctx.routes is not None else list(self.destinations)
        rows = [NewDelivery(r, t) for r in routes for t in self.destinations[r].targets(message)]
        return message, rows

    def _ref(self, body: Mapping[str, Any]) -> str | None:
        """The business key: the value of the channel's de-duplication key, if any."""
        if self._dedupe_expr is None:
            return None
        value = self._dedupe_expr.evaluate(body)
        return None if value is None or value == "" else str(value)

    def dedupe_key(self, message: Message) -> MessageKey | None:
        if self.dedupe is None or message.ref is None:
            return None
        return MessageKey("dedupe", message.ref, self.dedupe.window_seconds)

    async def accept(self, body: dict[str, Any], raw: bytes,
                     meta: Mapping[str, Any] | None = None,
                     before_commit: Callable[[Message], None] | None = None,
                     keys: Sequence[MessageKey] = ()) -> Accepted:
        """Process and durably store a message; returns after the commit.

        ``keys`` (an Idempotency-Key, a webhook's event id) and the channel's dedupe key are
        checked and written atomically with the message. ``before_commit`` sees the message once
        its id exists, before it can be delivered.
        """
        message, rows = self.process(body, raw, meta)
        all_keys = list(keys)
        dk = self.dedupe_key(message)
        if dk is not None:
            all_keys.append(dk)
        if before_commit is not None:
            before_commit(message)
        result = await self.store.enqueue(message, rows, all_keys)
        routes = tuple(dict.fromkeys(r.destination for r in rows))
        if not result.created:
            return Accepted(message=message, message_id=result.message_id, routes=routes,
                            deliveries=0, conflict=result.conflict,
                            fingerprint=result.fingerprint)
        return Accepted(message=message, message_id=message.id, routes=routes,
                        deliveries=len(rows))
