"""Cluster-wide leader locks of the PostgreSQL store: session advisory locks on a connection of
their own.

``pg_try_advisory_lock`` never waits: it takes the lock or says that another session has it. A
session-level advisory lock lasts until it is unlocked or its session ends, so when an instance
dies (SIGKILL, a lost host) the server ends its session and the lock is free for the next
instance that asks. To notice a dead peer without waiting for the operating system's TCP
timeouts (hours), the lock session turns on TCP keepalives on both sides: a silent client is
dropped after about 11 s.

Locks are keyed on the current schema and the lock name, so deployments (and tests) in separate
schemas of one database never contend. Within this process one owner holds a name at a time
(owners are engine instances; several workers of one instance may share a name).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg

from alertpipe.errors import StoreUnavailable
from alertpipe.store import postgres_sql as q

log = logging.getLogger("alertpipe.store")

_KEY = ("hashtext('alertpipe.leader'), "
        "hashtext(coalesce(current_schema(), '') || '/' || %s)")
TRY_LOCK = f"SELECT pg_try_advisory_lock({_KEY})"
UNLOCK = f"SELECT pg_advisory_unlock({_KEY})"
# The server drops a client that stops answering keepalive probes after 5 + 3 × 2 = 11 s.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
              "keepalives_count": 3}
SERVER_KEEPALIVES = ("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; "
                     "SET tcp_keepalives_count = 3")


class LeaderLocks:
    """The advisory locks this store holds, on one dedicated connection (opened on first use).

    ``connect`` opens an autocommit connection (raising ``StoreUnavailable``); ``unavailable``
    turns a database error into the store's ``StoreUnavailable`` (which keeps secrets out)."""

    def __init__(self, connect: Callable[[], Awaitable[q.Conn]],
                 unavailable: Callable[[str, BaseException], StoreUnavailable]) -> None:
        self._connect = connect
        self._unavailable = unavailable
        self._conn: q.Conn | None = None
        self._held: dict[str, str] = {}  # lock name -> owner
        self._mutex = asyncio.Lock()

    @property
    def held(self) -> dict[str, str]:
        """Lock name -> owner, for the locks this store believes it holds."""
        return dict(self._held)

    async def take(self, name: str, owner: str) -> bool:
        async with self._mutex:
            holder = self._held.get(name)
            if holder is not None and holder != owner:
                return False
            if self._conn is None or self._conn.closed:
                await self._forget()
                self._conn = await self._connect()
                try:
                    await self._conn.execute(SERVER_KEEPALIVES)
                except psycopg.Error as exc:
                    raise await self._lost("cannot set up the leader lock session", exc) from exc
                holder = None
            try:
                if holder == owner:  # the session is alive, so its lock is still held
                    await self._conn.execute("SELECT 1")
                    return True
                cur = await self._conn.execute(TRY_LOCK, (name,))
                row = await cur.fetchone()
            except psycopg.Error as exc:
                raise await self._lost("leader lock check failed", exc) from exc
            if row is not None and row[0]:
                self._held[name] = owner
                return True
            return False

    async def give_up(self, name: str, owner: str) -> None:
        async with self._mutex:
            if self._held.get(name) != owner:
                return
            del self._held[name]
            if self._conn is None or self._conn.closed:
                return
            try:
                await self._conn.execute(UNLOCK, (name,))
            except psycopg.Error as exc:  # the session is gone, and every lock with it
                log.warning("leader lock session lost while unlocking: %s",
                            self._unavailable("unlock", exc))
                await self._forget()

    async def close(self) -> None:
        async with self._mutex:
            await self._forget()

    async def _lost(self, what: str, exc: BaseException) -> StoreUnavailable:
        if self._held:
            log.warning("leader locks lost with their session: %s",
                        ", ".join(sorted(self._held)))
        await self._forget()
        return self._unavailable(what, exc)

    async def _forget(self) -> None:
        """Release every lock, close the session and hold nothing. The server would release
        the locks when the session ends anyway, but only once it has noticed; unlocking first
        makes them free the moment this returns."""
        held, self._held = self._held, {}
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        try:
            if held and not conn.broken:
                await conn.execute("SELECT pg_advisory_unlock_all()")
        except psycopg.Error:
            pass
        finally:
            await conn.close()


__all__ = ["KEEPALIVES", "LeaderLocks"]
