"""Test helpers shared by the engine and web suites: a destination that records what it is
sent, waiting for a message's outcome, and an engine started for one test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

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
    """Records what it is sent. ``script`` holds errors for the next sends, one each; ``fail``,
    while set, fails every send with it (dead letters); ``poison`` is an order_id that makes a
    whole batch fail (400); ``hold``, while not set, makes sends wait (a slow remote); ``event``
    is set at every send; ``not_ready`` is what :meth:`ready_in` answers (``asked`` is set each
    time the worker asks)."""

    type_name: ClassVar[str] = "recorder"
    Config: ClassVar[type[DestinationConfig]] = RecorderConfig

    def __init__(self, name: str, config: Any) -> None:
        super().__init__(name, config)
        self.batch_size = config.batch_size
        self.concurrency = 1
        self.sent: list[Delivery] = []
        self.calls = 0
        self.script: list[DeliveryError | None] = []
        self.fail: DeliveryError | None = None
        self.poison: str | None = None
        self.hold: asyncio.Event | None = None
        self.event = asyncio.Event()
        self.not_ready = 0.0
        self.asked = asyncio.Event()

    def ready_in(self) -> float:
        self.asked.set()
        return self.not_ready

    def targets(self, message: Message) -> Sequence[str | None]:
        return list(self.config.targets) or [None]

    async def send_batch(self, deliveries: Sequence[Delivery]) -> list[Any]:
        self.calls += 1
        self.event.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.fail is not None:
            return [self.fail] * len(deliveries)
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


async def settle(engine: Engine, message_id: str, timeout: float = 5.0) -> None:
    """Wait (on the engine's own outcome events) until every delivery is final."""
    done, _ = await engine.wait_final(message_id, timeout)
    if not done:
        raise TimeoutError(f"message {message_id} not final within {timeout} s")


@asynccontextmanager
async def running(settings: AppSettings) -> AsyncIterator[Engine]:
    """An engine on a fresh in-memory store, started, and stopped afterwards."""
    eng = Engine(settings, store=MemoryStore())
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()
