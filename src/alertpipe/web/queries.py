"""What the admin API and the dashboard read: pages of messages found by filters and search, and
an overview of each channel (state, counters, queues, circuits, per-minute traffic).

:func:`find_messages` is the one place that searches messages: the store's indexed search
(``search_messages``), plus a direct look-up when the search text is a message id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from alertpipe.errors import UsageError
from alertpipe.store.base import MESSAGE_STATES, MessagePage, MessageQuery, RatePoint, StoredMessage
from alertpipe.store.search import message_state as state_of

if TYPE_CHECKING:
    from alertpipe.engine.core import Engine

PAGE = 50
_MESSAGE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

__all__ = ["MESSAGE_STATES", "ChannelView", "DestinationView", "MessagePage", "channel_views",
           "find_messages", "message_state", "order_id_of", "parse_when"]


# -- messages ------------------------------------------------------------------------------
def message_state(stored: StoredMessage) -> str:
    """One word for a message (see :class:`alertpipe.store.base.MessageQuery`)."""
    return state_of(d.status for d in stored.deliveries)


def order_id_of(body: Mapping[str, Any]) -> str:
    value = body.get("order_id")
    return "" if value is None else str(value)


def parse_when(text: str) -> datetime:
    """An ISO 8601 date or date-time; naive means UTC. ValueError otherwise."""
    value = text.strip()
    if value[-1:] in ("z", "Z"):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


async def find_messages(engine: Engine, *, channel: str | None = None,
                        status: str | None = None, destination: str | None = None,
                        order_id: str | None = None, text: str | None = None,
                        since: datetime | None = None, until: datetime | None = None,
                        cursor: str | None = None, limit: int = PAGE) -> MessagePage:
    """Messages matching every given filter, newest first, ``limit`` at most, through the
    store's indexed search. ``text`` is a message id, or words that must each start a word of
    the body (order id, name, phone, SKU…), ignoring case. ``order_id`` is the channel's
    business key, exactly. Raises ValueError for an unknown state or a foreign cursor."""
    text = text.strip() if text else None
    if text and _MESSAGE_ID.match(text.lower()) and cursor is None:
        stored = await engine.store.get_message(text.lower())
        if stored is not None:
            return MessagePage([stored], None)
    query = MessageQuery(channel=channel, ref=order_id.strip() if order_id else None,
                         state=status, destination=destination, text=text or None,
                         since=since, until=until, cursor=cursor, limit=limit)
    try:
        return await engine.store.search_messages(query)
    except UsageError as exc:
        raise ValueError(str(exc)) from None


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
