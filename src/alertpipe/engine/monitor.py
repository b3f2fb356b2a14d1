"""Notification rules on the engine itself: the ``alerts:`` section of the config.

Every ``alerts.interval_seconds`` the monitor reads the store (``rates()``, ``stats()``), so it
sees the traffic of every instance sharing the store, and evaluates each rule:

- ``error_rate``: failed attempts / all attempts of the channel in the last ``window_minutes``.
  It opens an incident above ``threshold`` with at least ``min_attempts`` attempts; the incident
  clears once the window's rate is at or under the threshold (or the window holds no attempt),
  so a circuit that lets only a probe through now and then keeps it open.
- ``backlog_age``: the oldest undelivered delivery of the channel (of ``destination``, when set)
  is older than ``minutes``; it clears when it no longer is.
- ``silence``: no message received on the channel for ``minutes`` (counted from the monitor's
  start at the earliest, so a restart does not page); it clears with the next message.

An incident sends ONE alert ("FIRING") to every target of its ``notify`` destinations, again at
most every ``repeat_minutes`` while it stays open (default: never), and "RESOLVED" when it
clears, to the targets that got the alert. Alerts go straight through the destination's
``send`` (they are about the pipeline failing, so they never queue behind it); a failed send is
logged and tried again at the next evaluation (after an ambiguous failure Twilio looks the text
up first), a permanent failure is logged and dropped.

Several instances: each evaluation first takes the store's ``leader_lock("alertpipe.alerts")``;
only its holder evaluates and sends. An instance that loses the lock forgets its incidents; the
next holder starts afresh, so a failover during an incident sends its alert once more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from alertpipe.config.loader import config_error_from
from alertpipe.config.model import AlertRule, AlertSettings
from alertpipe.destinations import REGISTRY, Delivery, Destination, load_builtins
from alertpipe.errors import ConfigError, DeliveryError, PermanentError, StoreError
from alertpipe.message import Message, new_message_id, utcnow
from alertpipe.store.base import QueueStats, Store

log = logging.getLogger("alertpipe.alerts")

LOCK_NAME = "alertpipe.alerts"
ALERT_CHANNEL = "alerts"  # the channel name alert messages carry ({channel} in a template)
SMS_TEMPLATE = "{text}"  # a twilio_sms alert destination's default template
SEND_TIMEOUT = 30.0

Sink = tuple[str, str | None]  # (alert destination, target such as a phone number)


@dataclass(frozen=True, slots=True)
class Reading:
    """What a rule sees now: is it firing, and a one-line summary with the measured value."""

    firing: bool
    summary: str
    value: float | None = None


@dataclass(slots=True)
class Incident:
    opened_at: datetime
    last_alert_at: datetime
    notified: set[Sink] = field(default_factory=set)


@dataclass(slots=True)
class _Unsent:
    message: Message
    status: Literal["firing", "resolved"]
    incident: Incident
    attempts: int = 0
    ambiguous: bool = False


@dataclass(slots=True)
class _RuleState:
    rule: AlertRule
    incident: Incident | None = None
    unsent: dict[Sink, _Unsent] = field(default_factory=dict)


def build_alert_destination(name: str, spec: Mapping[str, Any]) -> Destination:
    """An ``alerts.destinations`` entry, validated by its destination's own config spec."""
    load_builtins()
    spec = dict(spec)
    if spec.get("type") == "twilio_sms":
        spec.setdefault("template", SMS_TEMPLATE)
    cls = REGISTRY[str(spec.get("type"))]
    try:
        return cls(name, cls.Config.model_validate(spec))
    except ValidationError as exc:
        raise config_error_from(exc, prefix=("alerts", "destinations", name)) from None
    except ConfigError as exc:
        raise exc.located(key_prefix=f"alerts.destinations.{name}") from None


class Monitor:
    """Evaluates the rules of ``settings`` against ``store``; see the module docstring.

    ``channels`` maps each channel to its destination names (to check the rules against).
    ``clock`` gives the time rules are evaluated at (tests move it)."""

    def __init__(self, settings: AlertSettings, store: Store,
                 channels: Mapping[str, Collection[str]], *, instance: str,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.store = store
        self.instance = instance
        self.clock = clock
        for i, rule in enumerate(settings.rules):
            if rule.channel not in channels:
                raise ConfigError(f"rule {rule.name!r}: no channel named {rule.channel!r}",
                                  key=f"alerts.rules.{i}.channel")
            if rule.destination is not None and rule.destination not in channels[rule.channel]:
                raise ConfigError(f"rule {rule.name!r}: channel {rule.channel!r} has no "
                                  f"destination {rule.destination!r}",
                                  key=f"alerts.rules.{i}.destination")
        used = {n for r in settings.rules for n in r.notify}
        self.destinations = {name: build_alert_destination(name, spec)
                             for name, spec in settings.destinations.items() if name in used}
        self.states = [_RuleState(rule) for rule in settings.rules]
        self.started_at: datetime | None = None
        self.leading = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def check(self) -> None:
        for name, dest in self.destinations.items():
            try:
                dest.check()
            except ConfigError as exc:
                raise exc.located(key_prefix=f"alerts.destinations.{name}") from None

    async def start(self, http: httpx.AsyncClient) -> None:
        for dest in self.destinations.values():
            await dest.start(http)
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="alerts:monitor")

    async def stop(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            try:  # an evaluation under way may finish its sends, briefly
                await asyncio.wait_for(asyncio.shield(task), timeout=5.0)
            except TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.leading:
            try:
                await self.store.leader_unlock(LOCK_NAME, self.instance)
            except StoreError as exc:
                log.warning("alert leader lock not released", extra={"error": str(exc)})
            self.leading = False
        for dest in self.destinations.values():
            await dest.close()

    async def _run(self) -> None:
        interval = self.settings.interval_seconds
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=interval)
                return
            except TimeoutError:
                pass
            try:
                await self.evaluate()
            except Exception:  # a bug here must not end the monitor
                log.exception("alert evaluation failed")

    def firing(self) -> list[tuple[str, bool]]:
        """``(rule, incident open?)`` per rule, for ``/metrics``."""
        return [(s.rule.name, s.incident is not None) for s in self.states]

    # -- evaluation ------------------------------------------------------------------------
    async def evaluate(self) -> None:
        """Evaluate every rule once, open or close incidents, and send what is due."""
        now = self.clock()
        if self.started_at is None:
            self.started_at = now
        if not await self._lead():
            return
        stats: list[QueueStats] | None = None
        for st in self.states:
            rule = st.rule
            try:
                if rule.kind == "backlog_age" and stats is None:
                    stats = await self.store.stats()
                reading = await self._read(rule, now, stats or [])
            except StoreError as exc:
                log.warning("alert rule not evaluated", extra={"rule": rule.name,
                                                               "error": str(exc)})
                continue
            self._advance(st, reading, now)
        await self._flush()

    async def _lead(self) -> bool:
        try:
            held = await self.store.leader_lock(LOCK_NAME, self.instance)
        except StoreError as exc:
            log.warning("alert leader lock not read", extra={"error": str(exc)})
            held = False
        if held != self.leading:
            log.info("alerting here" if held else "alerting on another instance",
                     extra={"lock": LOCK_NAME})
            if not held:
                self.states = [_RuleState(s.rule) for s in self.states]
            self.leading = held
        return held

    async def _read(self, rule: AlertRule, now: datetime,
                    stats: list[QueueStats]) -> Reading:
        if rule.kind == "error_rate":
            return await self._error_rate(rule, now)
        if rule.kind == "backlog_age":
            return _backlog_age(rule, now, stats)
        return await self._silence(rule, now)

    async def _error_rate(self, rule: AlertRule, now: datetime) -> Reading:
        assert rule.threshold is not None
        points = await self.store.rates(rule.channel,
                                        now - timedelta(minutes=rule.window_minutes))
        failed = sum(p.failed for p in points)
        attempts = failed + sum(p.delivered for p in points)
        rate = failed / attempts if attempts else 0.0
        open_ = self._state(rule).incident is not None
        firing = (rate > rule.threshold and (open_ or attempts >= rule.min_attempts))
        return Reading(firing, f"error rate {rate:.0%} on channel {rule.channel}: {failed} of "
                               f"{attempts} attempts failed in the last "
                               f"{rule.window_minutes:g} min (threshold "
                               f"{rule.threshold:.0%})", rate)

    async def _silence(self, rule: AlertRule, now: datetime) -> Reading:
        assert rule.minutes is not None and self.started_at is not None
        window = timedelta(minutes=rule.minutes)
        points = await self.store.rates(rule.channel, now - window)
        received = sum(p.received for p in points)
        firing = received == 0 and now - self.started_at >= window
        return Reading(firing, f"no message received on channel {rule.channel} for "
                               f"{rule.minutes:g} min" if firing else
                               f"{received} message(s) received on channel {rule.channel} in "
                               f"the last {rule.minutes:g} min", float(received))

    def _state(self, rule: AlertRule) -> _RuleState:
        return next(s for s in self.states if s.rule is rule)

    # -- incidents -------------------------------------------------------------------------
    def _advance(self, st: _RuleState, reading: Reading, now: datetime) -> None:
        rule, incident = st.rule, st.incident
        if reading.firing and incident is None:
            st.incident = Incident(opened_at=now, last_alert_at=now)
            log.warning("alert firing", extra={"rule": rule.name, "summary": reading.summary})
            self._queue(st, st.incident, "firing", reading, now, repeat=False)
        elif reading.firing and incident is not None:
            repeat = rule.repeat_minutes or self.settings.repeat_minutes
            if repeat and now - incident.last_alert_at >= timedelta(minutes=repeat):
                incident.last_alert_at = now
                self._queue(st, incident, "firing", reading, now, repeat=True)
        elif incident is not None:
            st.incident = None
            log.info("alert resolved", extra={"rule": rule.name, "summary": reading.summary})
            for sink in [s for s in st.unsent if s not in incident.notified]:
                del st.unsent[sink]  # never told it fired: not told it resolved
            self._queue(st, incident, "resolved", reading, now, repeat=False)

    def _queue(self, st: _RuleState, incident: Incident, status: Literal["firing", "resolved"],
               reading: Reading, now: datetime, *, repeat: bool) -> None:
        rule = st.rule
        word = "RESOLVED" if status == "resolved" else "STILL FIRING" if repeat else "FIRING"
        lasted = ""
        if status == "resolved":
            lasted = f" after {_minutes(now - incident.opened_at)}"
        elif repeat:
            lasted = f" for {_minutes(now - incident.opened_at)}"
        body = {
            "text": f"[alertpipe] {word} {rule.name}{lasted}: {reading.summary}",
            "status": status, "repeat": repeat, "rule": rule.name, "kind": rule.kind,
            "channel": rule.channel, "destination": rule.destination,
            "summary": reading.summary, "value": reading.value,
            "threshold": rule.threshold if rule.kind == "error_rate" else rule.minutes,
            "opened_at": incident.opened_at.isoformat(),
            "resolved_at": now.isoformat() if status == "resolved" else None,
            "instance": self.instance,
        }
        message = Message(id=new_message_id(), channel=ALERT_CHANNEL, received_at=now,
                          body=body)
        for name in rule.notify:
            dest = self.destinations[name]
            for target in dest.targets(message):
                sink = (name, target)
                if status == "resolved" and sink not in incident.notified:
                    continue
                st.unsent[sink] = _Unsent(message, status, incident)

    async def _flush(self) -> None:
        for st in self.states:
            for sink, item in list(st.unsent.items()):
                name, target = sink
                extra = {"rule": st.rule.name, "destination": name, "status": item.status,
                         "message_id": item.message.id}
                delivery = Delivery(id=0, message=item.message, destination=name,
                                    target=target, attempts=item.attempts,
                                    ambiguous=item.ambiguous)
                try:
                    await asyncio.wait_for(self.destinations[name].send(delivery),
                                           timeout=SEND_TIMEOUT)
                except (DeliveryError, TimeoutError) as exc:
                    item.attempts += 1
                    item.ambiguous = item.ambiguous or isinstance(exc, TimeoutError) or bool(
                        getattr(exc, "ambiguous", False))
                    if isinstance(exc, PermanentError):
                        log.error("alert not sent; giving up",
                                  extra={**extra, "error": str(exc)})
                        del st.unsent[sink]
                    else:
                        log.warning("alert not sent; trying again at the next evaluation",
                                    extra={**extra, "error": str(exc) or "timeout",
                                           "attempt": item.attempts})
                    continue
                except Exception:  # a bug in a destination: logged, tried again next time
                    item.attempts += 1
                    log.exception("alert not sent", extra=extra)
                    continue
                del st.unsent[sink]
                if item.status == "firing":
                    item.incident.notified.add(sink)
                log.info("alert sent", extra=extra)


def _backlog_age(rule: AlertRule, now: datetime, stats: list[QueueStats]) -> Reading:
    assert rule.minutes is not None
    rows = [s for s in stats if s.channel == rule.channel
            and (rule.destination is None or s.destination == rule.destination)]
    oldest = min((s.oldest_pending_at for s in rows if s.oldest_pending_at is not None),
                 default=None)
    age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
    waiting = sum(s.pending + s.in_flight for s in rows)
    where = rule.channel + (f"/{rule.destination}" if rule.destination else "")
    return Reading(age > rule.minutes * 60,
                   f"oldest undelivered message on {where} is {_minutes(timedelta(seconds=age))}"
                   f" old ({waiting} waiting; limit {rule.minutes:g} min)", age)


def _minutes(span: timedelta) -> str:
    minutes = span.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


__all__ = ["LOCK_NAME", "Monitor", "Reading", "build_alert_destination"]
