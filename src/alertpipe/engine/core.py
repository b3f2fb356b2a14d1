"""The engine: channels, their workers, the store and the shared HTTP client, started and
stopped together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from alertpipe.auth import Authenticator, ClientRateLimiter, too_many
from alertpipe.config.model import AppSettings
from alertpipe.engine.channel import Accepted, ChannelRuntime
from alertpipe.engine.circuit import CircuitBreaker
from alertpipe.engine.pacing import Pacers
from alertpipe.engine.worker import DestinationWorker
from alertpipe.errors import Backpressure, StoreError, UsageError
from alertpipe.message import Message
from alertpipe.store import MessageKey, Store, StoredMessage, open_store

log = logging.getLogger("alertpipe.engine")


class Engine:
    """Build with settings (and optionally a store and an HTTP client, for tests)."""

    def __init__(self, settings: AppSettings, *, store: Store | None = None,
                 base_dir: Path | None = None, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.store: Store = store or open_store(settings.engine.store, base_dir=base_dir)
        self.channels = {name: ChannelRuntime(name, cs, self.store)
                         for name, cs in settings.channels.items()}
        self.pacers = Pacers()
        self.workers: dict[tuple[str, str], DestinationWorker] = {}
        self._http = http
        self._own_http = http is None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._backlog: dict[str, tuple[int, float]] = {}
        self._limiters: dict[str, ClientRateLimiter] = {}
        self.auth = Authenticator(settings.engine.api_keys)
        self.started = False

    def check(self) -> None:
        """Check every destination's credentials and settings; raises CredentialsError."""
        for ch in self.channels.values():
            ch.check()

    async def start(self) -> None:
        self.check()
        await self.store.open()
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(15.0, connect=5.0),
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                headers={"User-Agent": "alertpipe/0.1"})
        es = self.settings.engine
        for ch in self.channels.values():
            for name, dest in ch.destinations.items():
                await dest.start(self._http)
                pacer = self.pacers.get(dest.rate_key(), dest.max_requests_per_minute)
                breaker = CircuitBreaker(f"{ch.name}/{name}",
                                         ch.settings.circuit.failure_threshold,
                                         ch.settings.circuit.reset_seconds)
                w = DestinationWorker(ch.name, dest, self.store, ch.policy, pacer,
                                      lease_seconds=es.lease_seconds,
                                      poll_interval=es.poll_interval_seconds,
                                      on_recorded=self._on_recorded, breaker=breaker)
                self.workers[(ch.name, name)] = w
                w.start()
        self.started = True
        if not self.auth.enabled:
            log.warning("no API keys configured: ingest and admin endpoints are open")
        log.info("engine started", extra={"channels": sorted(self.channels),
                                          "store": self.store.name})

    async def stop(self) -> None:
        grace = self.settings.engine.shutdown_grace_seconds
        await asyncio.gather(*(w.stop(grace) for w in self.workers.values()))
        for ch in self.channels.values():
            for dest in ch.destinations.values():
                await dest.close()
        if self._own_http and self._http is not None:
            await self._http.aclose()
        await self.store.close()
        self.started = False
        log.info("engine stopped")

    # -- intake -------------------------------------------------------------------------
    def channel(self, name: str) -> ChannelRuntime:
        try:
            return self.channels[name]
        except KeyError:
            raise UsageError(f"no channel named {name!r}") from None

    async def accept(self, channel: str, body: dict[str, Any], raw: bytes,
                     meta: Mapping[str, Any] | None = None, *,
                     waiter: asyncio.Event | None = None,
                     keys: Sequence[MessageKey] = ()) -> Accepted:
        """Validate, route and durably store one message, then wake its destinations' workers.

        With ``waiter``, the event is set each time one of the message's deliveries records an
        outcome (use :meth:`outcome` to see whether all are final)."""
        ch = self.channel(channel)
        registered: list[str] = []

        def register(message: Message) -> None:
            if waiter is not None:
                self._waiters.setdefault(message.id, set()).add(waiter)
                registered.append(message.id)

        def unregister() -> None:
            for mid in registered:
                self.forget_waiter(mid, waiter)  # type: ignore[arg-type]  # set when registered

        count, read_at = await self._check_backlog(ch)
        try:
            accepted = await ch.accept(body, raw, meta, before_commit=register, keys=keys)
        except BaseException:
            unregister()
            raise
        if accepted.conflict is not None:  # nothing new was stored: nothing will be delivered
            unregister()
        self._backlog[channel] = (count + accepted.deliveries, read_at)
        for dest in accepted.routes:
            w = self.workers.get((channel, dest))
            if w is not None:
                w.wake.set()
        return accepted

    async def _check_backlog(self, ch: ChannelRuntime) -> tuple[int, float]:
        """Refuse intake (503) once the channel holds ``max_pending`` undelivered rows. The count
        is read from the store at most every 2 s and advanced locally in between (it errs high)."""
        loop = asyncio.get_running_loop()
        count, read_at = self._backlog.get(ch.name, (0, -1.0))
        if loop.time() - read_at > 2.0:
            count, read_at = await self.store.backlog(ch.name), loop.time()
        if count >= ch.settings.max_pending:
            raise Backpressure(f"channel {ch.name!r} has {count} undelivered messages, its "
                               f"limit is {ch.settings.max_pending}; retry later",
                               retry_after=5.0)
        return count, read_at

    def gate(self, request: Request, channel: str, cfg: Any) -> Response | str:
        """API key and per-client rate limit for an ingest request: a 401/403/429 response, or
        the client's identity."""
        who = self.auth.check(request, "ingest", channel)
        if isinstance(who, Response):
            return who
        limit = getattr(cfg, "rate_limit", None)
        if limit is not None:
            limiter = self._limiters.get(channel)
            if limiter is None:
                limiter = self._limiters[channel] = ClientRateLimiter(limit.per_second,
                                                                      limit.burst)
            wait = limiter.take(who)
            if wait > 0:
                log.info("rate limited", extra={"channel": channel, "client": who})
                return too_many(wait)
        return who

    def forget_waiter(self, message_id: str, event: asyncio.Event) -> None:
        evs = self._waiters.get(message_id)
        if evs is not None:
            evs.discard(event)
            if not evs:
                del self._waiters[message_id]

    def _on_recorded(self, message_ids: Sequence[str]) -> None:
        for mid in message_ids:
            for ev in self._waiters.get(mid, ()):
                ev.set()

    async def outcome(self, message_id: str) -> tuple[bool, StoredMessage | None]:
        """(all deliveries final?, the stored message)."""
        stored = await self.store.get_message(message_id)
        if stored is None:
            return False, None
        return all(d.terminal for d in stored.deliveries), stored

    # -- health -------------------------------------------------------------------------
    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        store_ok, store_detail = True, "ok"
        try:
            await asyncio.wait_for(self.store.ping(), timeout=2.0)
        except (StoreError, TimeoutError) as exc:
            store_ok, store_detail = False, f"not writable: {exc}" if str(exc) else "timeout"
        workers = {f"{c}/{d}": ("running" if w.alive else "stopped")
                   for (c, d), w in self.workers.items()}
        circuits = {f"{c}/{d}": w.breaker.state for (c, d), w in self.workers.items()}
        ok = self.started and store_ok and all(v == "running" for v in workers.values())
        return ok, {"status": "ready" if ok else "not ready", "store": store_detail,
                    "workers": workers, "circuits": circuits}
