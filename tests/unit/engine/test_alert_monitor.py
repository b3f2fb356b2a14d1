"""Notification rules: each kind opens an incident, sends ONE alert (through the emulated Twilio
or a webhook receiver) and "resolved" when it clears. Time is an injected clock and each
evaluation is a direct call of ``Monitor.evaluate`` (the monitor's own loop is set to an hour)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from engine_support import Recorder, settings, settle
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from alertpipe.config.model import AlertSettings, AppSettings
from alertpipe.emulators import EmulatorSettings, EmulatorState
from alertpipe.emulators import create_app as emulator_app
from alertpipe.engine import Engine
from alertpipe.engine.monitor import LOCK_NAME, Monitor
from alertpipe.errors import ConfigError, RetryableError
from alertpipe.message import utcnow
from alertpipe.sources.signed_webhook import v1_signatures, verify
from alertpipe.store import MemoryStore

SID = "AC" + "5" * 32
TOKEN = "alert-token-0123456789abcdef"
FROM = "+15017122661"
OPS = "+15557654321"
HOOK_SECRET = "hook-secret-0123456789"
BASE = "http://emulator"


@dataclass
class Clock:
    now: datetime = field(default_factory=utcnow)

    def __call__(self) -> datetime:
        return self.now

    def at(self, **delta: float) -> None:
        """Real time now, moved by ``delta`` (the store stamps rows with real time)."""
        self.now = utcnow() + timedelta(**delta)


@dataclass
class Hooks:
    """The webhook receiver: what it got, and how many requests it should refuse first."""

    got: list[tuple[dict[str, Any], dict[str, str], bytes]] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)  # statuses to answer before succeeding

    def bodies(self) -> list[dict[str, Any]]:
        return [b for b, h, _ in self.got if h.get("_status") == "200"]


@dataclass
class World:
    engine: Engine
    monitor: Monitor
    clock: Clock
    twilio: EmulatorState
    hooks: Hooks

    def sms(self) -> list[str]:
        return [m["Body"] for m in self.twilio.sms_log]

    def sheet(self) -> Recorder:
        d = self.engine.channels["orders"].destinations["sheet"]
        assert isinstance(d, Recorder)
        return d


def alerts(*rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"interval_seconds": 3600, **extra, "destinations": {
        "ops_sms": {"type": "twilio_sms", "account_sid": SID, "auth_token": TOKEN,
                    "from_number": FROM, "to": OPS, "api_base": BASE},
        "ops_hook": {"type": "webhook", "url": f"{BASE}/hooks/alerts", "secret": HOOK_SECRET}},
        "rules": list(rules)}


def receiver_app(hooks: Hooks, emulator: Starlette) -> Starlette:
    async def hook(request: Request) -> Response:
        raw = await request.body()
        headers = dict(request.headers)
        status = hooks.fail.pop(0) if hooks.fail else 200
        headers["_status"] = str(status)
        hooks.got.append((await request.json(), headers, raw))
        return JSONResponse({"ok": status == 200}, status_code=status)

    return Starlette(routes=[Route("/hooks/alerts", hook, methods=["POST"]),
                             Mount("/", app=emulator)])



async def make_world(*rules: dict[str, Any], **extra: Any) -> tuple[World, httpx.AsyncClient]:
    hooks = Hooks()
    emulator = emulator_app(EmulatorSettings(twilio_account_sid=SID, twilio_auth_token=TOKEN,
                                             twilio_from_numbers=[FROM]))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver_app(hooks, emulator)),
                             base_url=BASE)
    cfg = settings().model_dump()
    cfg["alerts"] = alerts(*rules, **extra)
    eng = Engine(AppSettings.model_validate(cfg), store=MemoryStore(), http=http)
    assert eng.monitor is not None
    clock = Clock()
    eng.monitor.clock = clock
    await eng.start()
    return World(eng, eng.monitor, clock, emulator.state.emulator, hooks), http


@pytest.fixture
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    w, http = await make_world(*request.param)
    try:
        yield w
    finally:
        hold = w.sheet().hold
        if hold is not None:
            hold.set()  # a send left hanging would hold the engine's stop
        await w.engine.stop()
        await http.aclose()


def rule(**fields: Any) -> dict[str, Any]:
    return {"channel": "orders", **fields}


ERRORS = rule(name="orders-errors", kind="error_rate", threshold=0.5, window_minutes=5,
              min_attempts=3, notify=["ops_sms"])
BACKLOG = rule(name="sheet-backlog", kind="backlog_age", destination="sheet", minutes=15,
               notify=["ops_hook"])
QUIET = rule(name="orders-quiet", kind="silence", minutes=10, notify=["ops_sms", "ops_hook"])


@pytest.mark.parametrize("world", [[ERRORS]], indirect=True)
async def test_error_rate_alerts_once_and_resolves(world: World) -> None:
    await world.monitor.evaluate()  # no attempts yet
    world.sheet().script = [RetryableError("503 backend unavailable")] * 3
    acc = await world.engine.accept("orders", {"order_id": "E-1", "amount": "5"}, b"{}")
    await settle(world.engine, acc.message.id)  # dead after 3 failed attempts
    assert world.sms() == []
    world.clock.at()
    for _ in range(3):
        await world.monitor.evaluate()
    (firing,) = world.sms()
    assert firing.startswith("[alertpipe] FIRING orders-errors: error rate 100% on channel "
                             "orders: 3 of 3 attempts failed in the last 5 min")
    assert world.monitor.firing() == [("orders-errors", True)]
    world.clock.at(minutes=6)  # the failures leave the window
    await world.monitor.evaluate()
    await world.monitor.evaluate()
    assert len(world.sms()) == 2
    assert world.sms()[1].startswith("[alertpipe] RESOLVED orders-errors after 6 min")
    assert [m["To"] for m in world.twilio.sms_log] == [OPS, OPS]
    assert world.monitor.firing() == [("orders-errors", False)]


@pytest.mark.parametrize("world", [[ERRORS]], indirect=True)
async def test_error_rate_needs_min_attempts(world: World) -> None:
    world.sheet().script = [RetryableError("503"), None]
    acc = await world.engine.accept("orders", {"order_id": "E-2", "amount": "5"}, b"{}")
    await settle(world.engine, acc.message.id)  # 1 of 2 attempts failed: 50%, not over it
    world.clock.at()
    await world.monitor.evaluate()
    world.sheet().script = [RetryableError("503")] * 3
    acc = await world.engine.accept("orders", {"order_id": "E-3", "amount": "5"}, b"{}")
    await settle(world.engine, acc.message.id)
    world.clock.at()
    await world.monitor.evaluate()  # 4 of 5 failed: 80%
    assert len(world.sms()) == 1


@pytest.mark.parametrize("world", [[BACKLOG]], indirect=True)
async def test_backlog_age_alerts_once_through_a_signed_webhook_and_resolves(
        world: World) -> None:
    sheet = world.sheet()
    sheet.hold = asyncio.Event()  # the sheet hangs: the delivery waits
    acc = await world.engine.accept("orders", {"order_id": "B-1", "amount": "5"}, b"{}")
    await sheet.event.wait()
    world.clock.at(minutes=1)
    await world.monitor.evaluate()
    assert world.hooks.got == []
    world.clock.at(minutes=16)
    await world.monitor.evaluate()
    await world.monitor.evaluate()
    (firing,) = world.hooks.bodies()
    assert firing["status"] == "firing" and firing["rule"] == "sheet-backlog"
    assert firing["kind"] == "backlog_age" and firing["destination"] == "sheet"
    assert firing["value"] > 15 * 60 and firing["threshold"] == 15
    assert firing["text"].startswith("[alertpipe] FIRING sheet-backlog: oldest undelivered "
                                     "message on orders/sheet is 16 min old (1 waiting")
    _, headers, raw = world.hooks.got[0]
    stamp = headers["x-alertpipe-timestamp"]
    assert verify([HOOK_SECRET], stamp, raw, v1_signatures(headers["x-alertpipe-signature"]))
    sheet.hold.set()
    await settle(world.engine, acc.message.id)
    await world.monitor.evaluate()
    await world.monitor.evaluate()
    statuses = [b["status"] for b in world.hooks.bodies()]
    assert statuses == ["firing", "resolved"]
    resolved = world.hooks.bodies()[1]
    assert resolved["opened_at"] == firing["opened_at"] and resolved["resolved_at"]
    assert world.sms() == []  # this rule notifies the webhook only


@pytest.mark.parametrize("world", [[QUIET]], indirect=True)
async def test_silence_alerts_once_on_sms_and_webhook_and_resolves(world: World) -> None:
    world.clock.at(minutes=-15)
    await world.monitor.evaluate()  # the monitor starts: no alert before it ran 10 min
    world.clock.at(minutes=-6)
    await world.monitor.evaluate()
    assert world.sms() == [] and world.hooks.got == []
    world.clock.at()
    await world.monitor.evaluate()
    await world.monitor.evaluate()
    assert world.sms() == ["[alertpipe] FIRING orders-quiet: no message received on channel "
                           "orders for 10 min"]
    assert [b["status"] for b in world.hooks.bodies()] == ["firing"]
    await world.engine.accept("orders", {"order_id": "S-1", "amount": "5"}, b"{}")
    world.clock.at(seconds=1)
    await world.monitor.evaluate()
    await world.monitor.evaluate()
    assert len(world.sms()) == 2 and world.sms()[1].startswith(
        "[alertpipe] RESOLVED orders-quiet after 0 min: 1 message(s) received on channel "
        "orders in the last 10 min")
    assert [b["status"] for b in world.hooks.bodies()] == ["firing", "resolved"]


@pytest.mark.parametrize("world", [[QUIET]], indirect=True)
async def test_a_failed_alert_is_sent_at_the_next_evaluation_once(world: World) -> None:
    world.clock.at(minutes=-20)
    await world.monitor.evaluate()
    world.hooks.fail = [503]
    world.clock.at()
    await world.monitor.evaluate()
    assert [h["_status"] for _, h, _ in world.hooks.got] == ["503"]
    assert len(world.sms()) == 1  # the SMS went out; only the webhook failed
    await world.monitor.evaluate()
    await world.monitor.evaluate()
    assert [h["_status"] for _, h, _ in world.hooks.got] == ["503", "200"]
    ids = {h["x-alertpipe-event-id"] for _, h, _ in world.hooks.got}
    assert len(ids) == 1  # the same alert, tried again
    assert len(world.sms()) == 1


@pytest.mark.parametrize("world", [[QUIET]], indirect=True)
async def test_a_target_that_never_got_the_alert_gets_no_resolved(world: World) -> None:
    world.clock.at(minutes=-20)
    await world.monitor.evaluate()
    world.hooks.fail = [400]  # refused for good: dropped, logged
    world.clock.at()
    await world.monitor.evaluate()
    await world.monitor.evaluate()
    await world.engine.accept("orders", {"order_id": "S-2", "amount": "5"}, b"{}")
    world.clock.at(seconds=1)
    await world.monitor.evaluate()
    assert [h["_status"] for _, h, _ in world.hooks.got] == ["400"]
    assert [s.split()[1] for s in world.sms()] == ["FIRING", "RESOLVED"]


async def test_repeat_minutes_re_alerts_while_open() -> None:
    w, http = await make_world(dict(QUIET, notify=["ops_sms"]), repeat_minutes=30)
    try:
        w.clock.at(minutes=-100)
        await w.monitor.evaluate()
        for minutes in (-80, -70, -51, -50, -49, -20, -19):
            w.clock.at(minutes=minutes)
            await w.monitor.evaluate()
        assert [s.split()[1] for s in w.sms()] == ["FIRING", "STILL", "STILL"]
        assert w.sms()[1].startswith("[alertpipe] STILL FIRING orders-quiet for 30 min")
    finally:
        await w.engine.stop()
        await http.aclose()


async def test_only_the_holder_of_the_store_lock_alerts() -> None:
    w, http = await make_world(dict(QUIET, notify=["ops_sms"]))
    try:
        other = Monitor(w.monitor.settings, w.engine.store, {"orders": ["sheet", "sms"]},
                        instance="other-instance", clock=w.clock)
        await other.start(http)
        w.clock.at(minutes=-20)
        await w.monitor.evaluate()
        await other.evaluate()
        w.clock.at()
        await w.monitor.evaluate()
        await other.evaluate()
        assert len(w.sms()) == 1 and w.monitor.leading and not other.leading
        await w.monitor.stop()  # gives the lock up: the other instance alerts from now on
        assert await w.engine.store.leader_lock(LOCK_NAME, "other-instance")
        await w.engine.store.leader_unlock(LOCK_NAME, "other-instance")
        await other.evaluate()
        assert other.leading and len(w.sms()) == 2  # a failover re-alerts (documented)
        await other.stop()
    finally:
        w.engine.monitor = None  # stopped above
        await w.engine.stop()
        await http.aclose()


def test_rules_are_checked_against_the_channels() -> None:
    cfg = settings().model_dump()
    cfg["alerts"] = alerts(dict(BACKLOG, destination="nowhere"))
    with pytest.raises(ConfigError) as info:
        Engine(AppSettings.model_validate(cfg), store=MemoryStore())
    assert info.value.key == "alerts.rules.0.destination"
    cfg["alerts"] = alerts(dict(QUIET, channel="payments"))
    with pytest.raises(ConfigError) as info:
        Engine(AppSettings.model_validate(cfg), store=MemoryStore())
    assert info.value.key == "alerts.rules.0.channel"


@pytest.mark.parametrize(("change", "message"), [
    ({"threshold": None}, "needs threshold"),
    ({"threshold": 1.5}, "less than or equal to 1"),
    ({"minutes": 5}, "minutes does not apply to a error_rate rule"),
    ({"destination": "sheet"}, "destination does not apply"),
    ({"notify": ["pager"]}, "notifies pager"),
    ({"notify": []}, "at least 1 item"),
    ({"kind": "silence", "threshold": None}, "needs minutes"),
])
def test_rule_mistakes_are_refused(change: dict[str, Any], message: str) -> None:
    bad = {k: v for k, v in {**ERRORS, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        AlertSettings.model_validate(alerts(bad))


def test_alert_destinations_are_sms_or_webhook_and_checked() -> None:
    with pytest.raises(ValueError, match="type must be one of twilio_sms, webhook"):
        AlertSettings.model_validate({"destinations": {"x": {"type": "google_sheets"}}})
    cfg = settings().model_dump()
    spec = alerts(QUIET)
    spec["destinations"]["ops_sms"]["auth_token"] = ""
    cfg["alerts"] = spec
    eng = Engine(AppSettings.model_validate(cfg), store=MemoryStore())
    with pytest.raises(ConfigError) as info:
        eng.check()
    assert info.value.key is not None and info.value.key.startswith("alerts.destinations.ops_sms")


def test_disabled_alerts_build_no_monitor() -> None:
    cfg = settings().model_dump()
    cfg["alerts"] = alerts(QUIET, enabled=False)
    assert Engine(AppSettings.model_validate(cfg), store=MemoryStore()).monitor is None
