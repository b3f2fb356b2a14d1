"""Retention: per-channel age limits for messages and for their content, in slices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from alertpipe.config.model import ChannelSettings, RetentionSettings
from alertpipe.engine.retention import Retention
from alertpipe.message import Message, new_message_id, utcnow
from alertpipe.store import AttemptResult, MemoryStore, NewDelivery

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def channel(**retention: float) -> ChannelSettings:
    return ChannelSettings(destinations={"sheet": {"type": "google_sheets"}},
                           retention=RetentionSettings(**retention))


def msg(days_old: float, ch: str = "orders") -> Message:
    return Message(id=new_message_id(), channel=ch, received_at=NOW - timedelta(days=days_old),
                   body={"order_id": f"A-{days_old}", "customer_name": "Old Customer"})


async def deliver_all(store: MemoryStore) -> None:
    for d in await store.claim("orders", "sheet", 1000, 30, "w"):
        await store.record([AttemptResult(delivery_id=d.id, lease_owner="w",
                                          outcome="delivered", started_at=utcnow(),
                                          finished_at=utcnow())])


async def test_old_messages_go_and_older_content_is_dropped_in_slices() -> None:
    store = MemoryStore()
    ancient = [msg(40) for _ in range(5)]
    old, fresh, other = msg(10), msg(1), msg(40, ch="labs")
    for m in [*ancient, old, fresh, other]:
        await store.enqueue(m, [NewDelivery("sheet")])
    await deliver_all(store)
    stuck = msg(50)  # still pending: never deleted
    await store.enqueue(stuck, [NewDelivery("sheet")])
    r = Retention(store, {"orders": channel(days=30, content_days=7), "labs": channel()},
                  clock=lambda: NOW, limit=2)
    assert await r.run_once() == {"orders": (5, 2)}  # 5 deleted two at a time; 2 stripped
    for m in ancient:
        assert await store.get_message(m.id) is None
    kept = await store.get_message(old.id)
    assert kept is not None and kept.message.body == {} and kept.deliveries
    stuck_now = await store.get_message(stuck.id)
    assert stuck_now is not None and stuck_now.message.body == {}  # content goes, work stays
    fresh_now = await store.get_message(fresh.id)
    assert fresh_now is not None and fresh_now.message.body["customer_name"] == "Old Customer"
    assert await store.get_message(other.id) is not None  # no policy on that channel
    assert await r.run_once() == {"orders": (0, 0)}


def test_content_cannot_outlive_its_message() -> None:
    with pytest.raises(ValidationError, match="content_days cannot be longer than days"):
        RetentionSettings(days=7, content_days=30)
