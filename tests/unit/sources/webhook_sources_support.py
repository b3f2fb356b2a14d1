"""An engine with one webhook source and recording destinations, reached through ASGITransport."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from alertpipe.config.model import AppSettings
from alertpipe.destinations import REGISTRY, Delivery, Destination, DestinationConfig, Sent
from alertpipe.engine import Engine
from alertpipe.message import Message
from alertpipe.store import MemoryStore, StoredMessage
from alertpipe.web import create_app

FIXTURES = Path(__file__).parent / "fixtures"
Client = tuple[httpx.AsyncClient, Engine]


class SinkConfig(DestinationConfig):
    targets: list[str] = []


class Sink(Destination):
    """Accepts every delivery."""

    type_name: ClassVar[str] = "webhook_sources_sink"
    Config: ClassVar[type[DestinationConfig]] = SinkConfig

    def targets(self, message: Message) -> Sequence[str | None]:
        return list(self.config.targets) or [None]

    async def send(self, delivery: Delivery) -> Sent:
        return Sent(remote_id=f"sink-{delivery.id}")


REGISTRY[Sink.type_name] = Sink


def settings(source: dict[str, Any], **engine: Any) -> AppSettings:
    channel: dict[str, Any] = {
        "source": source,
        "vars": {"threshold": 300},
        "steps": [{"validate": "order"},
                  {"map": {"high_value": "amount > threshold"}},
                  {"route": [{"to": "sheet"}, {"to": "sms", "when": "high_value"}]}],
        "destinations": {"sheet": {"type": Sink.type_name},
                         "sms": {"type": Sink.type_name, "targets": ["+15550001"]}},
    }
    return AppSettings.model_validate({"engine": {"store": "memory://",
                                                  "poll_interval_seconds": 0.05, **engine},
                                       "channels": {"orders": channel}})


@asynccontextmanager
async def running(source: dict[str, Any],
                  **engine: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    eng = Engine(settings(source, **engine), store=MemoryStore())
    await eng.start()
    try:
        transport = httpx.ASGITransport(app=create_app(eng))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c, eng
    finally:
        await eng.stop()


def client_fixture(source: dict[str, Any]) -> Any:
    """A ``client`` fixture for a test module: ``(http client, engine)`` with ``source`` running.
    Assign it as ``client = client_fixture(SOURCE)``."""

    @pytest.fixture
    async def client() -> AsyncIterator[Client]:
        async with running(source) as c:
            yield c

    return client


async def stored(eng: Engine) -> list[StoredMessage]:
    return await eng.store.list_messages()


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture_bytes(name))
    return data


def b64_hmac(secret: str, raw: bytes) -> str:
    """Computed here independently of the code under test."""
    return base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()
