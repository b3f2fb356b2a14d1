"""The retry policy: full jitter, Retry-After as a floor, caps on attempts and age."""

from __future__ import annotations

import random
from datetime import timedelta

from alertpipe.config.model import RetrySettings
from alertpipe.engine.retry import DeadLetter, Retry, RetryPolicy
from alertpipe.errors import PermanentError, RetryableError, UsageError
from alertpipe.message import utcnow

S = RetrySettings(max_attempts=5, max_age_seconds=600, base_delay_seconds=1,
                  max_delay_seconds=30)


def test_full_jitter_stays_within_exponential_ceiling() -> None:
    p = RetryPolicy(S, random.Random(7))
    for attempt in range(1, 10):
        ceiling = min(30, 2 ** (attempt - 1))
        delays = [p.backoff(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spans the range, not a constant


def test_retry_after_is_a_floor() -> None:
    now = utcnow()
    d = RetryPolicy(S).decide(RetryableError("429", retry_after=17), 1, now, now)
    assert isinstance(d, Retry) and d.delay >= 17 and d.at >= now + timedelta(seconds=17)


def test_permanent_and_programming_errors_are_not_retried() -> None:
    now = utcnow()
    assert isinstance(RetryPolicy(S).decide(PermanentError("21211"), 1, now, now), DeadLetter)
    d = RetryPolicy(S).decide(UsageError("bug"), 1, now, now)
    assert isinstance(d, DeadLetter) and "internal error" in d.reason


def test_attempt_and_age_caps() -> None:
    now = utcnow()
    d = RetryPolicy(S).decide(RetryableError("503"), 5, now, now)
    assert isinstance(d, DeadLetter) and "after 5 attempts" in d.reason
    old = now - timedelta(seconds=599)
    d = RetryPolicy(S).decide(RetryableError("503", retry_after=5), 2, old, now)
    assert isinstance(d, DeadLetter) and "older than 600s" in d.reason


def test_ambiguous_failure_waits_long_enough_for_the_effect_to_land() -> None:
    now = utcnow()
    s = RetrySettings(base_delay_seconds=0.01, max_delay_seconds=0.02,
                      ambiguous_min_delay_seconds=10)
    d = RetryPolicy(s).decide(RetryableError("timeout", ambiguous=True), 1, now, now)
    assert isinstance(d, Retry) and d.delay >= 10
    d = RetryPolicy(s).decide(RetryableError("connect refused"), 1, now, now)
    assert isinstance(d, Retry) and d.delay <= 0.02
