"""Retention: each channel keeps its messages ``retention.days`` days, and their content (body
and raw bytes) ``retention.content_days`` days; older ones are pruned once an hour.

A message that still has work (a pending or in-flight delivery) is never deleted, whatever its
age. Pruning goes in slices of ``limit`` messages, each its own store transaction, so intake is
never held behind one large delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from alertpipe.config.model import ChannelSettings
from alertpipe.errors import StoreError
from alertpipe.message import utcnow
from alertpipe.store.base import Store

log = logging.getLogger("alertpipe.retention")
INTERVAL = 3600.0  # seconds between two prune rounds
SLICE = 2_000


class Retention:
    def __init__(self, store: Store, channels: Mapping[str, ChannelSettings], *,
                 clock: Callable[[], datetime] = utcnow, limit: int = SLICE) -> None:
        self.store = store
        self.policies = {name: cs.retention for name, cs in channels.items()
                         if cs.retention.days is not None
                         or cs.retention.content_days is not None}
        self.clock = clock
        self.limit = limit
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.policies and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except StoreError as exc:
                log.warning("retention round failed; next round in an hour",
                            extra={"error": str(exc)})
            await asyncio.sleep(INTERVAL)

    async def run_once(self) -> dict[str, tuple[int, int]]:
        """One round over every channel with a policy: {channel: (deleted, stripped)}."""
        out: dict[str, tuple[int, int]] = {}
        now = self.clock()
        for channel, policy in self.policies.items():
            before = now - timedelta(days=policy.days) if policy.days is not None else None
            content = (now - timedelta(days=policy.content_days)
                       if policy.content_days is not None else None)
            epoch = datetime.min.replace(tzinfo=now.tzinfo)
            deleted = stripped = 0
            if before is not None:  # first delete what goes, then strip what stays
                while (n := (await self.store.prune(channel, before, None,
                                                    self.limit)).deleted):
                    deleted += n
                    if n < self.limit:
                        break
            if content is not None:
                while (n := (await self.store.prune(channel, epoch, content,
                                                    self.limit)).stripped):
                    stripped += n
                    if n < self.limit:
                        break
            out[channel] = (deleted, stripped)
            if deleted or stripped:
                log.info("retention", extra={"channel": channel, "deleted": deleted,
                                             "content_dropped": stripped})
        return out
