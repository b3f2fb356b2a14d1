"""The SQLite text index is written in whole batches under load, and no text waits for ever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from alertpipe.message import Message
from alertpipe.store import NewDelivery, SQLiteStore
from alertpipe.store import sqlite as sqlite_store
from alertpipe.store import sqlite_sql as q
from alertpipe.store.base import MessageQuery


class Written:
    """Records each text-index write (its batch size) and wakes waiters on the total."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        self.changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        real = q.index_texts

        def index_texts(conn: object, texts: Sequence[tuple[int, str]]) -> None:
            real(conn, texts)  # type: ignore[arg-type]
            self.sizes.append(len(texts))
            loop.call_soon_threadsafe(self.changed.set)

        monkeypatch.setattr(q, "index_texts", index_texts)

    async def until_total(self, n: int) -> None:
        async with asyncio.timeout(10):
            while sum(self.sizes) < n:
                self.changed.clear()
                await self.changed.wait()


def order(i: int) -> Message:
    return Message.new("orders", {"order_id": f"T-{i}", "customer_name": f"Customer{i}"},
                       ref=f"T-{i}")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "s.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def commit_burst(store: SQLiteStore, extra: int) -> None:
    """A whole batch of messages commits, so its text write starts, and ``extra`` more commit
    while it is written (the writer's groups are cut at one batch)."""
    assert store._writer is not None
    store._writer._max_group = sqlite_store.TEXT_BATCH
    await asyncio.gather(*(store.enqueue(order(i), [NewDelivery("sheet")])
                           for i in range(sqlite_store.TEXT_BATCH + extra)))


async def test_texts_arriving_during_a_write_wait_for_a_whole_batch(
        store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "TEXT_WAIT", 3600.0)  # only whole batches, until a search
    written = Written(monkeypatch)
    batch = sqlite_store.TEXT_BATCH
    await commit_burst(store, 50)
    if store._text_flush is not None:
        await store._text_flush
    assert written.sizes == [batch]  # the 50 that came in meanwhile were not written alone
    assert len(store._texts) == 50

    page = await store.search_messages(MessageQuery(text=f"customer{batch + 49}"))
    assert [s.message.ref for s in page.messages] == [f"T-{batch + 49}"]
    assert written.sizes == [batch, 50]  # the search wrote the rest first
    assert not store._texts


async def test_a_partial_batch_is_written_after_the_wait(
        store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "TEXT_WAIT", 0.05)
    written = Written(monkeypatch)
    batch = sqlite_store.TEXT_BATCH
    n = batch + 7
    await asyncio.gather(*(store.enqueue(order(i), [NewDelivery("sheet")]) for i in range(n)))
    await written.until_total(n)  # the 7 left after the whole batch do not wait for ever
    assert written.sizes == [batch, 7]
    assert not store._texts


async def test_the_wait_ending_during_a_write_writes_the_rest_with_it(
        store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "TEXT_WAIT", 3600.0)
    written = Written(monkeypatch)
    await commit_burst(store, 50)
    flush = store._text_flush
    assert flush is not None  # the whole batch is being written
    store._flush_texts_soon()  # what the TEXT_WAIT timer does when it fires
    await flush
    assert written.sizes == [sqlite_store.TEXT_BATCH, 50]  # the same flush wrote the 50
    assert not store._texts
