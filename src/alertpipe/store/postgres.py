"""The PostgreSQL store: several engine instances on one database.

Intake is group-committed on the event loop: ``enqueue`` calls queue up for one writer task,
which runs every enqueue waiting into one transaction and commits once; while that commit is in
flight the next arrivals queue up and go in the next transaction together. Should one operation
fail, the group is rolled back and each operation run again in a transaction of its own, so one
failure never undoes the others (the rule of :mod:`alertpipe.store.groupcommit`). Every other
operation takes a pooled connection (psycopg-pool) and runs its own transaction.

Workers claim with ``FOR UPDATE SKIP LOCKED``: claimers on many hosts neither block on nor share
a delivery. A transaction that makes work due (an enqueue with deliveries, a requeue, a replay,
a release) sends ``NOTIFY alertpipe_work`` with the payload ``["<channel>", "<destination>"]``;
:meth:`PostgresStore.subscribe` listens for it so idle workers wake at once.

The message log (search and retention; migration 2). Each message carries ``seq``, its storage
order (an identity column: searches go newest first by it, and the page cursor is a ``seq``),
its ``ref`` (the business key, indexed), and ``search_words``: a ``tsvector`` whose lexemes are
exactly the case-folded words of :func:`alertpipe.store.search.search_text` of the body, made in
Python at enqueue (no trigger, no text-search parser or dictionary) and indexed with GIN, which
needs no extension. A search word ``w`` becomes the prefix query ``'w':*``, so the index finds
"every word starts a word of the body", the contract's meaning, exactly. Which plan a search
takes is measured rather than left to the planner (it misjudges prefixes and time windows): see
:func:`alertpipe.store.postgres_sql.search`. Retention deletes finished messages with their
deliveries, attempts and keys, and strips content behind a per-channel mark, so that it never
re-reads what it stripped before (:func:`alertpipe.store.postgres_sql.strip`). Messages stored
before migration 2 get their search words from a background task after the upgrade.

The DSN's password never appears in an error or a log line: the DSN is shown as
``postgresql://user@host:port/dbname`` and every server message goes through :func:`redactor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from alertpipe import jsoncodec
from alertpipe.destinations.base import Delivery
from alertpipe.errors import ConfigError, StoreError, StoreUnavailable, UsageError
from alertpipe.message import Message
from alertpipe.store import postgres_sql as q
from alertpipe.store.base import (
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
from alertpipe.store.postgres_intake import IntakeWriter, Tx
from alertpipe.store.postgres_leader import KEEPALIVES, LeaderLocks
from alertpipe.store.postgres_listen import Listener
from alertpipe.store.search import check_state, decode_cursor, encode_cursor, words

log = logging.getLogger("alertpipe.store")

T = TypeVar("T")
Conn = q.Conn
NOTIFY_CHANNEL = "alertpipe_work"


def redactor(dsn: str) -> Callable[[str], str]:
    """A function that blanks the DSN's password, in every spelling it may take, out of text."""
    found: set[str] = set()
    try:
        password = conninfo_to_dict(dsn).get("password")
        if password:
            found.add(str(password))
    except psycopg.Error:
        pass
    try:
        if (url_password := urlsplit(dsn).password):
            found |= {url_password, unquote(url_password)}
    except ValueError:
        pass
    if (m := re.search(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn)):
        found |= {m.group(1), m.group(1).strip("'")}
    found |= {quote(s, safe="") for s in found}
    secrets = sorted((s for s in found if s), key=len, reverse=True)

    def redact(text: str) -> str:
        for s in secrets:
            text = text.replace(s, "***")
        return text

    return redact


def describe(params: dict[str, Any]) -> str:
    """``postgresql://user@host:port/dbname``: where a DSN points, without its password."""
    user = params.get("user")
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return (f"postgresql://{user + '@' if user else ''}{host}:{params.get('port') or 5432}/"
            f"{params.get('dbname') or user or ''}")


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise StoreError(f"naive datetime {dt!r}: alertpipe stores UTC-aware times only")
    return dt


async def _configure(conn: Conn) -> None:
    await conn.execute("SET TIME ZONE 'UTC'")


class PostgresStore:
    """The PostgreSQL implementation of the Store protocol (psycopg 3, async, no ORM).

    ``min_size``/``max_size`` bound the connection pool; ``timeout`` is how long an operation
    waits for a connection before ``StoreUnavailable``; ``max_group`` caps the enqueues of one
    transaction and ``max_queue`` those waiting for the writer; ``notify_channel`` names the
    LISTEN/NOTIFY channel (deployments sharing a database in separate schemas may set their own).
    """

    name = "postgres"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 5.0,
                 max_group: int = 1000, max_queue: int = 20_000,
                 notify_channel: str = NOTIFY_CHANNEL) -> None:
        self._redact = redactor(dsn)
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            raise ConfigError("invalid PostgreSQL DSN (not shown: it may hold a password): "
                              f"{self._redact(str(exc))}", key="engine.store") from None
        self.where = describe(params)
        extra: dict[str, Any] = {"fallback_application_name": "alertpipe"}
        if "connect_timeout" not in params:
            extra["connect_timeout"] = max(1, round(timeout))
        self._conninfo = make_conninfo(dsn, **extra)
        self._min_size, self._max_size, self._timeout = min_size, max_size, timeout
        self._notify_channel = notify_channel
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._intake = IntakeWriter(notify_channel=notify_channel, unavailable=self._unavailable,
                                    redact=self._redact, timeout=timeout, max_group=max_group,
                                    max_queue=max_queue)
        self._listeners: list[Listener] = []
        self._filler: asyncio.Task[None] | None = None  # fills in older messages' search words
        self._leaders = LeaderLocks(self._leader_connect, self._unavailable)

    # -- lifecycle ----------------------------------------------------------------------
    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailable:
        detail = " ".join(self._redact(str(exc)).split())
        return StoreUnavailable(f"{what} (PostgreSQL at {self.where}): {detail}", retry_after=1.0)

    async def _connect(self, conninfo: str) -> Conn:
        try:
            return await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise self._unavailable("cannot connect", exc) from exc

    async def open(self) -> None:
        """Connect, apply pending migrations (serialised across instances), open the pool and
        start the intake writer. Raises ``StoreUnavailable`` if the server cannot be reached."""
        if self._pool is not None:
            return
        conn = await self._connect(self._conninfo)
        try:
            applied = await q.migrate(conn)
            unindexed = await q.has_unindexed(conn)
        except psycopg.Error as exc:
            raise self._unavailable("schema migration failed", exc) from exc
        finally:
            await conn.close()
        if applied:
            log.info("PostgreSQL store at %s: %d migration(s) applied", self.where, applied)
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._conninfo, min_size=self._min_size, max_size=self._max_size, open=False,
            kwargs={"autocommit": True}, configure=_configure, timeout=self._timeout,
            name="alertpipe")
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise self._unavailable("cannot fill the connection pool", exc) from exc
        self._pool = pool
        self._intake.start(pool)
        if unindexed:
            self._filler = asyncio.create_task(self._fill_search_words(),
                                               name="alertpipe-postgres-search-words")

    async def close(self) -> None:
        """Let the intake writer finish every enqueue already submitted (refusing new ones),
        stop the listeners, close the pool."""
        if self._filler is not None:
            self._filler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filler
            self._filler = None
        await self._intake.stop()
        await asyncio.gather(*(listener.stop() for listener in self._listeners))
        self._listeners.clear()
        await self._leaders.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def commit_stats(self) -> tuple[int, int]:
        """(intake transactions committed, intake operations run) since the store was made:
        operations/transactions is the grouping."""
        return self._intake.transactions, self._intake.operations

    @property
    def rerun_groups(self) -> int:
        """Intake groups rolled back because one operation failed, then re-run one by one."""
        return self._intake.rerun_groups

    # -- plumbing -----------------------------------------------------------------------
    @asynccontextmanager
    async def _conn(self, *, transaction: bool = False) -> AsyncIterator[Conn]:
        """A pooled connection (autocommit: one statement is its own transaction), inside a
        transaction when asked; psycopg errors become ``StoreUnavailable``."""
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the PostgreSQL store is not open")
        try:
            async with pool.connection(timeout=self._timeout) as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except PoolTimeout as exc:
            raise self._unavailable(f"no connection within {self._timeout:g}s", exc) from exc
        except psycopg.Error as exc:
            raise self._unavailable("store operation failed", exc) from exc

    # -- intake -------------------------------------------------------------------------
    async def enqueue(self, message: Message, deliveries: Sequence[NewDelivery],
                      keys: Sequence[MessageKey] = ()) -> EnqueueResult:
        channel = message.channel
        row = {"id": message.id, "channel": channel, "received_at": _aware(message.received_at),
               "body": jsoncodec.dumps(message.body), "raw": message.raw,
               "meta": jsoncodec.dumps(dict(message.meta)), "ref": message.ref,
               "words": q.search_words(message.body),
               "status": "accepted" if deliveries else "filtered",
               "destinations": [d.destination for d in deliveries],
               "targets": [d.target for d in deliveries]}
        unique = list({(k.kind, k.key): k for k in keys}.values())

        async def op(tx: Tx) -> EnqueueResult:
            for n, k in enumerate(unique):
                held = await self._take_key(tx.conn, channel, k, message.id)
                if held is not None:
                    if n:  # give back the keys this message took before the conflict
                        await tx.conn.execute(q.DROP_KEYS, (channel, message.id))
                    return EnqueueResult(message_id=held[0], created=False, conflict=k,
                                         fingerprint=held[1])
            await tx.conn.execute(q.INSERT_MESSAGE, row)
            tx.wake.update((channel, d.destination) for d in deliveries)
            return EnqueueResult(message_id=message.id)

        return await self._intake.submit(op)

    @staticmethod
    async def _take_key(conn: Conn, channel: str, k: MessageKey,
                        message_id: str) -> tuple[str, str | None] | None:
        """Take ``k`` for ``message_id``; if a live key holds it, (its message, fingerprint)."""
        for _ in range(3):  # a held key may expire and be pruned between the two statements
            cur = await conn.execute(q.TAKE_KEY, (channel, k.kind, k.key, k.fingerprint,
                                                  message_id, float(k.ttl_seconds)))
            if await cur.fetchone() is not None:
                return None
            cur = await conn.execute(q.FIND_KEY, (channel, k.kind, k.key))
            held = await cur.fetchone()
            if held is not None:
                return held[0], held[1]
        raise StoreUnavailable(f"message key {k.kind}/{k.key} is contended; try again")

    # -- workers ------------------------------------------------------------------------
    async def claim(self, channel: str, destination: str, limit: int, lease_seconds: float,
                    owner: str) -> list[Delivery]:
        async with self._conn() as conn:
            cur = await conn.execute(q.CLAIM, {"channel": channel, "destination": destination,
                                               "limit": limit, "owner": owner,
                                               "lease": float(lease_seconds)})
            rows = await cur.fetchall()
        return [Delivery(id=r[0], message=q.message_from_row(r[4:11]), destination=destination,
                         target=r[1], attempts=r[2], ambiguous=r[3]) for r in rows]

    async def record(self, results: Sequence[AttemptResult]) -> int:
        params = [{"status": {"delivered": "delivered", "retry": "pending",
                              "dead": "dead"}[r.outcome],
                   "outcome": r.outcome, "started_at": _aware(r.started_at),
                   "finished_at": _aware(r.finished_at),
                   "next_attempt_at": _aware(r.next_attempt_at) if r.next_attempt_at else None,
                   "remote_id": r.remote_id, "error": r.error, "error_code": r.error_code,
                   "ambiguous": r.ambiguous, "delivery_id": r.delivery_id,
                   "owner": r.lease_owner, "summary": r.summary}
                  for r in sorted(results, key=lambda r: r.delivery_id)]  # one lock order
        if not params:
            return 0
        async with self._conn(transaction=True) as conn, conn.cursor() as cur:
            await cur.executemany(q.RECORD, params)
            return max(cur.rowcount, 0)

    async def release(self, delivery_ids: Sequence[int], owner: str) -> None:
        ids = list(delivery_ids)
        if not ids:
            return
        async with self._conn(transaction=True) as conn:
            cur = await conn.execute(q.RELEASE, (ids, owner))
            await q.notify(conn, self._notify_channel, await cur.fetchall())

    async def next_due(self, channel: str, destination: str) -> datetime | None:
        async with self._conn() as conn:
            cur = await conn.execute(q.NEXT_DUE, {"channel": channel, "destination": destination})
            row = await cur.fetchone()
        due: datetime | None = None if row is None else row[0]
        return due

    # -- reading ------------------------------------------------------------------------
    async def get_message(self, message_id: str) -> StoredMessage | None:
        async with self._conn() as conn:
            found = await q.load_stored(conn, [message_id])
        return found[0] if found else None

    async def get_delivery(self, delivery_id: int) -> DeliveryRecord | None:
        async with self._conn() as conn:
            return await q.load_delivery(conn, delivery_id)

    async def list_messages(self, channel: str | None = None, limit: int = 50,
                            before: datetime | None = None, since: datetime | None = None,
                            until: datetime | None = None) -> list[StoredMessage]:
        for bound in (before, since, until):
            if bound is not None:
                _aware(bound)
        async with self._conn() as conn:
            return await q.list_stored(conn, channel, limit, before, since, until)

    async def list_dead(self, channel: str | None = None, limit: int = 100) -> list[DeliveryRecord]:
        async with self._conn() as conn:
            return await q.list_dead(conn, channel, limit)

    # -- operators ----------------------------------------------------------------------
    async def requeue(self, delivery_id: int) -> bool:
        async with self._conn(transaction=True) as conn:
            rows = await (await conn.execute(q.REQUEUE, (delivery_id,))).fetchall()
            await q.notify(conn, self._notify_channel, rows)
        return len(rows) == 1

    async def discard(self, delivery_id: int) -> bool:
        async with self._conn() as conn:
            cur = await conn.execute(q.DISCARD, (delivery_id,))
            return cur.rowcount == 1

    async def add_deliveries(self, message_id: str,
                             deliveries: Sequence[NewDelivery]) -> list[int]:
        rows = list(deliveries)
        async with self._conn(transaction=True) as conn:
            found = await (await conn.execute(q.MESSAGE_CHANNEL, (message_id,))).fetchone()
            if found is None:
                raise UsageError(f"no message with id {message_id!r}")
            if not rows:
                return []
            cur = await conn.execute(q.ADD_DELIVERIES, {
                "message_id": message_id, "channel": found[0],
                "destinations": [d.destination for d in rows],
                "targets": [d.target for d in rows]})
            ids = sorted(int(r[0]) for r in await cur.fetchall())  # identity follows input order
            await q.notify(conn, self._notify_channel, [(found[0], d.destination) for d in rows])
        return ids

    async def requeue_dead(self, channel: str | None = None) -> int:
        async with self._conn(transaction=True) as conn:
            rows = await (await conn.execute(q.REQUEUE_DEAD, {"channel": channel})).fetchall()
            await q.notify(conn, self._notify_channel, rows)
        return len(rows)

    async def backlog(self, channel: str) -> int:
        async with self._conn() as conn:
            row = await (await conn.execute(q.BACKLOG, (channel,))).fetchone()
        return int(row[0]) if row else 0

    async def stats(self) -> list[QueueStats]:
        async with self._conn() as conn:
            return await q.stats(conn)

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.execute(q.PING)

    # -- the dashboard's operations -----------------------------------------------------
    async def append_audit(self, actor: str, role: str, action: str, target: str,
                           detail: str | None = None) -> int:
        async with self._conn() as conn:
            cur = await conn.execute(q.APPEND_AUDIT, (actor, role, action, target, detail))
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def list_audit(self, limit: int = 100,
                         before_id: int | None = None) -> list[AuditEntry]:
        async with self._conn() as conn:
            return await q.list_audit(conn, limit, before_id)

    # -- the message log ------------------------------------------------------------------
    async def search_messages(self, query: MessageQuery) -> MessagePage:
        """See :func:`postgres_sql.search`: a GIN index on the words of each message answers
        the text, ``seq`` (storage order) orders and pages."""
        check_state(query.state)
        after = decode_cursor(query.cursor)
        text = words(query.text) if query.text else []
        for bound in (query.since, query.until):
            if bound is not None:
                _aware(bound)
        async with self._conn() as conn:
            found, more = await q.search(
                conn, channel=query.channel, ref=query.ref, state=query.state,
                destination=query.destination, text=text, since=query.since, until=query.until,
                after=after, limit=max(1, query.limit))
        return MessagePage(found, encode_cursor(more) if more is not None else None)

    async def prune(self, channel: str, before: datetime,
                    content_before: datetime | None = None, limit: int = 10_000) -> PruneResult:
        _aware(before)
        if content_before is not None:
            _aware(content_before)
        async with self._conn(transaction=True) as conn:
            deleted, stripped = await q.prune(conn, channel, before, content_before, limit)
        return PruneResult(deleted=deleted, stripped=stripped)

    async def _fill_search_words(self) -> None:
        """Give messages stored before the message log existed their search words, a batch per
        transaction, in the background (until then text search does not find them)."""
        total = 0
        try:
            while True:
                async with self._conn() as conn:
                    n = await q.fill_search_words(conn)
                total += n
                if n < q.INDEX_BATCH:
                    break
        except StoreUnavailable as exc:
            log.warning("search words of older messages not filled in (%d done; the rest at "
                        "the next start): %s", total, exc)
            return
        if total:
            log.info("PostgreSQL store at %s: search words filled in for %d older message(s)",
                     self.where, total)

    async def rates(self, channel: str, since: datetime) -> list[RatePoint]:
        async with self._conn() as conn:
            return await q.rates(conn, channel, _aware(since))

    # -- LISTEN/NOTIFY ------------------------------------------------------------------
    async def subscribe(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(channel, destination)`` whenever a transaction makes deliveries of
        that destination due (from this instance or any other on the database).

        Returns once listening, on a dedicated connection; raises ``StoreUnavailable`` if it
        cannot listen now. Should the connection drop later, a background task reconnects with
        exponential backoff and then calls ``callback`` for every destination with work due
        (notifications sent while nobody listened are lost). ``close()`` stops it. The callback
        runs on the event loop and must not block; an exception from it is logged.
        """
        if self._pool is None:
            raise StoreUnavailable("the PostgreSQL store is not open")
        listener = Listener(self._listen_connect, callback,
                            lambda exc: str(self._unavailable("listener", exc)))
        await listener.start()
        self._listeners.append(listener)

    async def _listen_connect(self) -> Conn:
        conn = await self._connect(make_conninfo(
            self._conninfo, fallback_application_name="alertpipe-listener"))
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._notify_channel)))
        except psycopg.Error as exc:
            await conn.close()
            raise self._unavailable("cannot LISTEN", exc) from exc
        return conn

    # -- leader locks (see postgres_leader) ---------------------------------------------
    async def leader_lock(self, name: str, owner: str) -> bool:
        """A session advisory lock on a connection of its own; see :class:`LeaderLocks`."""
        if self._pool is None:
            raise StoreUnavailable("the PostgreSQL store is not open")
        return await self._leaders.take(name, owner)

    async def leader_unlock(self, name: str, owner: str) -> None:
        await self._leaders.give_up(name, owner)

    async def _leader_connect(self) -> Conn:
        return await self._connect(make_conninfo(
            self._conninfo, fallback_application_name="alertpipe-leader", **KEEPALIVES))


__all__ = ["NOTIFY_CHANNEL", "PostgresStore", "describe", "redactor"]
