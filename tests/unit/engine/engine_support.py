"""A scriptable destination and a channel built around it, for engine tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import pytest

from alertpipe.config.model import AppSettings
from alertpipe.destinations import REGISTRY, Delivery, Destination, DestinationConfig, Sent
from alertpipe.engine import Engine
from alertpipe.errors import DeliveryError, PermanentError
from alertpipe.message import Message
from alertpipe.store import MemoryStore


class RecorderConfig(DestinationConfig):
    targets: list[str] = []
    batch_size: int = 1


class Recorder(Destination):
    """Records what it is sent; ``script`` holds errors to raise on the next sends."""

    type_name: ClassVar[str] = "recorder"
    Config: ClassVar[type[DestinationConfig]] = RecorderConfig

    def __init__(self, name: str, config: Any) -> None:
        super().__init__(name, config)
        self.batch_size = config.batch_size
        self.concurrency = 1
        self.sent: list[Delivery] = []
        self.calls = 0
        self.script: list[DeliveryError | None] = []
        self.poison: str | None = None  # an order_id that makes the whole batch fail (400)
        self.hold: asyncio.Event | None = None  # when set, sends wait for it (a slow remote)
        self.event = asyncio.Event()

    def targets(self, message: Message) -> Sequence[str | None]:
        return list(self.config.targets) or [None]

    async def send_batch(self, deliveries: Sequence[Delivery]) -> list[Any]:
        self.calls += 1
        self.event.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.script:
            err = self.script.pop(0)
            if err is not None:
                return [err] * len(deliveries)
        if self.poison and any(d.message.body.get("order_id") == self.poison
                               for d in deliveries):
            raise PermanentError("400 INVALID_ARGUMENT: the batch holds an invalid row", code=400)
        self.sent.extend(deliveries)
        return [Sent(remote_id=f"r-{d.id}") for d in deliveries]


REGISTRY["recorder"] = Recorder


def settings(**channel: Any) -> AppSettings:
    base: dict[str, Any] = {
        "vars": {"threshold": 300},
        "steps": [{"validate": "order"},
                  {"map": {"high_value": "amount > threshold"}},
                  {"route": [{"to": "sheet"}, {"to": "sms", "when": "high_value"}]}],
        "destinations": {"sheet": {"type": "recorder", "batch_size": 100},
                         "sms": {"type": "recorder", "targets": ["+15550001", "+15550002"]}},
        "retry": {"base_delay_seconds": 0.01, "max_delay_seconds": 0.02, "max_attempts": 3},
    }
    base.update(channel)
    return AppSettings.model_validate({"engine": {"store": "memory://",
                                                  "poll_interval_seconds": 0.05},
                                       "channels": {"orders": base}})


async def settle(engine: Engine, message_id: str, timeout: float = 5.0) -> None:
    """Wait (on the engine's own outcome events) until every delivery is final."""
    done, _ = await engine.wait_final(message_id, timeout)
    if not done:
        raise TimeoutError(f"message {message_id} not final within {timeout} s")


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    eng = Engine(settings(), store=MemoryStore())
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()


def tag_region(body: dict[str, Any], ctx: Any) -> dict[str, Any] | bool:
    """A user step for tests: drop test orders, tag the rest with a region."""
    if str(body.get("order_id", "")).startswith("TEST-"):
        return False
    return {**body, "region": "emea" if body.get("currency") == "EUR" else "amer"}
