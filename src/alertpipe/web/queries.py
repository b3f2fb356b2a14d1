"""What the admin API and the dashboard read: pages of messages found by filters and search, and
an overview of each channel (state, counters, queues, circuits, per-minute traffic).

:func:`find_messages` is the one place that searches messages. It scans the store's
``list_messages`` newest first and filters here, at most ``max_scan`` messages per call (a page
that hits the bound says so and carries a cursor to continue). When the store gains a search
operation, this function is what changes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from alertpipe.store.base import RatePoint, StoredMessage

if TYPE_CHECKING:
    from alertpipe.engine.core import Engine

MESSAGE_STATES = ("pending", "delivered", "dead", "partial", "discarded", "filtered")
PAGE = 200
MAX_SCAN = 5000
MAX_TIE_READ = 64 * PAGE  # messages sharing one received_at microsecond read at once
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

__all__ = ["MESSAGE_STATES", "ChannelView", "DestinationView", "MessagePage", "channel_views",
           "decode_cursor", "encode_cursor", "find_messages", "message_state", "order_id_of",
           "parse_when"]


# -- messages ------------------------------------------------------------------------------
def message_state(stored: StoredMessage) -> str:
    """One word for a message: ``filtered`` (no delivery), ``dead`` (a delivery is dead),
    ``pending`` (one is pending or in flight), ``delivered`` (all are), ``discarded`` (all dead
    letters were discarded), or ``partial`` (some delivered, the rest discarded)."""
    states = {d.status for d in stored.deliveries}
    if not states:
        return "filtered"
    if "dead" in states:
        return "dead"
    if states & {"pending", "in_flight"}:
        return "pending"
    if states == {"delivered"}:
        return "delivered"
    if states == {"discarded"}:
        return "discarded"
    return "partial"


def order_id_of(body: Mapping[str, Any]) -> str:
    value = body.get("order_id")
    return "" if value is None else str(value)


def encode_cursor(received_at: datetime, message_id: str) -> str:
    us = (received_at - _EPOCH) // _US
    return base64.urlsafe_b64encode(f"{us}:{message_id}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str]:
    """The (received_at, id) a cursor stands for; ValueError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        us, _, message_id = raw.partition(":")
        if not message_id:
            raise ValueError
        return _EPOCH + int(us) * _US, message_id
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise ValueError(f"not a valid cursor: {text[:40]!r}") from None


def parse_when(text: str) -> datetime:
    """An ISO 8601 date or date-time; naive means UTC. ValueError otherwise."""
    value = text.strip()
    if value[-1:] in ("z", "Z"):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _values(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _values(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _values(v)]
    return [] if value is None else [str(value)]


@dataclass(frozen=True, slots=True)
class _Filter:
    status: str | None
    destination: str | None
    order_id: str | None
    text: str | None

    def __call__(self, stored: StoredMessage) -> bool:
        m = stored.message
        if self.status is not None and message_state(stored) != self.status:
            return False
        if self.destination is not None and all(d.destination != self.destination
                                                for d in stored.deliveries):
            return False
        if self.order_id is not None and order_id_of(m.body) != self.order_id:
            return False
        if self.text:
            needle = self.text.casefold()
            return (m.id.startswith(self.text.lower())
                    or any(needle in v.casefold() for v in _values(m.body)))
        return True


@dataclass(frozen=True, slots=True)
class MessagePage:
    """Matches, newest first. ``next_cursor`` continues after this page (None: no more).
    ``truncated``: the scan bound was reached before the page filled; more may match."""

    messages: list[StoredMessage]
    next_cursor: str | None
    scanned: int
    truncated: bool = False


async def find_messages(engine: Engine, *, channel: str | None = None,
                        status: str | None = None, destination: str | None = None,
                        order_id: str | None = None, text: str | None = None,
                        since: datetime | None = None, until: datetime | None = None,
                        cursor: str | None = None, limit: int = 50,
                        max_scan: int = MAX_SCAN) -> MessagePage:
    """Messages matching every given filter, newest first, ``limit`` at most. ``text`` matches
    a message id prefix or any value of the body (the order id among them), ignoring case.
    ``cursor`` (from an earlier page) continues where that page ended. Raises ValueError for a
    cursor that is not one of ours."""
    position = decode_cursor(cursor) if cursor else None
    keep = _Filter(status, destination, order_id.strip() if order_id else None,
                   text.strip() if text else None)
    found: list[StoredMessage] = []
    seen: set[str] = set()
    scanned = 0
    last: tuple[datetime, str] | None = None
    before = position[0] + _US if position else None
    fetch = PAGE
    while True:
        page = await engine.store.list_messages(channel, limit=fetch, before=before,
                                                since=since, until=until)
        fresh = 0
        for stored in page:
            key = (stored.message.received_at, stored.message.id)
            if stored.message.id in seen or (position is not None and key >= position):
                continue
            seen.add(stored.message.id)
            fresh += 1
            if keep(stored):
                if len(found) == limit:  # one more than a page: there is a next page
                    return MessagePage(found, encode_cursor(*last) if last else None, scanned)
                found.append(stored)
            scanned += 1
            last = key
            if scanned >= max_scan:
                return MessagePage(found, encode_cursor(*key), scanned, truncated=True)
        if len(page) < fetch:
            return MessagePage(found, None, scanned)
        oldest = page[-1].message.received_at
        if fresh:
            # Overlap by the oldest microsecond, so that messages sharing it are not skipped
            # (``seen`` drops the repeats).
            before, fetch = oldest + _US, PAGE
        elif fetch < MAX_TIE_READ:
            fetch *= 2  # a full page of one microsecond, all known: read wider from there
        else:
            before, fetch = oldest, PAGE  # past the tie bound: skip the rest of that microsecond


# -- channels -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DestinationView:
    name: str
    type: str
    pending: int
    in_flight: int
    delivered: int
    dead: int
    oldest_pending_at: datetime | None
    oldest_pending_age: float | None  # seconds
    circuit: str | None  # closed, open, half_open; None when no worker runs here


@dataclass(frozen=True, slots=True)
class ChannelView:
    name: str
    state: str  # running, stopped, erroring
    source_type: str
    source_path: str | None
    destinations: list[DestinationView]
    points: list[RatePoint] = field(default_factory=list)  # the last hour, per minute

    @property
    def received_last_hour(self) -> int:
        return sum(p.received for p in self.points)

    @property
    def delivered_last_hour(self) -> int:
        return sum(p.delivered for p in self.points)

    @property
    def failed_last_hour(self) -> int:
        return sum(p.failed for p in self.points)

    @property
    def error_rate(self) -> float | None:
        """Failed attempts / all attempts in the last hour (None without attempts)."""
        total = self.delivered_last_hour + self.failed_last_hour
        return None if total == 0 else self.failed_last_hour / total

    def total(self, attr: str) -> int:
        return sum(int(getattr(d, attr)) for d in self.destinations)


async def channel_views(engine: Engine, names: Sequence[str] | None = None,
                        now: datetime | None = None) -> list[ChannelView]:
    """Every channel (or those named), with its destinations' queues and its last hour."""
    now = now or datetime.now(UTC)
    stats = {(s.channel, s.destination): s for s in await engine.store.stats()}
    out = []
    for name in names if names is not None else list(engine.channels):
        ch = engine.channel(name)
        dests = []
        for dname, dest in ch.destinations.items():
            s = stats.get((name, dname))
            worker = engine.workers.get((name, dname))
            oldest = s.oldest_pending_at if s else None
            dests.append(DestinationView(
                name=dname, type=dest.type_name, pending=s.pending if s else 0,
                in_flight=s.in_flight if s else 0, delivered=s.delivered if s else 0,
                dead=s.dead if s else 0, oldest_pending_at=oldest,
                oldest_pending_age=max(0.0, (now - oldest).total_seconds()) if oldest else None,
                circuit=worker.breaker.state if worker is not None else None))
        points = await engine.store.rates(name, now - timedelta(hours=1))
        out.append(ChannelView(name=name, state=await engine.channel_state(name),
                               source_type=ch.source.type_name,
                               source_path=getattr(ch.source.config, "path", None),
                               destinations=dests, points=points))
    return out
