"""find_messages: text search, message ids, the store cursor, the overall state of a message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from web_support import settings

from alertpipe.engine import Engine
from alertpipe.message import Message, new_message_id
from alertpipe.store import MemoryStore, NewDelivery
from alertpipe.store.base import DeliveryRecord, StoredMessage
from alertpipe.web.queries import find_messages, message_state

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def engine_with(messages: list[Message]) -> Engine:
    engine = Engine(settings(), store=MemoryStore())
    for m in messages:
        await engine.store.enqueue(m, [NewDelivery("sheet")])
    return engine


def msg(n: int, at: datetime, **body: object) -> Message:
    return Message(id=new_message_id(), channel="orders", received_at=at,
                   body={"order_id": f"F-{n}", **body})


async def test_text_matches_nested_values_and_ignores_case() -> None:
    a = msg(1, T0, customer={"name": "Ada Lovelace"}, items=[{"sku": "KB-01"}])
    b = msg(2, T0 + timedelta(seconds=1), customer={"name": "Grace"})
    engine = await engine_with([a, b])
    for text in ("lovelace", "kb-01", "F-1", "ada LOVE"):
        page = await find_messages(engine, text=text)
        assert [s.message.id for s in page.messages] == [a.id], text
    assert len((await find_messages(engine, text=" ")).messages) == 2  # blank: no filter


async def test_a_message_id_finds_that_message() -> None:
    a, b = msg(1, T0), msg(2, T0)
    engine = await engine_with([a, b])
    page = await find_messages(engine, text=b.id.upper())
    assert [s.message.id for s in page.messages] == [b.id] and page.next_cursor is None


async def test_pages_follow_the_store_cursor() -> None:
    ms = [msg(i, T0 + timedelta(seconds=i)) for i in range(5)]
    engine = await engine_with(ms)
    first = await find_messages(engine, limit=2)
    rest = await find_messages(engine, limit=10, cursor=first.next_cursor)
    assert [s.message.id for s in first.messages + rest.messages] == [m.id for m in ms[::-1]]
    assert rest.next_cursor is None


async def test_a_foreign_cursor_or_state_is_a_value_error() -> None:
    engine = await engine_with([msg(1, T0)])
    with pytest.raises(ValueError, match="cursor"):
        await find_messages(engine, cursor="bm9jb2xvbg")
    with pytest.raises(ValueError, match="state"):
        await find_messages(engine, status="lost")


def _stored(*statuses: str) -> StoredMessage:
    m = msg(0, T0)
    ds = [DeliveryRecord(id=i, message_id=m.id, channel="orders", destination="d",
                         target=None, status=s, attempts=0, created_at=T0,
                         next_attempt_at=T0, updated_at=T0) for i, s in enumerate(statuses)]
    return StoredMessage(message=m, status="accepted" if ds else "filtered", deliveries=ds)


@pytest.mark.parametrize(("statuses", "state"), [
    ((), "filtered"), (("delivered", "delivered"), "delivered"),
    (("delivered", "pending"), "pending"), (("in_flight",), "pending"),
    (("pending", "dead"), "dead"), (("discarded",), "discarded"),
    (("delivered", "discarded"), "partial")])
def test_message_state(statuses: tuple[str, ...], state: str) -> None:
    assert message_state(_stored(*statuses)) == state
