"""A SQLite store whose dedupe keys were rows of message_keys: opening it moves them into the
messages' refs, and a repeat of an order stored then is still a duplicate."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from alertpipe import jsoncodec
from alertpipe.message import Message
from alertpipe.store import MessageKey, SQLiteStore
from alertpipe.store import sqlite_sql as q

REF_MIGRATION = len(q.MIGRATIONS)  # the one that moved dedupe keys into messages.ref


def old_store(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for number, script in enumerate(q.MIGRATIONS[:REF_MIGRATION - 1], start=1):
        for stmt in filter(str.strip, script.split(";")):
            conn.execute(stmt)
        conn.execute("INSERT INTO schema_version(version) VALUES (?)", (number,))
    now = int(time.time() * 1e6)
    for mid, ref, key in (("m-old", None, "OLD-1"),    # stored before messages had refs
                          ("m-new", "NEW-1", "NEW-1")):  # stored with its ref and its key
        conn.execute("INSERT INTO messages(id, channel, received_at, body, raw, meta, status, "
                     "ref) VALUES (?, 'orders', ?, ?, x'', '{}', 'accepted', ?)",
                     (mid, now, jsoncodec.dumps({"order_id": key}), ref))
        conn.execute("INSERT INTO message_keys(channel, kind, key, fingerprint, message_id, "
                     "expires_at) VALUES ('orders', 'dedupe', ?, NULL, ?, ?)",
                     (key, mid, now + 3_600_000_000))
    conn.execute("INSERT INTO message_keys(channel, kind, key, fingerprint, message_id, "
                 "expires_at) VALUES ('orders', 'idempotency', 'K-1', 'fp', 'm-new', ?)",
                 (now + 3_600_000_000,))
    conn.close()


async def test_dedupe_keys_of_an_older_store_still_find_their_orders(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_store(path)
    store = SQLiteStore(path)
    await store.open()
    try:
        for ref, holder in (("OLD-1", "m-old"), ("NEW-1", "m-new")):
            repeat = Message.new("orders", {"order_id": ref}, ref=ref)
            got = await store.enqueue(repeat, [], [MessageKey("dedupe", ref, 3600)])
            assert not got.created and got.message_id == holder
        rows = await store._write(lambda c: c.execute(
            "SELECT kind, key FROM message_keys").fetchall())
        assert rows == [("idempotency", "K-1")]  # other kinds of key stay where they were
        old = await store.get_message("m-old")
        assert old is not None and old.message.ref == "OLD-1"
    finally:
        await store.close()
