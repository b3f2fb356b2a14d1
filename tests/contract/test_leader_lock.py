"""The leader lock (``Store.leader_lock``): one holder per name, on every store; across store
objects, with the lock released when its session ends, on PostgreSQL."""

from __future__ import annotations

import pytest

from alertpipe.errors import StoreUnavailable
from alertpipe.store import Store
from alertpipe.store.postgres import PostgresStore
from pg_support import Schema, drop_schema, lock_holder, new_schema, pg_schema, pg_url, terminate

__all__ = ["pg_schema", "pg_url"]
LOCK = "sender:google_sheets:bot@example.iam.gserviceaccount.com"


async def test_one_owner_at_a_time(store: Store) -> None:
    assert await store.leader_lock(LOCK, "instance-a")
    assert await store.leader_lock(LOCK, "instance-a")  # asking again confirms it
    assert not await store.leader_lock(LOCK, "instance-b")
    assert await store.leader_lock("another lock", "instance-b")  # names are independent
    await store.leader_unlock(LOCK, "instance-b")  # not the holder: nothing happens
    assert not await store.leader_lock(LOCK, "instance-b")
    await store.leader_unlock(LOCK, "instance-a")
    assert await store.leader_lock(LOCK, "instance-b")
    assert not await store.leader_lock(LOCK, "instance-a")


async def _open(schema: Schema) -> PostgresStore:
    s = PostgresStore(schema.dsn)
    await s.open()
    return s


async def test_postgres_one_holder_among_store_objects(pg_schema: Schema) -> None:
    a, b = await _open(pg_schema), await _open(pg_schema)
    try:
        assert await a.leader_lock(LOCK, "a")
        assert not await b.leader_lock(LOCK, "b")
        assert lock_holder(pg_schema, LOCK) is not None
        await a.leader_unlock(LOCK, "a")
        assert lock_holder(pg_schema, LOCK) is None
        assert await b.leader_lock(LOCK, "b")
        assert not await a.leader_lock(LOCK, "a")
        await b.close()  # closing a store ends its lock session: the lock is free
        assert await a.leader_lock(LOCK, "a")
    finally:
        await a.close()
        await b.close()


async def test_postgres_lock_passes_on_when_the_holders_session_ends(pg_schema: Schema) -> None:
    """A killed instance's session ends on the server: the next instance to ask takes over,
    and the old holder learns it lost the lock instead of believing it still leads."""
    a, b = await _open(pg_schema), await _open(pg_schema)
    try:
        assert await a.leader_lock(LOCK, "a")
        assert not await b.leader_lock(LOCK, "b")
        pid = lock_holder(pg_schema, LOCK)
        assert pid is not None
        terminate(pg_schema, pid)
        assert await b.leader_lock(LOCK, "b")
        with pytest.raises(StoreUnavailable):
            await a.leader_lock(LOCK, "a")  # its session is gone, and the lock with it
        assert not await a.leader_lock(LOCK, "a")  # a new session; b holds the lock
        assert lock_holder(pg_schema, LOCK) not in (None, pid)
    finally:
        await a.close()
        await b.close()


async def test_postgres_schemas_do_not_contend(pg_schema: Schema, pg_url: str) -> None:
    other = new_schema(pg_url)
    a, b = await _open(pg_schema), await _open(other)
    try:
        assert await a.leader_lock(LOCK, "a")
        assert await b.leader_lock(LOCK, "b")  # same name, another deployment's schema
    finally:
        await a.close()
        await b.close()
        drop_schema(other)


async def test_postgres_lock_needs_an_open_store(pg_schema: Schema) -> None:
    s = PostgresStore(pg_schema.dsn)
    with pytest.raises(StoreUnavailable):
        await s.leader_lock(LOCK, "a")
