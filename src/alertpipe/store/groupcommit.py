"""Group commit: one writer thread, one connection, many operations per transaction.

Callers on the event loop submit small write operations (functions of a DB-API connection).
The writer thread takes every operation waiting in its queue, runs them all inside one
transaction, commits once — one fsync for the whole group — and then resolves every caller's
future. Should one operation fail, the group is rolled back and each operation is run again in a
transaction of its own, so that one failure never undoes the others.
Under load many concurrent requests share one commit; when idle an operation commits at once,
so there is no added latency.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from alertpipe.errors import StoreUnavailable

log = logging.getLogger("alertpipe.store")

C = TypeVar("C")
T = TypeVar("T")


class Connection(Protocol):
    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...


class _Op:
    __slots__ = ("fn", "future", "loop")

    def __init__(self, fn: Callable[[Any], Any], future: asyncio.Future[Any],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop


_STOP = object()


def _rollback(execute: Callable[..., Any]) -> None:
    try:
        execute("ROLLBACK")
    except Exception:  # the transaction may already be gone
        pass


def _settle(pairs: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, result, exc in pairs:
        if fut.done():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)


class GroupCommitter(Generic[C]):
    """Runs write operations on a dedicated thread, committing them in groups.

    ``connect`` opens the writer's connection (called on the writer thread).
    ``max_queue`` bounds the operations waiting; beyond it ``submit`` raises StoreUnavailable.
    """

    def __init__(self, connect: Callable[[], C], *, begin: str = "BEGIN IMMEDIATE",
                 max_queue: int = 20_000, max_group: int = 2_000, name: str = "store-writer"):
        self._connect = connect
        self._begin = begin
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        self._max_group = max_group
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.groups = 0
        self.ops = 0

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    async def submit(self, fn: Callable[[C], T]) -> T:
        """Run ``fn(conn)`` inside the next group's transaction; return after the commit."""
        if not self._thread.is_alive():
            raise StoreUnavailable("the store writer is not running")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        try:
            self._queue.put_nowait(_Op(fn, fut, loop))
        except queue.Full:
            raise StoreUnavailable("the store's write queue is full", retry_after=1.0) from None
        return await fut

    # -- writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to start()
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                group: list[_Op] = [first]  # type: ignore[list-item]
                stop_after = False
                while len(group) < self._max_group:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop_after = True
                        break
                    group.append(nxt)  # type: ignore[arg-type]
                self._run_group(conn, group)
                if stop_after:
                    return
        finally:
            close = getattr(conn, "close", None)
            if close is not None:
                close()

    def _attempt_group(self, conn: C, group: list[_Op], *, isolated: bool = False
                       ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]] | None:
        """One transaction for ``group``: the results, or None when an operation failed (the
        transaction is then rolled back). With ``isolated`` an operation's own failure is its
        result; a failing commit fails the whole group as StoreUnavailable."""
        execute = conn.execute  # type: ignore[attr-defined]
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            execute(self._begin)
        except Exception as exc:
            log.error("store transaction could not begin: %s", exc)
            err = StoreUnavailable(f"store unavailable: {exc}", retry_after=1.0)
            return [(op.future, None, err) for op in group]
        for op in group:
            try:
                results.append((op.future, op.fn(conn), None))
            except Exception as exc:
                _rollback(execute)
                if not isolated:
                    return None
                return [(op.future, None, exc)]
        try:
            execute("COMMIT")
        except Exception as exc:
            log.error("store commit failed: %s", exc)
            _rollback(execute)
            err = StoreUnavailable(f"store commit failed: {exc}", retry_after=1.0)
            return [(op.future, None, err) for op in group]
        return results

    def _run_group(self, conn: C, group: list[_Op]) -> None:
        """Run the whole group in one transaction. If any operation fails, roll the group back
        and run each operation again in a transaction of its own, so that one failing operation
        never takes the others down (and the common case pays no savepoints)."""
        results = self._attempt_group(conn, group) if len(group) > 1 else None
        if results is None:
            results = [self._attempt_group(conn, [op], isolated=True)[0]  # type: ignore[index]
                       for op in group]
        self.groups += 1
        self.ops += len(group)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any,
                                                             BaseException | None]]] = {}
        for op, res in zip(group, results, strict=True):
            by_loop.setdefault(op.loop, []).append(res)
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, pairs)
            except RuntimeError:  # the loop has closed; nobody is waiting any more
                pass
