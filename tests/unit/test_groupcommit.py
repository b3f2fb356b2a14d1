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
    await asyncio.to_thread(gc.start)
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
        await asyncio.to_thread(gc.stop)
