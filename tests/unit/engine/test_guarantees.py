"""Delivery guarantees in-process: idempotency, de-duplication, backpressure, who may call,
rate limits, the circuit breaker and poison isolation in batches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from engine_support import Recorder, settings, settle

from alertpipe.auth import hash_key
from alertpipe.config.model import AppSettings
from alertpipe.engine import Engine
from alertpipe.engine.circuit import CircuitBreaker
from alertpipe.errors import RetryableError
from alertpipe.store import MemoryStore
from alertpipe.web import create_app


async def _client(eng: Engine) -> httpx.AsyncClient:
    await eng.start()
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(eng)),
                             base_url="http://test")


@pytest.fixture
async def api() -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    eng = Engine(settings(), store=MemoryStore())
    c = await _client(eng)
    yield c, eng
    await c.aclose()
    await eng.stop()


async def test_idempotency_key_replays_conflicts_and_runs_once(
        api: tuple[httpx.AsyncClient, Engine]) -> None:
    c, eng = api
    h = {"Idempotency-Key": "k-123"}
    first = await c.post("/orders", json={"order_id": "I-1", "amount": "5"}, headers=h)
    again = await c.post("/orders", json={"order_id": "I-1", "amount": "5"}, headers=h)
    assert first.status_code == 202 and again.status_code == 202
    assert again.json()["message_id"] == first.json()["message_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await c.post("/orders", json={"order_id": "I-2", "amount": "6"}, headers=h)
    assert other.status_code == 409 and "different request body" in other.json()["message"]
    racing = await asyncio.gather(*(c.post("/orders", json={"order_id": "I-3", "amount": "7"},
                                           headers={"Idempotency-Key": "k-race"})
                                    for _ in range(8)))
    assert len({r.json()["message_id"] for r in racing}) == 1
    assert len(await eng.store.list_messages(limit=100)) == 2


async def test_repeated_order_id_is_a_duplicate(api: tuple[httpx.AsyncClient, Engine]) -> None:
    c, eng = api
    first = await c.post("/orders", json={"order_id": "D-1", "amount": "5"})
    again = await c.post("/orders", json={"order_id": "D-1", "amount": "5"})
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "message_id": first.json()["message_id"]}
    racing = await asyncio.gather(*(c.post("/orders", json={"order_id": "D-2", "amount": "1"})
                                    for _ in range(8)))
    assert sorted(r.status_code for r in racing) == [200] * 7 + [202]
    assert len(await eng.store.list_messages(limit=100)) == 2


async def test_backlog_bound_answers_503() -> None:
    eng = Engine(settings(max_pending=3), store=MemoryStore())
    c = await _client(eng)
    try:
        for w in eng.workers.values():  # hold deliveries in the store
            await w.stop(0)
        codes = [(await c.post("/orders", json={"order_id": f"B-{i}", "amount": "1"})).status_code
                 for i in range(5)]
        assert codes[:3] == [202, 202, 202] and codes[3:] == [503, 503]
        r = await c.post("/orders", json={"order_id": "B-9", "amount": "1"})
        assert r.headers["Retry-After"] == "5" and "limit is 3" in r.json()["message"]
    finally:
        await c.aclose()
        await eng.stop()


class SlowCount(MemoryStore):
    """A store whose backlog read sees the rows at its start and answers when let go."""

    def __init__(self) -> None:
        super().__init__()
        self.let_go = asyncio.Event()
        self.reading = asyncio.Event()

    async def backlog(self, channel: str) -> int:
        seen = await super().backlog(channel)
        self.reading.set()
        await self.let_go.wait()
        return seen


async def test_orders_accepted_during_a_backlog_read_still_count() -> None:
    store = SlowCount()
    store.let_go.set()  # the read at start answers at once
    eng = Engine(settings(max_pending=3), store=store)
    c = await _client(eng)
    try:
        for w in eng.workers.values():  # hold deliveries in the store
            await w.stop(0)
        store.let_go.clear()
        store.reading.clear()
        backlog = eng._backlog["orders"]
        backlog.read_at = float("-inf")  # due: the next check starts a read
        eng._check_backlog(eng.channel("orders"))
        read = backlog.refresh
        assert read is not None
        await store.reading.wait()  # it has seen 0 rows
        codes = [(await c.post("/orders", json={"order_id": f"R-{i}", "amount": "1"})).status_code
                 for i in range(2)]
        assert codes == [202, 202]
        store.let_go.set()
        await read
        assert backlog.count == 2  # 0 seen by the read + the 2 accepted meanwhile, not 0
        codes = [(await c.post("/orders", json={"order_id": f"R-{i}", "amount": "1"})).status_code
                 for i in range(2, 4)]
        assert codes == [202, 503]
    finally:
        await c.aclose()
        await eng.stop()


def test_a_slow_backlog_count_is_read_less_often() -> None:
    from alertpipe.engine.core import BACKLOG_READ_EVERY, backlog_read_every

    assert backlog_read_every(0.001) == BACKLOG_READ_EVERY
    assert backlog_read_every(0.1) == pytest.approx(5.0)  # 100 ms of counting: every 5 s, 2 %


def _with_keys(**extra: Any) -> AppSettings:
    s = settings(**extra)
    s.engine.api_keys = AppSettings.model_validate({"engine": {"api_keys": [
        {"id": "shop", "sha256": hash_key("good-key"), "channels": ["orders"]},
        {"id": "shop-next", "sha256": hash_key("rotated-key"), "channels": ["orders"]},
        {"id": "reader", "sha256": hash_key("read-key"), "rights": ["read"]},
    ]}, "channels": {"x": {"destinations": {"a": {"type": "recorder"}}}}}).engine.api_keys
    return s


async def test_api_keys_401_vs_403_and_rotation() -> None:
    eng = Engine(_with_keys(), store=MemoryStore())
    c = await _client(eng)
    try:
        order = {"order_id": "K-1", "amount": "1"}
        assert (await c.post("/orders", json=order)).status_code == 401
        bad = await c.post("/orders", json=order, headers={"X-API-Key": "nope"})
        assert bad.status_code == 401 and bad.headers["WWW-Authenticate"].startswith("Bearer")
        ok = await c.post("/orders", json=order, headers={"X-API-Key": "good-key"})
        assert ok.status_code == 202
        rotated = await c.post("/orders", json={"order_id": "K-2", "amount": "1"},
                               headers={"Authorization": "Bearer rotated-key"})
        assert rotated.status_code == 202
        forbidden = await c.post("/orders", json=order, headers={"X-API-Key": "read-key"})
        assert forbidden.status_code == 403 and "'ingest'" in forbidden.json()["message"]
        mid = ok.json()["message_id"]
        assert (await c.get(f"/api/messages/{mid}")).status_code == 401
        assert (await c.get(f"/api/messages/{mid}",
                            headers={"X-API-Key": "good-key"})).status_code == 403
        assert (await c.get(f"/api/messages/{mid}",
                            headers={"X-API-Key": "read-key"})).status_code == 200
    finally:
        await c.aclose()
        await eng.stop()


async def test_per_client_rate_limit_answers_429() -> None:
    s = settings(source={"type": "http_json", "path": "/orders",
                         "rate_limit": {"per_second": 0.5, "burst": 2}})
    eng = Engine(s, store=MemoryStore())
    c = await _client(eng)
    try:
        codes = [(await c.post("/orders", json={"order_id": f"R-{i}", "amount": "1"})).status_code
                 for i in range(3)]
        assert codes == [202, 202, 429]
        r = await c.post("/orders", json={"order_id": "R-9", "amount": "1"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    finally:
        await c.aclose()
        await eng.stop()


def test_circuit_opens_probes_and_closes() -> None:
    now = [0.0]
    cb = CircuitBreaker("orders/sheet", failure_threshold=3, reset_seconds=10,
                        clock=lambda: now[0])
    for _ in range(3):
        assert cb.allow()
        cb.record_failure()
    assert cb.state == "open" and not cb.allow()
    now[0] = 10.0
    assert cb.allow() and cb.state == "half_open"
    cb.record_failure()
    assert cb.state == "open"
    now[0] = 20.0
    assert cb.allow()
    cb.record_success()
    assert cb.state == "closed" and cb.failures == 0


async def test_open_circuit_shows_in_readyz_and_stops_sending() -> None:
    s = settings(circuit={"failure_threshold": 2, "reset_seconds": 60})
    eng = Engine(s, store=MemoryStore())
    c = await _client(eng)
    sheet = eng.channels["orders"].destinations["sheet"]
    assert isinstance(sheet, Recorder)
    sheet.script = [RetryableError("503 unavailable")] * 10
    try:
        for i in range(2):  # two failed rounds, each waited for until its outcome is recorded
            recorded = asyncio.Event()
            await eng.accept("orders", {"order_id": f"C-{i}", "amount": "1"}, b"{}",
                             waiter=recorded)
            await asyncio.wait_for(recorded.wait(), 5)
        ready = await c.get("/readyz")
        assert ready.json()["circuits"]["orders/sheet"] == "open"
        calls = sheet.calls
        await c.post("/orders", json={"order_id": "C-9", "amount": "1"})
        assert eng.workers[("orders", "sheet")].breaker.remaining() > 50
        assert sheet.calls == calls  # nothing sent while open
    finally:
        await c.aclose()
        await eng.stop()


async def test_poison_row_is_isolated_from_its_batch() -> None:
    eng = Engine(settings(), store=MemoryStore())
    sheet = eng.channels["orders"].destinations["sheet"]
    assert isinstance(sheet, Recorder)
    sheet.poison = "P-5"
    accs = [await eng.channels["orders"].accept({"order_id": f"P-{i}", "amount": "1"}, b"{}")
            for i in range(12)]  # stored before the workers start: one batch of 12
    await eng.start()
    try:
        for acc in accs:
            await settle(eng, acc.message.id)
        (dead,) = await eng.store.list_dead()
        assert dead.message_id == accs[5].message_id and dead.attempts == 1
        assert sorted(d.message.body["order_id"] for d in sheet.sent) == sorted(
            f"P-{i}" for i in range(12) if i != 5)
        assert sheet.calls <= 9  # 1 + 2 per level of the bisection, not one call per row
    finally:
        await eng.stop()


async def test_shutdown_releases_in_flight_deliveries_within_the_grace() -> None:
    s = settings()
    s.engine.shutdown_grace_seconds = 0.2
    store = MemoryStore()
    eng = Engine(s, store=store)
    sheet = eng.channels["orders"].destinations["sheet"]
    assert isinstance(sheet, Recorder)
    sheet.hold = asyncio.Event()  # the remote never answers
    await eng.start()
    acc = await eng.accept("orders", {"order_id": "S-1", "amount": "1"}, b"{}")
    await asyncio.wait_for(sheet.event.wait(), 5)  # the delivery is in flight
    async with asyncio.timeout(5):
        await eng.stop()
    stored = await store.get_message(acc.message.id)
    assert stored is not None
    (d,) = stored.deliveries
    assert d.status == "pending" and d.attempts == 0  # given back, not lost, not counted


async def test_throttling_does_not_open_the_circuit() -> None:
    s = settings(circuit={"failure_threshold": 2, "reset_seconds": 60},
                 retry={"base_delay_seconds": 0.01, "max_delay_seconds": 0.02,
                        "max_attempts": 10})
    eng = Engine(s, store=MemoryStore())
    sheet = eng.channels["orders"].destinations["sheet"]
    assert isinstance(sheet, Recorder)
    sheet.script = [RetryableError("429 quota", code=429, retry_after=0.01, throttled=True)] * 3
    await eng.start()
    try:
        acc = await eng.accept("orders", {"order_id": "T-1", "amount": "1"}, b"{}")
        await settle(eng, acc.message.id)
        assert eng.workers[("orders", "sheet")].breaker.state == "closed"
        assert [d.message.id for d in sheet.sent] == [acc.message.id]
    finally:
        await eng.stop()
