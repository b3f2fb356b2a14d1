"""Group commit: many write operations per transaction, the commit's fsync off the event loop.

Callers on the event loop submit small write operations (functions of a DB-API connection).
Operations submitted while the previous group is committing wait; as soon as that commit is on
disk, every waiting operation runs, **on the event loop**, inside one new transaction, and its
``COMMIT`` (the write-ahead log write and its fsync) goes to a dedicated commit thread while the
loop serves the next requests. Then every caller's future is resolved.

Why the statements run on the loop and only the commit on a thread: the statements are short
CPU work on pages in memory, and running them where the requests are parsed costs no thread
hand-off, no lock and no GIL switch per operation; the commit is the one slow part (it waits for
the disk), and there is exactly one hand-off per group for it. Under load many requests share one
commit; when idle an operation commits at once, so there is no added latency.

Should one operation fail, the group is rolled back and each operation is run again in a
transaction of its own, so that one failure never undoes the others (and the common case pays no
savepoints).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, Protocol, TypeVar

from alertpipe.errors import StoreUnavailable

log = logging.getLogger("alertpipe.store")

C = TypeVar("C")
T = TypeVar("T")


class Connection(Protocol):
    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...


class _Op:
    __slots__ = ("batch", "fn", "future", "item")

    def __init__(self, fn: Callable[[Any], Any], future: asyncio.Future[Any],
                 batch: Callable[[Any, list[Any]], list[Any]] | None = None,
                 item: Any = None) -> None:
        self.fn = fn
        self.future = future
        self.batch = batch
        self.item = item


_Result = tuple[Any, BaseException | None]
TIMER_SLACK = 0.001  # seconds
_SETTLED: list[_Result] = []  # _attempt's answer when it has already settled the group


def _rollback(execute: Callable[..., Any]) -> None:
    try:
        execute("ROLLBACK")
    except Exception:  # the transaction may already be gone
        pass


class GroupCommitter(Generic[C]):
    """Runs write operations in groups, one transaction and one commit per group.

    ``connect`` opens the connection (on the commit thread: it may migrate the schema).
    ``max_queue`` bounds the operations waiting; beyond it ``submit`` raises StoreUnavailable.
    ``max_group`` bounds the operations in one transaction (and so the time one group holds the
    event loop); ``max_wait`` bounds how long a busy loop gathers operations for one group;
    ``interval`` is the least time between the starts of two groups (operations arriving
    meanwhile join the next group), except that ``full_group`` operations waiting start a group
    at once: the interval is there to share a commit's fixed cost among many operations, and a
    group that large already shares it (holding it back would only leave the loop idle while
    every client waits for its answer).
    """

    def __init__(self, connect: Callable[[], C], *, begin: str = "BEGIN IMMEDIATE",
                 max_queue: int = 20_000, max_group: int = 500, max_wait: float = 0.01,
                 interval: float = 0.0, full_group: int = 32, name: str = "store-writer"):
        self._connect = connect
        self._begin = begin
        self._max_queue = max_queue
        self._max_group = max_group
        self._max_wait = max_wait
        self._interval = interval
        self._full_group = full_group
        self._not_before = 0.0
        self._timer: asyncio.TimerHandle | None = None  # the gathering group's wait, if any
        self._seen = 0
        self._gather_until = 0.0
        self._name = name
        self._pending: list[_Op] = []
        self._busy = False  # a group is running or committing
        self._closing = False
        self._conn: C | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._idle: asyncio.Event | None = None
        self.groups = 0
        self.ops = 0

    async def start(self) -> None:
        """Open the connection on the commit thread; raises whatever ``connect`` raises."""
        self._loop = asyncio.get_running_loop()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=self._name)
        self._idle = asyncio.Event()
        self._idle.set()
        try:
            self._conn = await self._loop.run_in_executor(self._thread, self._connect)
        except BaseException:
            self._thread.shutdown(wait=False)
            self._thread = None
            raise

    async def stop(self) -> None:
        """Refuse new operations, let the submitted ones commit, close the connection."""
        if self._conn is None or self._closing:
            return
        self._closing = True
        assert self._idle is not None and self._loop is not None and self._thread is not None
        await self._idle.wait()
        conn, self._conn = self._conn, None
        close = getattr(conn, "close", None)
        if close is not None:
            await self._loop.run_in_executor(self._thread, close)
        self._thread.shutdown(wait=True)
        self._thread = None

    @property
    def alive(self) -> bool:
        return self._conn is not None and not self._closing

    async def submit(self, fn: Callable[[C], T]) -> T:
        """Run ``fn(conn)`` inside the next group's transaction; return after the commit."""
        return await self._submit(_Op(fn, self._future()))  # type: ignore[no-any-return]

    async def submit_batched(self, batch: Callable[[C, list[Any]], list[T]], item: Any) -> T:
        """Like :meth:`submit`, for operations that are cheaper together: items submitted with
        the same ``batch`` function that land in one group next to each other are passed to one
        call ``batch(conn, items)``, which returns one result per item, in order (and must give
        each item the result it would have had alone, in that order)."""
        op = _Op(lambda conn: batch(conn, [item])[0], self._future(), batch, item)
        return await self._submit(op)  # type: ignore[no-any-return]

    def _future(self) -> asyncio.Future[Any]:
        if self._conn is None or self._closing or self._loop is None:
            raise StoreUnavailable("the store writer is not running")
        if len(self._pending) >= self._max_queue:
            raise StoreUnavailable("the store's write queue is full", retry_after=1.0)
        return self._loop.create_future()

    async def _submit(self, op: _Op) -> Any:
        assert self._loop is not None
        fut = op.future
        self._pending.append(op)
        if not self._busy:
            self._busy = True
            assert self._idle is not None
            self._idle.clear()
            self._gather()
        elif self._timer is not None and len(self._pending) >= self._full_group:
            self._timer.cancel()  # full enough: the group goes without waiting out the interval
            self._timer = None
            self._loop.call_soon(self._hop)
        return await fut

    # -- on the event loop ----------------------------------------------------------------
    def _gather(self) -> None:
        """Start the next group once the loop has stopped producing operations.

        Each hop lets the loop run one more round of I/O and ready tasks; while a round adds
        operations (requests are still being parsed), wait one more round, up to ``max_wait``
        seconds or ``max_group`` operations. An idle loop adds none, so a lone operation commits
        after one round; a busy one fills the group, and one commit (one WAL write, one fsync)
        carries the whole burst."""
        assert self._loop is not None
        self._seen = len(self._pending)
        self._gather_until = self._loop.time() + self._max_wait
        self._loop.call_soon(self._hop)

    def _hop(self) -> None:
        assert self._loop is not None
        self._timer = None
        n = len(self._pending)
        if n == 0:  # nothing to wait for: idle (the next operation starts a group again)
            self._next_group()
            return
        if n < self._max_group:
            now = self._loop.time()
            # The last commit started moments ago: gather until then, unless the group is
            # full enough already. (A timer may fire up to a clock tick early, e.g. uvloop's
            # 1 ms; within that, go now rather than spin.)
            if now < self._not_before - TIMER_SLACK and n < self._full_group:
                self._timer = self._loop.call_at(self._not_before, self._hop)
                return
            if self._seen < n and now < self._gather_until:
                self._seen = n
                self._loop.call_soon(self._hop)
                return
        self._not_before = self._loop.time() + self._interval
        self._next_group()

    def _next_group(self) -> None:
        """Run the waiting operations as one transaction and hand its commit to the thread."""
        assert self._loop is not None and self._thread is not None and self._idle is not None
        if not self._pending or self._conn is None:
            self._busy = False
            self._idle.set()
            return
        group = self._pending[:self._max_group]
        del self._pending[:len(group)]
        conn = self._conn
        results = self._attempt(conn, group, isolated=len(group) == 1)
        if results is _SETTLED:
            return
        if results is None:  # one operation failed: each on its own (rare; commits inline)
            self._finish(group, [self._isolated(conn, op) for op in group])
            return
        cf = self._thread.submit(self._commit, conn)
        asyncio.wrap_future(cf, loop=self._loop).add_done_callback(
            lambda f: self._committed(group, results, f))

    def _attempt(self, conn: C, group: list[_Op], *, isolated: bool = False
                 ) -> list[_Result] | None:
        """BEGIN and every operation of ``group``: their results with the transaction open; None
        when an operation failed (the transaction is rolled back); ``_SETTLED`` when the group
        has been answered here (BEGIN failed, or with ``isolated``, one operation whose own
        failure is its result)."""
        execute = conn.execute  # type: ignore[attr-defined]
        try:
            execute(self._begin)
        except Exception as exc:
            log.error("store transaction could not begin: %s", exc)
            err = StoreUnavailable(f"store unavailable: {exc}", retry_after=1.0)
            self._finish(group, [(None, err)] * len(group))
            return _SETTLED
        results: list[_Result] = []
        i, n = 0, len(group)
        try:
            while i < n:
                op = group[i]
                if op.batch is None:
                    results.append((op.fn(conn), None))
                    i += 1
                    continue
                j = i + 1
                while j < n and group[j].batch == op.batch:  # bound methods: equal, not one object
                    j += 1
                results.extend((v, None) for v in op.batch(conn, [o.item for o in group[i:j]]))
                i = j
        except Exception as exc:
            _rollback(execute)
            if isolated:
                self._finish(group, [(None, exc)])
                return _SETTLED
            return None
        return results

    def _isolated(self, conn: C, op: _Op) -> _Result:
        """One operation in a transaction of its own, committed here."""
        execute = conn.execute  # type: ignore[attr-defined]
        try:
            execute(self._begin)
        except Exception as exc:
            return None, StoreUnavailable(f"store unavailable: {exc}", retry_after=1.0)
        try:
            value = op.fn(conn)
        except Exception as exc:
            _rollback(execute)
            return None, exc
        try:
            execute("COMMIT")
        except Exception as exc:
            log.error("store commit failed: %s", exc)
            _rollback(execute)
            return None, StoreUnavailable(f"store commit failed: {exc}", retry_after=1.0)
        return value, None

    def _committed(self, group: list[_Op], results: list[_Result],
                   done: asyncio.Future[None]) -> None:
        exc = done.exception()
        if exc is not None:
            log.error("store commit failed: %s", exc)
            err = StoreUnavailable(f"store commit failed: {exc}", retry_after=1.0)
            results = [(None, err)] * len(group)
        self._finish(group, results)

    def _finish(self, group: list[_Op], results: list[_Result]) -> None:
        self.groups += 1
        self.ops += len(group)
        for op, (value, exc) in zip(group, results, strict=True):
            if op.future.done():  # the caller gave up (cancelled)
                continue
            if exc is not None:
                op.future.set_exception(exc)
            else:
                op.future.set_result(value)
        self._gather()

    # -- on the commit thread ---------------------------------------------------------------
    @staticmethod
    def _commit(conn: Any) -> None:
        try:
            conn.execute("COMMIT")
        except Exception:
            _rollback(conn.execute)
            raise
