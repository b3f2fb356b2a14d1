"""The PostgreSQL store's work notifications: LISTEN on a dedicated connection, reconnecting.

Each notification's payload is ``["<channel>", "<destination>"]`` (JSON, so that names holding
any character stay unambiguous). Notifications sent while the connection is down are lost, so
after every reconnect the listener reports each destination that has work due.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import psycopg

from alertpipe.errors import StoreUnavailable
from alertpipe.store import postgres_sql as q

log = logging.getLogger("alertpipe.store")

BACKOFF = (0.05, 5.0)  # the first and the longest pause before a reconnect, in seconds


class Listener:
    """Calls ``callback(channel, destination)`` for every work notification.

    ``connect`` opens a connection that already LISTENs (raising ``StoreUnavailable`` when it
    cannot); ``describe_error`` renders a database error for the log without secrets.
    """

    def __init__(self, connect: Callable[[], Awaitable[q.Conn]],
                 callback: Callable[[str, str], None],
                 describe_error: Callable[[BaseException], str]) -> None:
        self._connect = connect
        self._callback = callback
        self._describe = describe_error
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen now (or raise ``StoreUnavailable``), then go on in a background task."""
        conn = await self._connect()
        self._task = asyncio.create_task(self._run(conn), name="alertpipe-postgres-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _dispatch(self, channel: str, destination: str) -> None:
        try:
            self._callback(channel, destination)
        except Exception:
            log.exception("work notification callback failed for %s/%s", channel, destination)

    async def _run(self, conn: q.Conn) -> None:
        try:
            while True:
                try:
                    async for note in conn.notifies():
                        try:
                            channel, destination = json.loads(note.payload)
                        except (ValueError, TypeError):
                            log.debug("ignoring notification %r", note.payload)
                            continue
                        self._dispatch(str(channel), str(destination))
                except psycopg.Error as exc:
                    log.warning("work notification listener lost its connection: %s",
                                self._describe(exc))
                await conn.close()
                conn = await self._reconnect()
                try:  # catch up on what became due while nobody listened
                    rows = await (await conn.execute(q.DUE_DESTINATIONS)).fetchall()
                except psycopg.Error:
                    continue  # the connection is gone again; notifies() will say so
                for channel, destination in rows:
                    self._dispatch(channel, destination)
        finally:
            await conn.close()

    async def _reconnect(self) -> q.Conn:
        delay = BACKOFF[0]
        while True:
            await asyncio.sleep(delay)
            try:
                return await self._connect()
            except StoreUnavailable as exc:
                log.warning("work notification listener: %s; next try in %.2gs", exc,
                            min(delay * 2, BACKOFF[1]))
            delay = min(delay * 2, BACKOFF[1])


__all__ = ["BACKOFF", "Listener"]
