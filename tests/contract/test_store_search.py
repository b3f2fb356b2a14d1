"""Message log contract, over every store: search by field and text, paging, retention, and
the attempt summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from alertpipe.errors import UsageError
from alertpipe.message import Message, new_message_id, utcnow
from alertpipe.store import AttemptResult, NewDelivery, Store
from alertpipe.store.base import MessageQuery

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def order(n: int, name: str, *, at: datetime | None = None, channel: str = "orders",
          amount: str = "10.00") -> Message:
    body = {"order_id": f"A-{n}", "customer_name": name, "amount": Decimal(amount),
            "items": [{"sku": f"SKU-{n}", "qty": 1}]}
    return Message(id=new_message_id(), channel=channel, received_at=at or utcnow(), body=body,
                   raw=b'{"order_id": "A-%d"}' % n, meta={"remote_addr": "127.0.0.1"},
                   ref=f"A-{n}")


async def ids(store: Store, **query: object) -> list[str]:
    page = await store.search_messages(MessageQuery(**query))  # type: ignore[arg-type]
    return [s.message.id for s in page.messages]


async def settle(store: Store, destination: str, outcome: str, owner: str = "w") -> None:
    now = utcnow()
    for d in await store.claim("orders", destination, 100, 30, owner):
        await store.record([AttemptResult(
            delivery_id=d.id, lease_owner=owner, outcome=outcome,  # type: ignore[arg-type]
            started_at=now, finished_at=now + timedelta(milliseconds=42),
            remote_id="SM123" if outcome == "delivered" else None,
            error=None if outcome == "delivered" else "boom",
            summary="POST /Messages.json -> 201 SM123")])


async def test_find_by_business_key_exactly(store: Store) -> None:
    msgs = [order(1001, "Jane Doe"), order(1002, "John Roe"), order(10021, "Jim Poe")]
    for m in msgs:
        await store.enqueue(m, [NewDelivery("sheet")])
    assert await ids(store, ref="A-1002") == [msgs[1].id]
    assert await ids(store, ref="A-100") == []
    got = (await store.search_messages(MessageQuery(ref="A-1001"))).messages[0]
    assert got.message.ref == "A-1001" and got.message.body["amount"] == Decimal("10.00")


async def test_text_finds_each_of_many_messages_stored_at_once(store: Store) -> None:
    # concurrent intakes share one transaction: each text must be indexed under its own row
    import asyncio
    names = ["Ada", "Brook", "Cyrus", "Dara", "Emil", "Fay", "Gus", "Hana", "Ivo", "Juno"]
    msgs = [order(n, f"{name} Q{n:03d}") for n, name in enumerate(names * 4)]
    await asyncio.gather(*(store.enqueue(m, [NewDelivery("sheet")]) for m in msgs))
    for m in msgs[::3]:
        assert await ids(store, text=m.body["customer_name"]) == [m.id]


async def test_free_text_matches_word_prefixes_of_every_word(store: Store) -> None:
    jane, john, other = order(1001, "Jane Doe"), order(2002, "John Doe"), order(3003, "Mary Major")
    for m in (jane, john, other):
        await store.enqueue(m, [NewDelivery("sheet")])
    assert await ids(store, text="doe") == [john.id, jane.id]  # newest first
    assert await ids(store, text="JAN doe") == [jane.id]
    assert await ids(store, text="a-100") == [jane.id]  # an order id is one word
    assert await ids(store, text="sku-3003") == [other.id]  # nested values count
    assert await ids(store, text="10.00 major") == [other.id]
    assert await ids(store, text="nobody") == []
    assert await ids(store, text='"quoted" (odd) * chars') == []  # no query syntax leaks


async def test_state_and_destination_filters(store: Store) -> None:
    delivered, dead, pending, filtered = (order(i, "X") for i in range(4))
    await store.enqueue(delivered, [NewDelivery("sheet")])
    await settle(store, "sheet", "delivered")
    await store.enqueue(dead, [NewDelivery("sheet"), NewDelivery("sms", "+15551230001")])
    await settle(store, "sheet", "delivered")
    await settle(store, "sms", "dead")
    await store.enqueue(pending, [NewDelivery("sheet")])
    await store.enqueue(filtered, [])
    assert await ids(store, state="delivered") == [delivered.id]
    assert await ids(store, state="dead") == [dead.id]
    assert await ids(store, state="pending") == [pending.id]
    assert await ids(store, state="filtered") == [filtered.id]
    assert await ids(store, destination="sms") == [dead.id]
    assert await ids(store, destination="sheet", state="delivered") == [delivered.id]
    dead_sms = next(d for d in (await store.search_messages(MessageQuery(state="dead")))
                .messages[0].deliveries if d.destination == "sms")
    assert await store.discard(dead_sms.id)
    assert await ids(store, state="partial") == [dead.id]
    assert await ids(store, state="dead") == []


async def test_pages_newest_first_without_gaps_or_repeats(store: Store) -> None:
    msgs = [order(i, "Page Test") for i in range(7)]
    for m in msgs:
        await store.enqueue(m, [NewDelivery("sheet")])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await store.search_messages(MessageQuery(text="page", limit=3, cursor=cursor))
        seen += [s.message.id for s in page.messages]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [m.id for m in reversed(msgs)] and pages == 3


async def test_time_range_and_channel(store: Store) -> None:
    early = order(1, "Early", at=T0)
    mid = order(2, "Mid", at=T0 + timedelta(hours=1))
    late = order(3, "Late", at=T0 + timedelta(hours=2), channel="labs")
    for m in (early, mid, late):
        await store.enqueue(m, [NewDelivery("sheet")])
    assert await ids(store, since=T0 + timedelta(hours=1)) == [late.id, mid.id]
    assert await ids(store, until=T0 + timedelta(hours=1)) == [early.id]
    assert await ids(store, channel="labs") == [late.id]


async def test_bad_state_or_cursor_is_a_usage_error(store: Store) -> None:
    with pytest.raises(UsageError, match="unknown message state"):
        await store.search_messages(MessageQuery(state="lost"))
    with pytest.raises(UsageError, match="cursor"):
        await store.search_messages(MessageQuery(cursor="not-ours"))


async def test_attempts_keep_their_summary_and_duration(store: Store) -> None:
    m = order(5, "Summary")
    await store.enqueue(m, [NewDelivery("sms", "+15551230001")])
    await settle(store, "sms", "delivered")
    stored = await store.get_message(m.id)
    assert stored is not None
    (attempt,) = stored.deliveries[0].history
    assert attempt.summary == "POST /Messages.json -> 201 SM123"
    assert attempt.remote_id == "SM123" and round(attempt.duration_ms) == 42


async def test_retention_deletes_finished_old_messages_and_keeps_work(store: Store) -> None:
    old_done, old_pending = order(1, "Old Done", at=T0), order(2, "Old Pending", at=T0)
    new = order(3, "New Done")
    for m in (old_done, old_pending, new):
        await store.enqueue(m, [NewDelivery("sheet")])
    for d in await store.claim("orders", "sheet", 100, 30, "w"):
        if d.message.id != old_pending.id:
            await store.record([AttemptResult(
                delivery_id=d.id, lease_owner="w", outcome="delivered", started_at=utcnow(),
                finished_at=utcnow())])
        else:
            await store.release([d.id], "w")
    result = await store.prune("orders", before=T0 + timedelta(days=1))
    assert (result.deleted, result.stripped) == (1, 0)
    assert await store.get_message(old_done.id) is None
    assert await store.get_message(old_pending.id) is not None  # work left: never deleted
    assert await ids(store, text="old") == [old_pending.id]
    assert await store.get_message(new.id) is not None


async def test_retention_can_drop_content_and_keep_metadata(store: Store) -> None:
    old, new = order(1, "Secretive Customer", at=T0), order(2, "Secretive Too")
    for m in (old, new):
        await store.enqueue(m, [NewDelivery("sheet")])
    assert await ids(store, text="secretive") == [new.id, old.id]
    result = await store.prune("orders", before=T0 - timedelta(days=1),
                               content_before=T0 + timedelta(days=1))
    assert (result.deleted, result.stripped) == (0, 1)
    stored = await store.get_message(old.id)
    assert stored is not None and stored.message.body == {} and stored.message.raw == b""
    assert [d.destination for d in stored.deliveries] == ["sheet"]
    assert await ids(store, text="secretive") == [new.id]
    assert await ids(store, ref="A-1") == [old.id]  # still found by its key
    again = await store.prune("orders", before=T0 - timedelta(days=1),
                              content_before=T0 + timedelta(days=1))
    assert again.stripped == 0


async def test_a_late_arrival_is_found_in_its_time_window(store: Store) -> None:
    """Messages are stored in arrival order, not in order of their receipt time: a window must
    find a message stored long after newer ones (text and no text)."""
    newer = [order(i, "Window Test", at=T0 + timedelta(hours=2, minutes=i)) for i in range(3)]
    for m in newer:
        await store.enqueue(m, [NewDelivery("sheet")])
    late = order(99, "Window Test", at=T0)  # received first, stored last
    await store.enqueue(late, [NewDelivery("sheet")])
    window = {"since": T0, "until": T0 + timedelta(hours=1)}
    assert await ids(store, **window) == [late.id]
    assert await ids(store, text="window", **window) == [late.id]
    assert await ids(store, text="window", since=T0 + timedelta(hours=2)) == [
        m.id for m in reversed(newer)]
    assert await ids(store, until=T0 - timedelta(hours=1)) == []
