"""The SMS pumping cap of the Twilio destination: sends per recipient in a sliding window.

``max_per_recipient_per_hour`` (default 30, 0 = no cap) bounds successful sends per recipient in
a sliding hour. A send beyond it raises ``RetryableError(code="recipient_cap",
retry_after=<seconds until the oldest send leaves the window>)`` without calling Twilio. The
window lives in the destination instance: it is per process and starts empty on restart. Only
confirmed sends count (a slot is held while a request is in flight and given back if it fails);
a text that went out behind an ambiguous failure is counted once the lookup finds it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from alertpipe.errors import RetryableError


class RecipientWindow:
    """Sends per recipient in a sliding window (default one hour), capped at ``cap`` (0: no cap).

    Held in memory by one destination instance: per process, empty after a restart. A slot is
    reserved before the request (so concurrent sends cannot overshoot) and released if the send
    fails; ``clock`` is monotonic seconds.
    """

    def __init__(self, cap: int, *, period: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cap = cap
        self.period = period
        self.clock = clock
        self._sends: dict[str, deque[float]] = {}

    def reserve(self, recipient: str) -> float | None:
        """Take a slot and return its stamp; ``None`` when uncapped. Raise when the cap is hit."""
        if self.cap <= 0:
            return None
        now = self.clock()
        sends = self._window(recipient, now)
        wait = self._wait(sends, now)
        if wait > 0:
            raise RetryableError(
                f"twilio_sms: recipient cap of {self.cap} per hour reached for {recipient}; "
                f"next slot in {wait:.0f}s", retry_after=wait, code="recipient_cap",
                throttled=True)
        sends.append(now)
        return now

    def wait(self, recipient: str) -> float:
        """Seconds until ``recipient`` has a free slot (0: now, or no cap); takes none."""
        if self.cap <= 0:
            return 0.0
        now = self.clock()
        return self._wait(self._window(recipient, now), now)

    def _window(self, recipient: str, now: float) -> deque[float]:
        """The recipient's sends still inside the window at ``now``."""
        sends = self._sends.setdefault(recipient, deque())
        while sends and sends[0] <= now - self.period:
            sends.popleft()
        return sends

    def _wait(self, sends: deque[float], now: float) -> float:
        """Seconds until the oldest of a full window leaves it (0: there is room)."""
        return max(0.0, sends[0] + self.period - now) if len(sends) >= self.cap else 0.0

    def release(self, recipient: str, stamp: float | None) -> None:
        """Give back a slot taken by :meth:`reserve` (the send did not happen)."""
        sends = self._sends.get(recipient)
        if stamp is None or sends is None:
            return
        try:
            sends.remove(stamp)
        except ValueError:
            pass
        if not sends:
            del self._sends[recipient]

    def count(self, recipient: str) -> int:
        """Slots held for ``recipient`` (including expired ones not yet pruned)."""
        return len(self._sends.get(recipient, ()))


__all__ = ["RecipientWindow"]
