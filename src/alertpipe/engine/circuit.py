"""A circuit breaker per destination.

Closed: sends flow. After ``failure_threshold`` consecutive failed rounds (every delivery in the
round failed with a retryable error) it opens: the worker stops claiming for ``reset_seconds``,
so a dead remote is not hammered and deliveries wait in the store. Then it is half-open: one
probe delivery goes out; success closes the circuit, failure opens it again. Permanent errors
are about one message, not the remote, and do not count; nor do throttled errors (the remote
asking us to slow down). Transitions are logged and the state
shows in ``/readyz``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

log = logging.getLogger("alertpipe.circuit")

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, name: str, failure_threshold: int = 5, reset_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self.clock = clock
        self.state: State = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.opened_count = 0

    def remaining(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when it may send now)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self.opened_at + self.reset_seconds - self.clock())

    def allow(self) -> bool:
        """May the worker send now? Moves an open circuit to half-open once it has rested."""
        if self.state == "open" and self.remaining() <= 0:
            self._move("half_open")
        return self.state != "open"

    def record_success(self) -> None:
        self.failures = 0
        if self.state != "closed":
            self._move("closed")

    def record_failure(self) -> None:
        self.failures += 1
        if self.state == "half_open" or (self.state == "closed"
                                         and self.failures >= self.threshold):
            self.opened_at = self.clock()
            self.opened_count += 1
            self._move("open")

    def _move(self, state: State) -> None:
        log.warning("circuit %s", state.replace("_", "-"),
                    extra={"destination": self.name, "circuit": state,
                           "consecutive_failures": self.failures})
        self.state = state
