"""The engine: channels, their workers, the store and the shared HTTP client, started and
stopped together."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from starlette.responses import Response

from alertpipe.auth import Authenticator, ClientRateLimiter, too_many
from alertpipe.config.model import AppSettings
from alertpipe.engine.channel import Accepted, ChannelRuntime
from alertpipe.engine.circuit import CircuitBreaker
from alertpipe.engine.monitor import Monitor
from alertpipe.engine.pacing import Pacers
from alertpipe.engine.retention import Retention
from alertpipe.engine.worker import DestinationWorker
from alertpipe.errors import Backpressure, StoreError, UsageError
from alertpipe.intake_request import IntakeRequest
from alertpipe.logs import bind as bind_log_fields
from alertpipe.message import Message, utcnow
from alertpipe.metrics import EngineMetrics
from alertpipe.store import MessageKey, Store, StoredMessage, open_store

log = logging.getLogger("alertpipe.engine")
INSTANCE_ENV = "ALERTPIPE_INSTANCE_ID"
# On a store shared by instances, another instance may record the outcome a client here waits
# for (Prefer: wait); nothing tells this one, so its waiters re-read the store this often.
WAITER_TICK = 0.2


def instance_identity(configured: str | None = None) -> str:
    """This engine's name in a cluster: ``engine.instance_id``, else ``ALERTPIPE_INSTANCE_ID``,
    else ``<hostname>-<pid>`` (unique among live processes sharing a store)."""
    return configured or os.environ.get(INSTANCE_ENV) or f"{socket.gethostname()}-{os.getpid()}"


BACKLOG_READ_EVERY = 2.0  # seconds between two reads of a channel's backlog, at least
BACKLOG_READ_SHARE = 0.02  # of the time, at most, spent counting it (a count is O(backlog))


def backlog_read_every(took: float) -> float:
    """Seconds until the next backlog read, after one that took ``took`` seconds: counting a
    million pending rows takes ~50 ms, which every 2 s would be 2.5 % of a core."""
    return max(BACKLOG_READ_EVERY, took / BACKLOG_READ_SHARE)


class _Backlog:
    """A channel's undelivered rows as intake sees them: the store's count at the last read,
    plus the rows accepted since that read started (some of which it may have counted: on the
    safe side)."""

    __slots__ = ("added", "every", "read", "read_at", "refresh")

    def __init__(self, read: int = 0, read_at: float = float("-inf")) -> None:
        self.read = read
        self.added = 0
        self.read_at = read_at
        self.every = BACKLOG_READ_EVERY
        self.refresh: asyncio.Task[None] | None = None

    @property
    def count(self) -> int:
        return self.read + self.added


class Engine:
    """Build with settings (and optionally a store and an HTTP client, for tests)."""

    def __init__(self, settings: AppSettings, *, store: Store | None = None,
                 base_dir: Path | None = None, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.instance_id = instance_identity(settings.engine.instance_id)
        self.store: Store = store or open_store(settings.engine.store, base_dir=base_dir)
        self.channels = {name: ChannelRuntime(name, cs, self.store)
                         for name, cs in settings.channels.items()}
        self.retention = Retention(self.store, settings.channels)
        self.pacers = Pacers()
        self.workers: dict[tuple[str, str], DestinationWorker] = {}
        self._http = http
        self._own_http = http is None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._backlog: dict[str, _Backlog] = {}
        self._limiters: dict[str, ClientRateLimiter] = {}
        self.auth = Authenticator(settings.engine.api_keys)
        self.started = False
        self._stopped: set[str] = set()  # channels an operator stopped (not persisted)
        self._ticker: asyncio.Task[None] | None = None  # see WAITER_TICK
        self.metrics = EngineMetrics(self.channels, [(c, d) for c, ch in self.channels.items()
                                                     for d in ch.destinations],
                                     instance=self.instance_id)
        self.metrics.circuits = lambda: [(c, d, w.breaker.state)
                                         for (c, d), w in self.workers.items()]
        alerts = settings.alerts
        self.monitor: Monitor | None = None  # the notification rules (alerts:), if enabled
        if alerts is not None and alerts.enabled and alerts.rules:
            self.monitor = Monitor(alerts, self.store, {c: list(ch.destinations)
                                                        for c, ch in self.channels.items()},
                                   instance=self.instance_id)
            self.metrics.alerts = self.monitor.firing

    def check(self) -> None:
        """Check every destination's credentials and settings; raises CredentialsError."""
        for ch in self.channels.values():
            ch.check()
        if self.monitor is not None:
            self.monitor.check()

    async def start(self) -> None:
        self.check()
        await self.store.open()
        now = asyncio.get_running_loop().time()
        for name in self.channels:  # intake's backpressure starts from the stored backlog
            self._backlog[name] = _Backlog(await self.store.backlog(name), now)
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
                                      on_recorded=self._on_recorded, breaker=breaker,
                                      instance=self.instance_id,
                                      metrics=self.metrics.delivery(ch.name, name))
                self.workers[(ch.name, name)] = w
                w.paused = ch.name in self._stopped
                w.start()
        await self._subscribe()
        self.retention.start()
        if self.monitor is not None:
            await self.monitor.start(self._http)
        bind_log_fields(instance=self.instance_id)
        self.started = True
        if not self.auth.enabled:
            log.warning("no API keys configured: ingest and admin endpoints are open")
        log.info("engine started", extra={"channels": sorted(self.channels),
                                          "store": self.store.name,
                                          "instance": self.instance_id})

    async def _subscribe(self) -> None:
        """Wake workers on work made due by any instance, where the store can say so
        (PostgreSQL's LISTEN/NOTIFY); without it, workers find such work on their poll."""
        subscribe = getattr(self.store, "subscribe", None)
        if subscribe is None:
            return
        self._ticker = asyncio.create_task(self._tick_waiters(), name="engine:waiters")
        try:
            await subscribe(self._on_work)
        except StoreError as exc:
            log.warning("work notifications unavailable; workers poll",
                        extra={"error": str(exc),
                               "poll_seconds": self.settings.engine.poll_interval_seconds})

    async def _tick_waiters(self) -> None:
        while True:
            await asyncio.sleep(WAITER_TICK)
            for events in list(self._waiters.values()):
                for ev in events:
                    ev.set()

    def _on_work(self, channel: str, destination: str) -> None:
        """A store notification: deliveries of (channel, destination) became due."""
        w = self.workers.get((channel, destination))
        if w is not None:
            w.wake.set()

    async def stop(self) -> None:
        if self.monitor is not None:
            await self.monitor.stop()
        await self.retention.stop()
        grace = self.settings.engine.shutdown_grace_seconds
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        await asyncio.gather(*(w.stop(grace) for w in self.workers.values()))
        for lock in sorted({w.lock_name for w in self.workers.values() if w.lock_name}):
            try:  # hand exclusive destinations over to another instance at once
                await self.store.leader_unlock(lock, self.instance_id)
            except StoreError as exc:
                log.warning("leader lock not released", extra={"lock": lock, "error": str(exc)})
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
        self._refuse_if_stopped(channel)
        ch = self.channel(channel)
        registered: list[str] = []  # the message id, once known, when a waiter is watching
        register = None
        if waiter is not None:
            def register(message: Message) -> None:
                self.watch(message.id, waiter)
                registered.append(message.id)

        backlog = self._check_backlog(ch)
        stored = False
        try:
            accepted = await ch.accept(body, raw, meta, before_commit=register, keys=keys)
            stored = accepted.conflict is None  # a duplicate: nothing will be delivered
        finally:
            if not stored:
                for mid in registered:
                    self.forget_waiter(mid, waiter)  # type: ignore[arg-type]  # set if registered
        backlog.added += accepted.deliveries
        for dest in accepted.routes:
            w = self.workers.get((channel, dest))
            if w is not None:
                w.wake.set()
        return accepted

    def _check_backlog(self, ch: ChannelRuntime) -> _Backlog:
        """Refuse intake (503) once the channel holds ``max_pending`` undelivered rows.

        The count is read from the store at start and then at most every 2 s (less often when
        the count itself takes long: backlog_read_every), in the background (one read at a time,
        never on the request's path), and advanced locally in between."""
        backlog = self._backlog.get(ch.name)
        if backlog is None:
            backlog = self._backlog[ch.name] = _Backlog()
        loop = asyncio.get_running_loop()
        if backlog.refresh is None and loop.time() - backlog.read_at > backlog.every:
            backlog.refresh = loop.create_task(self._read_backlog(ch.name, backlog))
        count = backlog.count
        if count >= ch.settings.max_pending:
            raise Backpressure(f"channel {ch.name!r} has {count} undelivered messages, "
                               f"its limit is {ch.settings.max_pending}; retry later",
                               retry_after=5.0)
        return backlog

    async def _read_backlog(self, channel: str, backlog: _Backlog) -> None:
        loop = asyncio.get_running_loop()
        started, before = loop.time(), backlog.added
        try:
            backlog.read = await self.store.backlog(channel)
            backlog.added -= before  # those the read has counted; the rest came in meanwhile
        except StoreError as exc:
            log.warning("backlog not read", extra={"channel": channel, "error": str(exc)})
        finally:
            backlog.read_at = loop.time()
            backlog.every = backlog_read_every(backlog.read_at - started)
            backlog.refresh = None

    def gate(self, request: IntakeRequest, channel: str, cfg: Any) -> Response | str:
        """API key and per-client rate limit for an ingest request: a 401/403/429 response, or
        the client's identity."""
        who = self.auth.check(request, "ingest", channel)
        if isinstance(who, Response):
            self._count_refusal(channel, "unauthorized" if who.status_code == 401
                                else "forbidden")
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
                self._count_refusal(channel, "rate_limited")
                return too_many(wait)
        return who

    def _count_refusal(self, channel: str, reason: str) -> None:
        counts = self.metrics.intake.get(channel)
        if counts is not None:
            counts.count("rejected", reason)

    def watch(self, message_id: str, event: asyncio.Event) -> None:
        """Set ``event`` each time a delivery of the message records an outcome, until
        :meth:`forget_waiter` (for waiting on a resend, as :meth:`accept` does on intake)."""
        self._waiters.setdefault(message_id, set()).add(event)

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

    async def wait_final(self, message_id: str, timeout: float,
                         event: asyncio.Event | None = None
                         ) -> tuple[bool, StoredMessage | None]:
        """Wait at most ``timeout`` s until every delivery of the message is final, woken by
        the engine each time one records an outcome; return (final?, the message as last read).
        ``event`` is one already registered (as :meth:`accept` does with ``waiter``); without
        it one is registered and forgotten here."""
        ev = event if event is not None else asyncio.Event()
        if event is None:
            self.watch(message_id, ev)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                ev.clear()  # before the read: an outcome recorded after it wakes the wait
                done, stored = await self.outcome(message_id)
                remaining = deadline - loop.time()
                if done or remaining <= 0:
                    return done, stored
                try:
                    await asyncio.wait_for(ev.wait(), timeout=remaining)
                except TimeoutError:
                    pass
        finally:
            if event is None:
                self.forget_waiter(message_id, ev)

    async def outcome(self, message_id: str) -> tuple[bool, StoredMessage | None]:
        """(all deliveries final?, the stored message)."""
        stored = await self.store.get_message(message_id)
        if stored is None:
            return False, None
        return all(d.terminal for d in stored.deliveries), stored

    # -- operator control (the admin API and the dashboard) -----------------------------
    def stop_channel(self, name: str) -> None:
        """Refuse the channel's intake (503) and stop claiming its deliveries (sends under way
        finish) until :meth:`start_channel`. Held in this process only: a restart runs it."""
        self.channel(name)
        self._stopped.add(name)
        for w in self._workers_of(name):
            w.paused = True
        log.warning("channel stopped", extra={"channel": name})

    def start_channel(self, name: str) -> None:
        self.channel(name)
        self._stopped.discard(name)
        for w in self._workers_of(name):
            w.paused = False
            w.wake.set()
        log.info("channel started", extra={"channel": name})

    def _workers_of(self, name: str) -> list[DestinationWorker]:
        return [w for (c, _), w in self.workers.items() if c == name]

    def _refuse_if_stopped(self, channel: str) -> None:
        if channel in self._stopped:
            raise Backpressure(f"channel {channel!r} is stopped by an operator and accepts "
                               "nothing until it is started again; retry later",
                               retry_after=30.0)

    async def channel_state(self, name: str) -> str:
        """``stopped`` (by an operator), ``erroring`` (a destination's circuit is not closed,
        or at least half of the attempts of the last 5 minutes failed) or ``running``."""
        self.channel(name)
        if name in self._stopped:
            return "stopped"
        if any(w.breaker.state != "closed" for w in self._workers_of(name)):
            return "erroring"
        recent = await self.store.rates(name, utcnow() - timedelta(minutes=5))
        failed = sum(p.failed for p in recent)
        return "erroring" if failed and failed >= sum(p.delivered for p in recent) else "running"

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
                    "instance": self.instance_id, "workers": workers, "circuits": circuits}
