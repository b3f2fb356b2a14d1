"""The retry policy: a pure function from (delivery, error, now) to a decision.

Exponential backoff with full jitter (delay drawn uniformly from [0, min(cap, base·2^n)]),
honouring a remote ``Retry-After`` as a floor, capped both by attempts and by the message's age.
After an ambiguous failure (the request may still be landing) the delay is at least
``ambiguous_min_delay_seconds``, so the next attempt's look-up sees the earlier effect.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from alertpipe.config.model import RetrySettings
from alertpipe.errors import DeliveryError, PermanentError, RetryableError


@dataclass(frozen=True, slots=True)
class Retry:
    at: datetime
    delay: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str


Decision = Retry | DeadLetter


class RetryPolicy:
    def __init__(self, settings: RetrySettings, rng: random.Random | None = None) -> None:
        self.s = settings
        self._rng = rng or random.Random()

    def backoff(self, attempt: int) -> float:
        """Full-jitter delay before attempt ``attempt + 1`` (``attempt`` counts failures so far)."""
        ceiling = min(self.s.max_delay_seconds, self.s.base_delay_seconds * 2 ** (attempt - 1))
        return self._rng.uniform(0, ceiling)

    def decide(self, error: BaseException, attempts: int, first_seen: datetime,
               now: datetime) -> Decision:
        """``attempts`` includes the attempt that just failed."""
        if isinstance(error, PermanentError):
            return DeadLetter(f"permanent error: {error}")
        if not isinstance(error, RetryableError):
            kind = "delivery error" if isinstance(error, DeliveryError) else "internal error"
            return DeadLetter(f"{kind}: {type(error).__name__}: {error}")
        if attempts >= self.s.max_attempts:
            return DeadLetter(f"gave up after {attempts} attempts: {error}")
        delay = self.backoff(attempts)
        if error.retry_after is not None:
            delay = max(delay, float(error.retry_after))
        if error.ambiguous:
            delay = max(delay, self.s.ambiguous_min_delay_seconds)
        at = now + timedelta(seconds=delay)
        if (at - first_seen).total_seconds() > self.s.max_age_seconds:
            return DeadLetter(f"gave up after {attempts} attempts: older than "
                              f"{self.s.max_age_seconds:g}s: {error}")
        return Retry(at=at, delay=delay)
