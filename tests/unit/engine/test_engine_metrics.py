"""GET /metrics: intake outcomes, delivery outcomes and latency, queues read from the store,
circuit states; guarded like the other read endpoints; one registry per engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from engine_support import Recorder, settings, settle
from prometheus_client.parser import text_string_to_metric_families

from alertpipe.auth import hash_key
from alertpipe.config.model import AppSettings
from alertpipe.engine import Engine
from alertpipe.errors import PermanentError, RetryableError, StoreUnavailable
from alertpipe.store import MemoryStore
from alertpipe.web import create_app
from recording import running

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(c: httpx.AsyncClient, **headers: str) -> Samples:
    r = await c.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def dest(eng: Engine, name: str) -> Recorder:
    d = eng.channels["orders"].destinations[name]
    assert isinstance(d, Recorder)
    return d


@asynccontextmanager
async def serving(cfg: AppSettings) -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    """A started engine and an HTTP client on its app."""
    async with running(cfg) as eng, httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(eng)), base_url="http://test") as c:
        yield c, eng


@pytest.fixture
async def api() -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    async with serving(settings()) as pair:
        yield pair


async def test_intake_outcomes_by_channel_outcome_and_reason(
        api: tuple[httpx.AsyncClient, Engine]) -> None:
    c, eng = api
    received = "alertpipe_messages_received_total"
    assert value(await scrape(c), received, channel="orders", outcome="accepted",
                 reason="") == 0
    assert (await c.post("/orders", json={"order_id": "M-1", "amount": "5"})).status_code == 202
    assert (await c.post("/orders", json={"order_id": "M-2", "amount": "5"})).status_code == 202
    assert (await c.post("/orders", json={"order_id": "M-1", "amount": "5"})).status_code == 200
    h = {"Idempotency-Key": "k-1"}
    assert (await c.post("/orders", json={"order_id": "M-3", "amount": "5"},
                         headers=h)).status_code == 202
    assert (await c.post("/orders", json={"order_id": "M-3", "amount": "5"},
                         headers=h)).status_code == 202  # a replay
    assert (await c.post("/orders", json={"order_id": "M-4", "amount": "5"},
                         headers=h)).status_code == 409
    assert (await c.post("/orders", json={"order_id": "M-5", "amount": True})).status_code == 422
    assert isinstance(eng.store, MemoryStore)
    eng.store.fail_writes = True
    assert (await c.post("/orders", json={"order_id": "M-6", "amount": "5"})).status_code == 503
    eng.store.fail_writes = False
    s = await scrape(c)
    expected = {("accepted", ""): 3, ("duplicate", "dedupe"): 1,
                ("duplicate", "idempotency"): 1, ("rejected", "idempotency_conflict"): 1,
                ("rejected", "validation_failed"): 1, ("unavailable", "store"): 1}
    got = {(dict(k[1])["outcome"], dict(k[1])["reason"]): v for k, v in s.items()
           if k[0] == received}
    assert got == expected


async def test_refusals_at_the_gate_are_counted() -> None:
    key = "ap_ingest-key"
    cfg = settings(source={"type": "http_json", "path": "/orders",
                           "rate_limit": {"per_second": 0.001, "burst": 1}}).model_dump()
    cfg["engine"]["api_keys"] = [
        {"id": "shop", "sha256": hash_key(key), "rights": ["ingest", "read"]},
        {"id": "other", "sha256": hash_key("ap_other"), "channels": ["elsewhere"]}]
    async with serving(AppSettings.model_validate(cfg)) as (c, _):
        order = {"order_id": "G-1", "amount": "1"}
        assert (await c.post("/orders", json=order)).status_code == 401
        assert (await c.post("/orders", json=order,
                             headers={"X-API-Key": "ap_other"})).status_code == 403
        assert (await c.post("/orders", json=order,
                             headers={"X-API-Key": key})).status_code == 202
        assert (await c.post("/orders", json=order,
                             headers={"X-API-Key": key})).status_code == 429
        s = await scrape(c, **{"X-API-Key": key})
        for reason in ("unauthorized", "forbidden", "rate_limited"):
            assert value(s, "alertpipe_messages_received_total", channel="orders",
                         outcome="rejected", reason=reason) == 1, reason


async def test_delivery_outcomes_latency_and_attempt_duration(
        api: tuple[httpx.AsyncClient, Engine]) -> None:
    c, eng = api
    dest(eng, "sheet").script = [RetryableError("503 unavailable"), None]
    ok = await eng.accept("orders", {"order_id": "D-1", "amount": "5"}, b"{}")
    await settle(eng, ok.message.id)
    dest(eng, "sheet").script = [PermanentError("400 bad row")]
    bad = await eng.accept("orders", {"order_id": "D-2", "amount": "5"}, b"{}")
    await settle(eng, bad.message.id)
    s = await scrape(c)
    total = "alertpipe_deliveries_total"
    sheet = {"channel": "orders", "destination": "sheet"}
    assert value(s, total, **sheet, outcome="delivered") == 1
    assert value(s, total, **sheet, outcome="retry") == 1
    assert value(s, total, **sheet, outcome="dead") == 1
    assert value(s, total, channel="orders", destination="sms", outcome="delivered") == 0
    assert value(s, "alertpipe_delivery_latency_seconds_count", **sheet) == 1
    latency = value(s, "alertpipe_delivery_latency_seconds_sum", **sheet)
    assert latency is not None and 0 < latency < 5
    assert value(s, "alertpipe_attempt_duration_seconds_count", **sheet) == 3


async def test_queue_depth_and_oldest_age_come_from_the_store(
        api: tuple[httpx.AsyncClient, Engine]) -> None:
    c, eng = api
    sheet = dest(eng, "sheet")
    sheet.hold = asyncio.Event()  # the remote hangs: the delivery stays in flight
    sheet.event.clear()
    acc = await eng.accept("orders", {"order_id": "Q-1", "amount": "5"}, b"{}")
    await sheet.event.wait()
    try:
        s = await scrape(c)
        q = {"channel": "orders", "destination": "sheet"}
        assert value(s, "alertpipe_queue_depth", **q, state="in_flight") == 1
        assert value(s, "alertpipe_queue_depth", **q, state="pending") == 0
        age = value(s, "alertpipe_oldest_pending_age_seconds", **q)
        assert age is not None and age > 0
        # a configured destination with no rows yet still has its series, at 0
        assert value(s, "alertpipe_queue_depth", channel="orders", destination="sms",
                     state="pending") == 0
        assert value(s, "alertpipe_oldest_pending_age_seconds", channel="orders",
                     destination="sms") == 0
    finally:
        sheet.hold.set()
    await settle(eng, acc.message.id)
    s = await scrape(c)
    assert value(s, "alertpipe_queue_depth", channel="orders", destination="sheet",
                 state="in_flight") == 0
    assert value(s, "alertpipe_oldest_pending_age_seconds", channel="orders",
                 destination="sheet") == 0


async def test_store_failure_leaves_queue_gauges_out_but_serves_the_rest(
        api: tuple[httpx.AsyncClient, Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    c, eng = api

    async def broken() -> Any:
        raise StoreUnavailable("database is down")

    monkeypatch.setattr(eng.store, "stats", broken)
    s = await scrape(c)
    assert not any(name == "alertpipe_queue_depth" for name, _ in s)
    assert value(s, "alertpipe_messages_received_total", channel="orders",
                 outcome="accepted", reason="") == 0


async def test_circuit_state_per_destination_and_instance(
        api: tuple[httpx.AsyncClient, Engine]) -> None:
    c, eng = api
    eng.workers[("orders", "sms")].breaker.state = "open"
    eng.workers[("orders", "sheet")].breaker.state = "half_open"
    s = await scrape(c)
    me = eng.instance_id
    assert value(s, "alertpipe_circuit_state", channel="orders", destination="sms",
                 instance=me) == 2
    assert value(s, "alertpipe_circuit_state", channel="orders", destination="sheet",
                 instance=me) == 1
    eng.workers[("orders", "sms")].breaker.state = "closed"
    eng.workers[("orders", "sheet")].breaker.state = "closed"


async def test_openmetrics_when_asked(api: tuple[httpx.AsyncClient, Engine]) -> None:
    c, _ = api
    r = await c.get("/metrics", headers={
        "Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


async def test_metrics_need_the_read_right_when_keys_are_configured() -> None:
    cfg = settings().model_dump()
    cfg["engine"]["api_keys"] = [
        {"id": "shop", "sha256": hash_key("ap_shop"), "rights": ["ingest"]},
        {"id": "prom", "sha256": hash_key("ap_prom"), "rights": ["read"]}]
    eng = Engine(AppSettings.model_validate(cfg), store=MemoryStore())
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(eng)),
                          base_url="http://test")
    try:
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers={"X-API-Key": "ap_shop"})).status_code == 403
        ok = await c.get("/metrics", headers={"Authorization": "Bearer ap_prom"})
        assert ok.status_code == 200 and "alertpipe_messages_received_total" in ok.text
    finally:
        await c.aclose()


async def test_each_engine_has_its_own_registry() -> None:
    one, two = (Engine(settings(), store=MemoryStore()) for _ in range(2))
    one.metrics.intake["orders"].accepted += 5
    one.metrics.delivery("orders", "sheet").delivered.inc()
    body_two, _ = await two.metrics.exposition(two.store)
    s = parse(body_two.decode())
    assert value(s, "alertpipe_messages_received_total", channel="orders", outcome="accepted",
                 reason="") == 0
    assert value(s, "alertpipe_deliveries_total", channel="orders", destination="sheet",
                 outcome="delivered") is None  # no worker of this engine has run
    body_one, _ = await one.metrics.exposition(one.store)
    assert value(parse(body_one.decode()), "alertpipe_messages_received_total",
                 channel="orders", outcome="accepted", reason="") == 5
