"""The engine: channel runtime, workers, retry policy, pacing."""

from __future__ import annotations

from alertpipe.engine.channel import Accepted, ChannelRuntime
from alertpipe.engine.core import Engine
from alertpipe.engine.retry import DeadLetter, Retry, RetryPolicy

__all__ = ["Accepted", "ChannelRuntime", "DeadLetter", "Engine", "Retry", "RetryPolicy"]
