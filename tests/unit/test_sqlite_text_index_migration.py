"""A SQLite store written before the text index existed: opening it indexes what it holds."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alertpipe import jsoncodec
from alertpipe.store import SQLiteStore
from alertpipe.store import sqlite_sql as q
from alertpipe.store.base import MessageQuery


async def test_messages_stored_before_the_index_are_found_by_text(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for number, script in enumerate(q.MIGRATIONS[:q.FTS_MIGRATION - 1], start=1):
        for stmt in filter(str.strip, script.split(";")):
            conn.execute(stmt)
        conn.execute("INSERT INTO schema_version(version) VALUES (?)", (number,))
    body = {"order_id": "OLD-7", "customer_name": "Grace Hopper", "amount": "12.50"}
    conn.execute("INSERT INTO messages(id, channel, received_at, body, raw, meta, status) "
                 "VALUES ('0190aaaa-0000-7000-8000-000000000001', 'orders', 1, ?, x'', '{}', "
                 "'accepted')", (jsoncodec.dumps(body),))
    conn.close()

    store = SQLiteStore(path)
    await store.open()
    try:
        page = await store.search_messages(MessageQuery(text="hopper 12.50"))
        assert [s.message.body["order_id"] for s in page.messages] == ["OLD-7"]
        assert page.messages[0].message.ref is None  # no key was recorded then
        epoch = datetime(1970, 1, 1, tzinfo=UTC)  # its time mark was filled in too
        window = await store.search_messages(MessageQuery(
            text="hopper", since=epoch, until=epoch + timedelta(minutes=1)))
        assert [s.message.body["order_id"] for s in window.messages] == ["OLD-7"]
    finally:
        await store.close()


async def test_texts_waiting_in_memory_at_a_crash_are_indexed_at_the_next_start(
        tmp_path: Path) -> None:
    from alertpipe.message import Message, new_message_id, utcnow
    from alertpipe.store import NewDelivery

    path = tmp_path / "crash.db"
    store = SQLiteStore(path)
    await store.open()
    m = Message(id=new_message_id(), channel="orders", received_at=utcnow(),
                body={"order_id": "C-1", "customer_name": "Ada Lovelace"}, ref="C-1")
    await store.enqueue(m, [NewDelivery("sheet")])
    assert store._texts  # committed, its text still waiting for a batch
    writer = store._writer
    assert writer is not None
    await writer.stop()  # the process dies: nothing more is written
    if store._text_timer is not None:
        store._text_timer.cancel()

    again = SQLiteStore(path)
    await again.open()
    try:
        page = await again.search_messages(MessageQuery(text="lovelace"))
        assert [s.message.id for s in page.messages] == [m.id]
    finally:
        await again.close()
    if store._reader is not None:
        store._reader.shutdown(wait=True)
