"""Group commit: many operations share one transaction; one failing operation fails alone."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from alertpipe.store.groupcommit import GroupCommitter


async def test_a_failing_operation_does_not_undo_its_group(tmp_path: Path) -> None:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(tmp_path / "g.db", isolation_level=None, check_same_thread=False)
        conn.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY)")
        return conn

    gc: GroupCommitter[sqlite3.Connection] = GroupCommitter(connect)
    await gc.start()
    try:
        def insert(k: int) -> object:
            return lambda c: c.execute("INSERT INTO t(k) VALUES (?)", (k,)).rowcount

        def boom(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO t(k) VALUES (1000)")  # undone with the failure below
            raise ValueError("bad operation")

        ops = [gc.submit(insert(k)) for k in range(50)]  # type: ignore[arg-type]
        ops.insert(25, gc.submit(boom))
        results = await asyncio.gather(*ops, return_exceptions=True)
        assert isinstance(results[25], ValueError)
        assert [r for i, r in enumerate(results) if i != 25] == [1] * 50
        rows = await gc.submit(lambda c: [r[0] for r in c.execute("SELECT k FROM t ORDER BY k")])
        assert rows == list(range(50))
        dup = gc.submit(insert(3))  # a constraint failure is that operation's own result
        with pytest.raises(sqlite3.IntegrityError):
            await dup
        assert gc.ops >= 52 and gc.groups < gc.ops
    finally:
        await gc.stop()


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY)")
    return conn


async def test_batched_operations_share_one_call_and_fail_alone(tmp_path: Path) -> None:
    gc: GroupCommitter[sqlite3.Connection] = GroupCommitter(lambda: _connect(tmp_path / "b.db"))
    await gc.start()
    calls: list[int] = []

    def insert_all(conn: sqlite3.Connection, keys: list[int]) -> list[int]:
        calls.append(len(keys))
        conn.executemany("INSERT INTO t(k) VALUES (?)", [(k,) for k in keys])
        return [k * 10 for k in keys]

    try:
        got = await asyncio.gather(*(gc.submit_batched(insert_all, k) for k in range(40)))
        assert got == [k * 10 for k in range(40)]
        assert sum(calls) == 40 and len(calls) < 40  # many items per call
        calls.clear()
        # 7 is already stored: the batch fails, is undone, and each item is retried alone
        again = await asyncio.gather(*(gc.submit_batched(insert_all, k) for k in (100, 7, 101)),
                                     return_exceptions=True)
        assert again[0] == 1000 and again[2] == 1010
        assert isinstance(again[1], sqlite3.IntegrityError)
        rows = await gc.submit(
            lambda c: [r[0] for r in c.execute("SELECT k FROM t WHERE k >= 100")])
        assert rows == [100, 101]
    finally:
        await gc.stop()


async def test_an_interval_gathers_what_arrives_meanwhile_into_one_commit(tmp_path: Path) -> None:
    gc: GroupCommitter[sqlite3.Connection] = GroupCommitter(lambda: _connect(tmp_path / "i.db"),
                                                            interval=0.2)
    await gc.start()
    try:
        await gc.submit(lambda c: c.execute("INSERT INTO t(k) VALUES (1)"))  # idle: at once
        assert gc.groups == 1
        # submitted one by one, each after the previous was queued, within the interval
        ops = []
        for k in range(2, 12):
            ops.append(asyncio.ensure_future(
                gc.submit(lambda c, k=k: c.execute("INSERT INTO t(k) VALUES (?)", (k,)))))
            await asyncio.sleep(0)  # a loop round between submissions (not a timed wait)
        await asyncio.gather(*ops)
        assert gc.groups == 2 and gc.ops == 11
    finally:
        await gc.stop()


async def test_a_full_group_does_not_wait_out_the_interval(tmp_path: Path) -> None:
    gc: GroupCommitter[sqlite3.Connection] = GroupCommitter(lambda: _connect(tmp_path / "f.db"),
                                                            interval=60.0, full_group=5)
    await gc.start()
    try:
        await gc.submit(lambda c: c.execute("INSERT INTO t(k) VALUES (1)"))  # idle: at once
        first = asyncio.ensure_future(gc.submit(lambda c: c.execute("INSERT INTO t(k) VALUES (2)")))
        for _ in range(5):  # loop rounds (not a timed wait): the group is waiting out 60 s
            await asyncio.sleep(0)
        assert not first.done() and gc.groups == 1
        more = [asyncio.ensure_future(
            gc.submit(lambda c, k=k: c.execute("INSERT INTO t(k) VALUES (?)", (k,))))
            for k in range(3, 7)]  # the fifth waiting operation fills the group: it goes now
        await asyncio.wait_for(asyncio.gather(first, *more), timeout=30)
        assert gc.groups == 2 and gc.ops == 6
    finally:
        await gc.stop()


async def test_a_bound_method_batches_its_items_together(tmp_path: Path) -> None:
    # each `self.method` is a new bound-method object: items must still share one call
    class Writer:
        def __init__(self) -> None:
            self.calls: list[int] = []

        def insert_all(self, conn: sqlite3.Connection, keys: list[int]) -> list[int]:
            self.calls.append(len(keys))
            conn.executemany("INSERT INTO t(k) VALUES (?)", [(k,) for k in keys])
            return keys

    gc: GroupCommitter[sqlite3.Connection] = GroupCommitter(lambda: _connect(tmp_path / "m.db"))
    await gc.start()
    writer = Writer()
    try:
        await gc.submit(lambda c: c.execute("INSERT INTO t(k) VALUES (0)"))
        got = await asyncio.gather(*(gc.submit_batched(writer.insert_all, k)
                                     for k in range(1, 31)))
        assert got == list(range(1, 31))
        assert writer.calls == [30]  # submitted in one loop round: one group, one call
    finally:
        await gc.stop()
