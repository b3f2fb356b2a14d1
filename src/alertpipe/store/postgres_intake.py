"""Group commit for the PostgreSQL store's intake, native to the event loop.

``enqueue`` submits a small operation (a coroutine function of the transaction) to one writer
task. The writer takes every operation waiting, runs them all in one transaction in pipeline
mode (statements go out without waiting for each reply), sends one NOTIFY per destination they
made due, and commits once; then it resolves every caller's future. While that commit is in
flight, new arrivals queue up and go in the next transaction together; when idle, an operation
commits at once, so there is no added latency.

Should one operation fail, the group is rolled back and each operation run again in a
transaction of its own, so that one failure never undoes the others (the rule of
:mod:`alertpipe.store.groupcommit`). A savepoint around each operation would avoid the re-run but
costs two statements per operation on every group; measured, it halved intake throughput.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from alertpipe.errors import StoreUnavailable
from alertpipe.store import postgres_sql as q

log = logging.getLogger("alertpipe.store")

T = TypeVar("T")
KEY_PRUNE_INTERVAL = 60.0  # seconds
Unavailable = Callable[[str, BaseException], StoreUnavailable]
_Outcome = tuple[Any, BaseException | None]


class Tx:
    """What an intake operation sees of its group's transaction."""

    __slots__ = ("conn", "wake")

    def __init__(self, conn: q.Conn) -> None:
        self.conn = conn
        self.wake: set[tuple[str, str]] = set()  # (channel, destination) made due: NOTIFY them


class _Op:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[Tx], Awaitable[Any]], future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.future = future


class IntakeWriter:
    """One writer task committing intake operations in groups.

    ``unavailable(what, exc)`` turns a database error into the ``StoreUnavailable`` the caller
    gets (the store's, which keeps the DSN's password out). ``max_group`` caps the operations of
    one transaction; ``max_queue`` those waiting, beyond which ``submit`` raises
    ``StoreUnavailable``. Expired message keys are deleted in an intake transaction at most once
    every ``KEY_PRUNE_INTERVAL`` seconds.
    """

    def __init__(self, *, notify_channel: str, unavailable: Unavailable,
                 redact: Callable[[str], str], timeout: float, max_group: int = 1000,
                 max_queue: int = 20_000) -> None:
        self._notify_channel = notify_channel
        self._unavailable = unavailable
        self._redact = redact
        self._timeout = timeout
        self._max_group = max_group
        self._max_queue = max_queue
        self._pool: AsyncConnectionPool[q.Conn] | None = None
        self._queue: asyncio.Queue[_Op | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.pruned_at = -KEY_PRUNE_INTERVAL
        self.transactions = 0  # transactions committed
        self.operations = 0  # operations run
        self.rerun_groups = 0  # groups rolled back and re-run one operation per transaction

    def start(self, pool: AsyncConnectionPool[q.Conn]) -> None:
        self._pool = pool
        self._queue = asyncio.Queue(maxsize=self._max_queue)
        self._task = asyncio.create_task(self._run(self._queue), name="alertpipe-postgres-intake")

    async def stop(self) -> None:
        """Refuse new operations, finish those already submitted, end the task."""
        task, queue = self._task, self._queue
        self._task = None
        if task is None or queue is None:
            return
        if not task.done():
            await queue.put(None)
        await asyncio.gather(task, return_exceptions=True)

    async def submit(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``fn`` inside the next group's transaction; return after the commit."""
        if self._task is None or self._task.done() or self._queue is None:
            raise StoreUnavailable("the PostgreSQL store is not open")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Op(fn, fut))
        except asyncio.QueueFull:
            raise StoreUnavailable("the store's write queue is full", retry_after=1.0) from None
        return await fut

    def _prune_due(self) -> bool:
        now = time.monotonic()
        if now - self.pruned_at < KEY_PRUNE_INTERVAL:
            return False
        self.pruned_at = now
        return True

    async def _run(self, queue: asyncio.Queue[_Op | None]) -> None:
        while True:
            first = await queue.get()
            if first is None:
                return
            group, stop = [first], False
            while len(group) < self._max_group and not queue.empty():
                nxt = queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
            try:
                await self._run_group(group)
            except Exception as exc:  # a bug, not a database error: never strand a caller
                log.exception("PostgreSQL intake writer failed")
                for op in group:
                    if not op.future.done():
                        op.future.set_exception(self._unavailable("intake failed", exc))
            if stop:
                return

    async def _run_group(self, group: list[_Op]) -> None:
        """Run the group in one transaction; if an operation fails, roll back and run each
        operation again in a transaction of its own."""
        outcomes = await self._attempt(group, prune=self._prune_due(), isolated=len(group) == 1)
        if outcomes is None:
            self.rerun_groups += 1
            outcomes = []
            for op in group:
                outcomes += await self._attempt([op], prune=False, isolated=True) or []
        self.operations += len(group)
        for op, (value, exc) in zip(group, outcomes, strict=True):
            if op.future.done():  # the caller went away
                continue
            if exc is None:
                op.future.set_result(value)
            else:
                op.future.set_exception(exc)

    async def _attempt(self, group: list[_Op], *, prune: bool,
                       isolated: bool) -> list[_Outcome] | None:
        """One transaction for ``group``: each operation's outcome, or None when an operation
        failed and the group should be re-run one by one. With ``isolated`` (one operation, no
        pipeline, so the error is its own) its failure is its outcome. A lost connection fails
        every operation as StoreUnavailable: re-running them one by one could only fail again."""
        assert self._pool is not None
        values: list[Any] = []
        try:
            async with self._pool.connection(timeout=self._timeout) as conn:
                tx = Tx(conn)
                try:
                    async with AsyncExitStack() as stack:
                        if not isolated:
                            await stack.enter_async_context(conn.pipeline())
                        await stack.enter_async_context(conn.transaction())
                        if prune:
                            await conn.execute(q.PRUNE_KEYS)
                        for op in group:
                            values.append(await op.fn(tx))
                        await q.notify(conn, self._notify_channel, tx.wake)
                except Exception as exc:
                    if conn.broken:
                        return [(None, self._unavailable("store write failed", exc))] * len(group)
                    if not isolated:
                        log.info("intake group of %d rolled back (%s); re-running one by one",
                                 len(group), self._redact(str(exc)))
                        return None
                    own: BaseException = exc
                    if isinstance(exc, psycopg.Error):
                        own = self._unavailable("store write failed", exc)
                    return [(None, own)]
        except psycopg.Error as exc:  # no connection to be had (PoolTimeout included)
            return [(None, self._unavailable("store write failed", exc))] * len(group)
        self.transactions += 1
        return [(v, None) for v in values]


__all__ = ["KEY_PRUNE_INTERVAL", "IntakeWriter", "Tx"]
