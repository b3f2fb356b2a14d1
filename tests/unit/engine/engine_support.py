"""A channel built around the scriptable Recorder destination (tests/recording.py), for engine
tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from alertpipe.config.model import AppSettings
from alertpipe.engine import Engine
from recording import Recorder, running, settle

__all__ = ["Recorder", "engine", "settings", "settle", "tag_region"]


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


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with running(settings()) as eng:
        yield eng


def tag_region(body: dict[str, Any], ctx: Any) -> dict[str, Any] | bool:
    """A user step for tests: drop test orders, tag the rest with a region."""
    if str(body.get("order_id", "")).startswith("TEST-"):
        return False
    return {**body, "region": "emea" if body.get("currency") == "EUR" else "amer"}
