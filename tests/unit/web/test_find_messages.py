"""find_messages: paging over ties, the scan bound, cursors, the overall state of a message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from web_support import settings

from alertpipe.engine import Engine
from alertpipe.message import Message, new_message_id
from alertpipe.store import MemoryStore, NewDelivery
from alertpipe.store.base import DeliveryRecord, StoredMessage
from alertpipe.web import queries
from alertpipe.web.queries import decode_cursor, encode_cursor, find_messages, message_state

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def engine_with(messages: list[Message]) -> Engine:
    engine = Engine(settings(), store=MemoryStore())
    for m in messages:
        await engine.store.enqueue(m, [NewDelivery("sheet")])
    return engine


def msg(n: int, at: datetime, **body: object) -> Message:
    return Message(id=new_message_id(), channel="orders", received_at=at,
                   body={"order_id": f"F-{n}", **body})


async def collect(engine: Engine, limit: int, **kw: object) -> tuple[list[str], int]:
    out: list[str] = []
    cursor, pages = None, 0
    while True:
        page = await find_messages(engine, cursor=cursor, limit=limit, **kw)  # type: ignore[arg-type]
        out += [s.message.id for s in page.messages]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            return out, pages


async def test_paging_never_skips_or_repeats_messages_sharing_a_microsecond(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "PAGE", 4)  # store pages smaller than the ties
    same = [msg(i, T0) for i in range(9)]
    other = [msg(100 + i, T0 + timedelta(microseconds=i + 1)) for i in range(5)]
    engine = await engine_with(same + other)
    expected = [m.id for m in sorted(same + other, key=lambda m: (m.received_at, m.id),
                                     reverse=True)]
    for limit in (1, 2, 3, 5, 50):
        got, _ = await collect(engine, limit)
        assert got == expected, limit


async def test_scan_bound_returns_a_cursor_to_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "PAGE", 10)
    ms = [msg(i, T0 + timedelta(seconds=i)) for i in range(60)]
    needle = ms[3]
    engine = await engine_with(ms)
    page = await find_messages(engine, text="F-3", max_scan=20, limit=10)
    assert page.truncated and page.scanned == 20 and page.next_cursor is not None
    # the 20 newest were searched: F-59 … F-40, of which F-39 … are not
    assert [s.message.body["order_id"] for s in page.messages] == []
    found: list[str] = [s.message.id for s in page.messages]
    cursor = page.next_cursor
    while cursor is not None:
        nxt = await find_messages(engine, text="F-3", max_scan=20, limit=10, cursor=cursor)
        found += [s.message.id for s in nxt.messages]
        cursor = nxt.next_cursor
    assert found[-1] == needle.id
    assert sorted(found) == sorted(m.id for m in ms if "F-3" in m.body["order_id"])


async def test_text_matches_nested_values_and_ignores_case() -> None:
    a = msg(1, T0, customer={"name": "Ada Lovelace"}, items=[{"sku": "KB-01"}])
    b = msg(2, T0 + timedelta(seconds=1), customer={"name": "Grace"})
    engine = await engine_with([a, b])
    for text in ("lovelace", "kb-01", "F-1"):
        page = await find_messages(engine, text=text)
        assert [s.message.id for s in page.messages] == [a.id], text
    assert (await find_messages(engine, text=" ")).messages  # blank: no filter


def test_cursor_round_trip_and_refusal() -> None:
    at = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert decode_cursor(encode_cursor(at, "abc-1")) == (at, "abc-1")
    for bad in ("", "!!!", "bm9jb2xvbg", encode_cursor(at, "x")[:-4] + "@@@@"):
        with pytest.raises(ValueError):
            decode_cursor(bad)


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
