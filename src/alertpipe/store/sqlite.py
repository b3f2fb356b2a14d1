"""The embedded default store: one SQLite file in WAL mode.

Writes go through a :class:`~alertpipe.store.groupcommit.GroupCommitter` (statements on the
event loop, the commit and its fsync on a commit thread, ``synchronous=FULL``, many operations
per fsync). Reads use a second connection on a reader thread; WAL lets them run beside the
writer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from alertpipe import jsoncodec
from alertpipe.destinations.base import Delivery
from alertpipe.errors import StoreError, StoreUnavailable, UsageError
from alertpipe.message import Message
from alertpipe.store import sqlite_sql as q
from alertpipe.store.base import (
    AttemptRecord,
    AttemptResult,
    AuditEntry,
    DeliveryRecord,
    EnqueueResult,
    MessageKey,
    MessagePage,
    MessageQuery,
    NewDelivery,
    PruneResult,
    QueueStats,
    RatePoint,
    StoredMessage,
)
from alertpipe.store.groupcommit import GroupCommitter
from alertpipe.store.search import (
    check_state,
    decode_cursor,
    encode_cursor,
    search_text,
    words,
)
from alertpipe.store.sqlite_sql import from_us

T = TypeVar("T")
log = logging.getLogger("alertpipe.store")

KEY_PRUNE_INTERVAL = 60.0  # seconds
TEXT_BATCH = 256  # search texts written to the text index together
TEXT_WAIT = 1.0  # seconds a search text may wait for its batch
# At most one commit per 4 ms, unless FULL_GROUP operations wait: a commit has a fixed CPU
# cost (the WAL write, two system calls per page, and the fsync) whatever it carries, so under a
# steady stream of requests this turns many small commits into fewer larger ones, for at most
# 4 ms more latency. Measured (make bench's half-rate run, 2,900 req/s, on the 2-core machine):
# 8 ms gave a p99 of 17-32 ms, 5 ms 14-24 ms, 4 ms 12-19 ms, 3 ms 17-20 ms and 2 ms 16-32 ms,
# both with more CPU per message. An idle store commits at once.
COMMIT_INTERVAL = 0.004
# A group this large goes at once (GroupCommitter's full_group). The commit's fixed cost is
# still visible at 32 (store statements + commit: 21.1 µs per message in groups of 32, 17.7 in
# groups of 64, on one thread); at the maximum rate (64 connections, 10 fresh engines each,
# back to back) 48 took 7,562 req/s (median) against 7,277 for 32, with the same p99.
FULL_GROUP = 48
# one intake: (channel, message row, delivery rows, keys)
_Intake = tuple[str, tuple[Any, ...], list[tuple[Any, ...]], Sequence[MessageKey]]


def _by_ref(key: MessageKey, row: tuple[Any, ...]) -> bool:
    """A channel's de-duplication key is its message's ref (row[7]): the message row holds
    it, indexed (messages_ref), so it is looked up there and not written again as a key."""
    return key.kind == "dedupe" and key.key == row[7] and key.fingerprint is None


def to_us(dt: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch."""
    if dt.tzinfo is None:
        raise StoreError(f"naive datetime {dt!r}: alertpipe stores UTC-aware times only")
    return int(dt.timestamp() * 1_000_000)


def now_us() -> int:
    return to_us(datetime.now(UTC))


class SQLiteStore:
    """The SQLite implementation of the Store protocol."""

    name = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000,
                 commit_interval: float = COMMIT_INTERVAL) -> None:
        self.path = Path(path)
        self._busy = busy_timeout_ms
        self._commit_interval = commit_interval
        self._texts: list[tuple[int, str]] = []  # (rowid, search text) of committed messages
        self._text_timer: asyncio.TimerHandle | None = None
        self._text_flush: asyncio.Task[None] | None = None
        self._text_due = 0  # waiting texts to write even short of a whole batch

        self._writer: GroupCommitter[sqlite3.Connection] | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._rconn: sqlite3.Connection | None = None
        self._pruned_at = -KEY_PRUNE_INTERVAL
        self._leaders: dict[str, str] = {}  # lock name -> owner (leader_lock)

    # -- lifecycle ----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={int(self._busy)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        q.migrate(conn)
        conn.execute("BEGIN IMMEDIATE")  # texts that waited in memory when the engine stopped
        try:
            q.index_missing(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return conn

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = GroupCommitter(self._connect_writer, name="sqlite-commit",
                                interval=self._commit_interval, full_group=FULL_GROUP)
        try:
            await writer.start()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
        self._writer = writer
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
        self._rconn = await self._read_raw(self._connect)

    async def close(self) -> None:
        if self._writer is not None and self._texts:
            await self.flush_text_index()
        if self._text_timer is not None:
            self._text_timer.cancel()
            self._text_timer = None
        if self._writer is not None:
            await self._writer.stop()
            log.info("store closed", extra={"store": str(self.path),
                                            "commits": self._writer.groups,
                                            "operations": self._writer.ops})
            self._writer = None
        if self._reader is not None:
            if self._rconn is not None:
                await self._read_raw(self._rconn.close)
            self._reader.shutdown(wait=True)
            self._reader = None

    # -- plumbing -----------------------------------------------------------------------
    def _prune_due(self) -> bool:
        """At most once a minute an intake commit also deletes expired message keys."""
        now = time.monotonic()
        if now - self._pruned_at < KEY_PRUNE_INTERVAL:
            return False
        self._pruned_at = now
        return True

    def _writer_or_fail(self) -> GroupCommitter[sqlite3.Connection]:
        if self._writer is None:
            raise StoreUnavailable("the SQLite store is not open")
        return self._writer

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._writer_or_fail().submit(fn)

    async def _read_raw(self, fn: Callable[[], T]) -> T:
        assert self._reader is not None
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._rconn is None:
            raise StoreUnavailable("the SQLite store is not open")
        conn = self._rconn
        try:
            return await self._read_raw(lambda: fn(conn))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store read failed: {exc}") from exc

    @property
    def commit_stats(self) -> tuple[int, int]:
        """(groups committed, operations committed) since open: ops/groups is the grouping."""
        return (self._writer.groups, self._writer.ops) if self._writer else (0, 0)

    # -- operations ---------------------------------------------------------------------
    async def enqueue(self, message: Message, deliveries: Sequence[NewDelivery],
                      keys: Sequence[MessageKey] = ()) -> EnqueueResult:
        ts = to_us(message.received_at)
        row = (message.id, message.channel, ts, jsoncodec.dumps(message.body), message.raw,
               jsoncodec.dumps(dict(message.meta)), "accepted" if deliveries else "filtered",
               message.ref)
        drows = [(message.id, message.channel, d.destination, d.target, ts, ts, ts)
                 for d in deliveries]

        try:
            result, rowid = await self._writer_or_fail().submit_batched(
                self._enqueue_batch, (message.channel, row, drows, keys))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store write failed: {exc}") from exc
        if rowid:
            self._text_waiting(rowid, search_text(message.body))
        return result

    # -- the text index -------------------------------------------------------------------
    def _text_waiting(self, rowid: int, text: str) -> None:
        """A committed message's search text joins the next batch for the text index. One
        FTS5 insert per message costs several times what one insert per batch does, so the
        texts wait (at most TEXT_BATCH of them, or TEXT_WAIT seconds) and go in together, in a
        write of their own; a text search first writes whatever waits, so it misses nothing."""
        self._texts.append((rowid, text))
        if len(self._texts) >= TEXT_BATCH:
            self._flush_texts_soon(everything=False)
        elif self._text_timer is None:
            self._wait_for_texts()

    def _wait_for_texts(self) -> None:
        """Write whatever waits once TEXT_WAIT is over (whole batch or not)."""
        self._text_timer = asyncio.get_running_loop().call_later(
            TEXT_WAIT, self._flush_texts_soon)

    def _flush_texts_soon(self, everything: bool = True) -> None:
        """Start writing waiting texts: whole batches only, or with ``everything`` (the wait is
        over, or a search asks) every text waiting now, the last partial batch too."""
        if everything:
            if self._text_timer is not None:
                self._text_timer.cancel()
                self._text_timer = None
            self._text_due = len(self._texts)  # a flush already running takes them too
        if self._text_flush is None and self._texts and self._writer is not None:
            self._text_flush = asyncio.get_running_loop().create_task(self._flush_texts())

    async def _flush_texts(self) -> None:
        """Write the waiting texts in batches of TEXT_BATCH while a whole batch waits, and the
        first ``_text_due`` texts whatever their number. Under load texts keep arriving while a
        batch is written; each write then takes a whole batch, never the few that arrived
        meanwhile: every write adds a segment to the text index, which its merges pay for."""
        try:
            while self._texts and (self._text_due > 0 or len(self._texts) >= TEXT_BATCH):
                batch, self._texts = self._texts[:TEXT_BATCH], self._texts[TEXT_BATCH:]
                self._text_due = max(0, self._text_due - len(batch))
                try:
                    await self._write(functools.partial(q.index_texts, texts=batch))
                except (StoreUnavailable, sqlite3.Error) as exc:
                    self._texts[:0] = batch  # kept, in order, for the next flush
                    log.warning("text index not updated: %s", exc)
                    return
        finally:
            self._text_flush = None
            if self._texts and self._text_timer is None and self._writer is not None:
                self._wait_for_texts()

    async def flush_text_index(self) -> None:
        """Write every search text still waiting (a text search calls this first)."""
        if self._text_flush is not None:
            await self._text_flush
        if self._texts:
            self._flush_texts_soon()
            if self._text_flush is not None:
                await self._text_flush

    def _enqueue_batch(self, conn: sqlite3.Connection,
                       items: list[_Intake]) -> list[tuple[EnqueueResult, int]]:
        """Every intake of one group with one statement per table: the keys are looked up at
        once, and a key taken by an earlier message of the batch counts as held, exactly as if
        the messages had been written one after the other. Each intake's answer comes with the
        rowid of its new message row (0 when none was written), which the text index uses."""
        now = now_us()
        if self._prune_due():
            conn.execute(q.PRUNE_KEYS, (now,))
        wanted: list[tuple[str, str, str]] = []
        refs: list[tuple[str, str, int]] = []  # dedupe keys: the messages' refs, not rows
        rowkeys: list[list[MessageKey]] = []  # per intake, the keys kept as message_keys rows
        for channel, row, _, keys in items:
            own: list[MessageKey] = []
            for k in keys:
                if _by_ref(k, row):
                    refs.append((channel, k.key, now - int(k.ttl_seconds * 1e6)))
                else:
                    wanted.append((channel, k.kind, k.key))
                    own.append(k)
            rowkeys.append(own)
        held = q.find_keys(conn, wanted, now) if wanted else {}
        if refs:
            held.update(q.find_refs(conn, refs))
        out: list[tuple[EnqueueResult, int]] = []
        messages: list[tuple[Any, ...]] = []
        deliveries: list[tuple[Any, ...]] = []
        keyrows: list[tuple[Any, ...]] = []
        for (channel, row, drows, keys), own in zip(items, rowkeys, strict=True):
            conflict = next(((k, held[(channel, k.kind, k.key)]) for k in keys
                             if (channel, k.kind, k.key) in held), None)
            if conflict is not None:
                k, (mid, fp) = conflict
                out.append((EnqueueResult(message_id=mid, created=False, conflict=k,
                                          fingerprint=fp), 0))
                continue
            mid = row[0]
            for k in keys:
                held[(channel, k.kind, k.key)] = (mid, k.fingerprint)
            for k in own:
                keyrows.append((channel, k.kind, k.key, k.fingerprint, mid,
                                now + int(k.ttl_seconds * 1e6)))
            messages.append(row)
            deliveries.extend(drows)
            out.append((EnqueueResult(message_id=mid), len(messages)))
        if messages:
            conn.executemany(q.INSERT_MESSAGE, messages)
            # one executemany of plain INSERTs into a rowid table: consecutive rowids
            first = conn.execute("SELECT last_insert_rowid()").fetchone()[0] - len(messages) + 1
            q.mark_times(conn, messages, first)
            out = [(r, first + n - 1 if n else 0) for r, n in out]
        if deliveries:
            conn.executemany(q.INSERT_DELIVERY, deliveries)
        if keyrows:
            conn.executemany(q.PUT_KEY, keyrows)
        return out

    async def claim(self, channel: str, destination: str, limit: int, lease_seconds: float,
                    owner: str) -> list[Delivery]:
        def op(conn: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], dict[str, Message]]:
            now = now_us()
            rows = list(conn.execute(q.CLAIM, (now + int(lease_seconds * 1e6), owner, now,
                                               channel, destination, now, limit,
                                               channel, destination, now, limit, limit)))
            # the claimed messages are recent: their pages are in the writer's cache
            return rows, q.load_messages(conn, [r[1] for r in rows]) if rows else {}

        rows, msgs = await self._write(op)
        if not rows:
            return []
        out = [Delivery(id=r[0], message=msgs[r[1]], destination=destination, target=r[2],
                        attempts=r[3], ambiguous=bool(r[4])) for r in rows]
        out.sort(key=lambda d: d.id)
        return out

    async def record(self, results: Sequence[AttemptResult]) -> int:
        def op(conn: sqlite3.Connection) -> int:
            applied = 0
            for r in results:
                status = {"delivered": "delivered", "retry": "pending", "dead": "dead"}[r.outcome]
                nxt = to_us(r.next_attempt_at) if r.next_attempt_at else None
                cur = conn.execute(q.RECORD, (status, to_us(r.finished_at), nxt, r.remote_id,
                                              r.outcome, r.error, r.outcome, r.error_code,
                                              int(r.ambiguous), r.delivery_id, r.lease_owner))
                got = cur.fetchone()
                if got is None:
                    continue
                conn.execute(q.INSERT_ATTEMPT, (r.delivery_id, got[0], to_us(r.started_at),
                                                to_us(r.finished_at), r.outcome, r.remote_id,
                                                r.error, r.error_code, int(r.ambiguous),
                                                r.summary))
                applied += 1
            return applied

        return await self._write(op)

    async def release(self, delivery_ids: Sequence[int], owner: str) -> None:
        ids = list(delivery_ids)

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(q.RELEASE, [(now_us(), i, owner) for i in ids])

        if ids:
            await self._write(op)

    async def next_due(self, channel: str, destination: str) -> datetime | None:
        def op(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(q.NEXT_DUE, (channel, destination, channel, destination)).fetchone()
            return None if row is None or row[0] is None else int(row[0])

        us = await self._read(op)
        return None if us is None else from_us(us)

    async def get_message(self, message_id: str) -> StoredMessage | None:
        return await self._read(lambda c: q.load_stored(c, message_id))

    async def get_delivery(self, delivery_id: int) -> DeliveryRecord | None:
        return await self._read(lambda c: q.load_delivery(c, delivery_id))

    async def list_messages(self, channel: str | None = None, limit: int = 50,
                            before: datetime | None = None, since: datetime | None = None,
                            until: datetime | None = None) -> list[StoredMessage]:
        b = to_us(before) if before else None
        s = to_us(since) if since else None
        u = to_us(until) if until else None
        return await self._read(lambda c: q.list_stored(c, channel, limit, b, s, u))

    async def list_dead(self, channel: str | None = None, limit: int = 100) -> list[DeliveryRecord]:
        return await self._read(lambda c: q.list_dead(c, channel, limit))

    async def requeue(self, delivery_id: int) -> bool:
        return await self._write(
            lambda c: c.execute(q.REQUEUE, (now_us(), now_us(), delivery_id)).rowcount == 1)

    async def discard(self, delivery_id: int) -> bool:
        return await self._write(
            lambda c: c.execute(q.DISCARD, (now_us(), delivery_id)).rowcount == 1)

    async def add_deliveries(self, message_id: str,
                             deliveries: Sequence[NewDelivery]) -> list[int]:
        rows = list(deliveries)

        def op(conn: sqlite3.Connection) -> list[int]:
            found = conn.execute(q.MESSAGE_CHANNEL, (message_id,)).fetchone()
            if found is None:
                raise UsageError(f"no message with id {message_id!r}")
            now = now_us()
            return [int(conn.execute(q.INSERT_DELIVERY + " RETURNING id",
                                     (message_id, found[0], d.destination, d.target, now, now,
                                      now)).fetchone()[0])
                    for d in rows]

        try:
            return await self._write(op)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store write failed: {exc}") from exc

    async def requeue_dead(self, channel: str | None = None) -> int:
        def op(conn: sqlite3.Connection) -> int:
            now = now_us()
            return int(conn.execute(q.REQUEUE_DEAD, (now, now, channel, channel)).rowcount)

        return await self._write(op)

    async def search_messages(self, query: MessageQuery) -> MessagePage:
        check_state(query.state)
        after = decode_cursor(query.cursor)
        text = words(query.text) if query.text else []
        if text:
            await self.flush_text_index()
        since = to_us(query.since) if query.since else None
        until = to_us(query.until) if query.until else None
        found, more = await self._read(lambda c: q.search(
            c, channel=query.channel, ref=query.ref, state=query.state,
            destination=query.destination, text=text, since=since, until=until, after=after,
            limit=max(1, query.limit)))
        return MessagePage(found, encode_cursor(more) if more is not None else None)

    async def prune(self, channel: str, before: datetime,
                    content_before: datetime | None = None, limit: int = 10_000) -> PruneResult:
        b = to_us(before)
        cb = to_us(content_before) if content_before else None
        deleted, stripped = await self._write(lambda c: q.prune(c, channel, b, cb, limit))
        return PruneResult(deleted=deleted, stripped=stripped)

    async def backlog(self, channel: str) -> int:
        return await self._read(lambda c: int(c.execute(q.BACKLOG, (channel,)).fetchone()[0]))

    async def stats(self) -> list[QueueStats]:
        return await self._read(q.stats)

    async def ping(self) -> None:
        await self._write(lambda c: c.execute(q.PING, (now_us(),)))

    async def append_audit(self, actor: str, role: str, action: str, target: str,
                           detail: str | None = None) -> int:
        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute(q.APPEND_AUDIT, (now_us(), actor, role, action, target,
                                                detail)).fetchone()
            return int(row[0])

        try:
            return await self._write(op)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store write failed: {exc}") from exc

    async def list_audit(self, limit: int = 100,
                         before_id: int | None = None) -> list[AuditEntry]:
        return await self._read(lambda c: q.list_audit(c, limit, before_id))

    async def rates(self, channel: str, since: datetime) -> list[RatePoint]:
        s = to_us(since)
        return await self._read(lambda c: q.rates(c, channel, s))

    # -- cluster locks: one engine process per SQLite file, so the first owner to ask in this
    # process holds a lock until it gives it up (PostgreSQL arbitrates between instances) --
    async def leader_lock(self, name: str, owner: str) -> bool:
        return self._leaders.setdefault(name, owner) == owner

    async def leader_unlock(self, name: str, owner: str) -> None:
        if self._leaders.get(name) == owner:
            del self._leaders[name]


__all__ = ["AttemptRecord", "SQLiteStore"]
