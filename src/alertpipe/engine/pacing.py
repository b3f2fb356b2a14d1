"""Outbound pacing: a token bucket per remote account (for example one Google user)."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """``rate`` tokens per second, holding at most ``capacity``. ``acquire`` waits for one."""

    def __init__(self, rate: float, capacity: float = 1.0) -> None:
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1


class Unpaced:
    async def acquire(self) -> None:
        return None


Pacer = TokenBucket | Unpaced


class Pacers:
    """One pacer per rate key, shared by every destination that names the same key."""

    def __init__(self) -> None:
        self._by_key: dict[str, Pacer] = {}

    def get(self, key: str, per_minute: float | None) -> Pacer:
        if key not in self._by_key:
            if per_minute is None:
                self._by_key[key] = Unpaced()
            else:
                # A small burst for a quick first write, bounded so that burst + a minute's
                # refill stays under the per-minute rate the destination asked for.
                burst = max(1.0, min(5.0, per_minute / 10))
                self._by_key[key] = TokenBucket(per_minute / 60.0, burst)
        return self._by_key[key]
