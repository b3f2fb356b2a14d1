"""The admin JSON API over a started engine and the in-memory store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from web_support import client_for, dest, post_order, settings, settle

from alertpipe.auth import hash_key
from alertpipe.engine import Engine
from alertpipe.errors import PermanentError
from alertpipe.store import MemoryStore


async def test_channels_report_state_counters_queues_and_circuits(
        engine: Engine, client: httpx.AsyncClient) -> None:
    mid = await post_order(client, "A-1", "350")
    await settle(engine, mid)
    r = await client.get("/api/channels")
    assert r.status_code == 200
    channels = {c["name"]: c for c in r.json()["channels"]}
    assert set(channels) == {"orders", "refunds"}
    orders = channels["orders"]
    assert orders["state"] == "running"
    assert orders["source"] == {"type": "http_json", "path": "/orders"}
    assert orders["counters"] == {"pending": 0, "in_flight": 0, "delivered": 3, "dead": 0,
                                  "received_last_hour": 1, "delivered_last_hour": 3,
                                  "failed_last_hour": 0}
    assert orders["error_rate"] == 0.0
    sms = next(d for d in orders["destinations"] if d["name"] == "sms")
    assert sms == {"name": "sms", "type": "web_recorder", "pending": 0, "in_flight": 0,
                   "delivered": 2, "dead": 0, "oldest_pending_at": None,
                   "oldest_pending_age_seconds": None, "circuit": "closed"}
    assert [p["received"] for p in orders["throughput"]] == [1]
    assert channels["refunds"]["counters"]["received_last_hour"] == 0


async def test_oldest_pending_age_while_a_channel_is_stopped(
        engine: Engine, client: httpx.AsyncClient) -> None:
    mid = await post_order(client, "A-2")
    await settle(engine, mid)
    assert (await client.post("/api/channels/orders/stop")).json() == {
        "name": "orders", "state": "stopped"}
    r = await client.post(f"/api/messages/{mid}/resend", json={"destination": "sheet"})
    assert r.status_code == 202
    orders = next(c for c in (await client.get("/api/channels")).json()["channels"]
                  if c["name"] == "orders")
    sheet = next(d for d in orders["destinations"] if d["name"] == "sheet")
    assert sheet["pending"] == 1 and sheet["oldest_pending_at"] is not None
    assert 0 <= sheet["oldest_pending_age_seconds"] < 60


async def test_stopped_channel_refuses_intake_and_sends_nothing_until_started(
        engine: Engine, client: httpx.AsyncClient) -> None:
    sheet = dest(engine, "sheet")
    mid = await post_order(client, "S-1")
    await settle(engine, mid)
    assert len(sheet.sent) == 1
    r = await client.post("/api/channels/orders/stop")
    assert r.status_code == 200 and r.json()["state"] == "stopped"
    assert (await client.post("/api/channels/orders/stop")).json()["state"] == "stopped"
    refused = await client.post("/orders", json={"order_id": "S-2", "amount": "1"})
    assert refused.status_code == 503
    assert "stopped by an operator" in refused.json()["message"]
    assert refused.headers["retry-after"]
    other = await client.post("/refunds", json={"order_id": "S-2", "amount": "1"})
    assert other.status_code == 202  # only that channel stops
    # A resend while stopped is stored, and waits: its worker claims nothing.
    sheet.event.clear()
    r = await client.post(f"/api/messages/{mid}/resend", json={"destination": "sheet"})
    assert r.status_code == 202
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sheet.event.wait(), timeout=0.3)  # 6 poll intervals
    assert len(sheet.sent) == 1
    started = await client.post("/api/channels/orders/start")
    assert started.json() == {"name": "orders", "state": "running"}
    await settle(engine, mid)
    assert len(sheet.sent) == 2
    assert (await client.post("/orders", json={"order_id": "S-3", "amount": "1"})
            ).status_code == 202
    actions = [(e.action, e.target) for e in await engine.store.list_audit()]
    assert ("channel.stop", "orders") in actions and ("channel.start", "orders") in actions


async def test_channel_actions_unknown_channel_and_methods(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/channels/nope/stop")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert (await client.get("/api/channels/orders/stop")).status_code == 405


async def test_messages_filters_and_search(engine: Engine, client: httpx.AsyncClient) -> None:
    a = await post_order(client, "A-1001", "349.99", customer_name="Ada Lovelace")
    b = await post_order(client, "A-1002", "42.50", customer_name="Grace Hopper")
    c = await post_order(client, "B-7", "10", channel_path="/refunds",
                         customer_name="Alan Turing")
    for mid in (a, b, c):
        await settle(engine, mid)

    async def ids(**params: str) -> list[str]:
        r = await client.get("/api/messages", params=params)
        assert r.status_code == 200, r.text
        return [m["id"] for m in r.json()["messages"]]

    assert await ids() == [c, b, a]  # newest first
    assert await ids(q="a-1001") == [a]  # order id, any case
    assert await ids(q="hopper") == [b]  # any body value
    assert await ids(q=a) == [a]  # a message id
    assert await ids(order_id="A-1002") == [b]
    assert await ids(order_id="A-100") == []  # exact
    assert await ids(channel="refunds") == [c]
    assert await ids(destination="sms") == [a]
    assert await ids(status="delivered") == [c, b, a]
    assert await ids(status="dead") == []
    assert await ids(q="nothing like this") == []
    summary = (await client.get("/api/messages", params={"q": "A-1001"})).json()["messages"][0]
    assert summary["order_id"] == "A-1001" and summary["state"] == "delivered"
    assert sorted((d["destination"], d["target"]) for d in summary["deliveries"]) == [
        ("sheet", None), ("sms", "+15550001"), ("sms", "+15550002")]
    stored = await engine.store.get_message(b)
    assert stored is not None
    received = stored.message.received_at
    assert await ids(since=received.isoformat()) == [c, b]
    assert await ids(until=received.isoformat()) == [a]
    assert await ids(since=received.isoformat().replace("+00:00", "Z"), channel="orders") == [b]


async def test_messages_paging_with_cursor(engine: Engine, client: httpx.AsyncClient) -> None:
    mids = [await post_order(client, f"P-{i}") for i in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "3", "q": "P-"} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/api/messages", params=params)).json()
        seen += [m["id"] for m in body["messages"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(mids)) and pages == 3


@pytest.mark.parametrize("params", [
    {"limit": "0"}, {"limit": "201"}, {"limit": "x"}, {"limit": ""}, {"status": "bogus"},
    {"status": ""}, {"limit": " 5"}, {"limit": "٥"}, {"limit": "+5"},
    {"since": "yesterday"}, {"until": "2024-13-01"}, {"cursor": "not-a-cursor"}])
async def test_messages_bad_parameters_are_400(client: httpx.AsyncClient,
                                               params: dict[str, str]) -> None:
    r = await client.get("/api/messages", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == "rejected" and r.json()["error"] == "bad_request"


async def test_resend_adds_deliveries_and_audits(engine: Engine,
                                                client: httpx.AsyncClient) -> None:
    mid = await post_order(client, "R-1", "999")
    await settle(engine, mid)
    r = await client.post(f"/api/messages/{mid}/resend", json={"destination": "sms"})
    assert r.status_code == 202
    added = r.json()["deliveries"]
    assert [(d["destination"], d["target"], d["status"]) for d in added] == [
        ("sms", "+15550001", "pending"), ("sms", "+15550002", "pending")]
    await settle(engine, mid)
    stored = await engine.store.get_message(mid)
    assert stored is not None and len(stored.deliveries) == 5
    assert all(d.status == "delivered" for d in stored.deliveries)
    [entry] = [e for e in await engine.store.list_audit() if e.action == "resend"]
    assert (entry.actor, entry.role, entry.target) == ("ip:127.0.0.1", "api", mid)
    assert "to sms" in (entry.detail or "")


async def test_resend_refusals(engine: Engine, client: httpx.AsyncClient) -> None:
    mid = await post_order(client, "R-2")
    r = await client.post(f"/api/messages/{mid}/resend", json={"destination": "fax"})
    assert r.status_code == 404 and r.json()["error"] == "unknown_destination"
    r = await client.post("/api/messages/nope/resend", json={"destination": "sheet"})
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    for body in (b"", b"[]", b'{"destination": 3}', b"{bad json"):
        r = await client.post(f"/api/messages/{mid}/resend", content=body,
                              headers={"content-type": "application/json"})
        assert r.status_code == 400, body


async def test_dead_letters_retry_and_discard(engine: Engine,
                                              client: httpx.AsyncClient) -> None:
    sheet = dest(engine, "sheet")
    sheet.fail = PermanentError("400 bad row", code=400)
    first = await post_order(client, "D-1")
    second = await post_order(client, "D-2")
    for mid in (first, second):
        await settle(engine, mid)
    dead = (await client.get("/api/dead")).json()["deliveries"]
    assert {d["message_id"] for d in dead} == {first, second}
    assert all(d["status"] == "dead" and d["error"] for d in dead)
    by_message = {d["message_id"]: d["id"] for d in dead}
    assert (await client.get("/api/messages", params={"status": "dead"})).json()[
        "messages"][0]["state"] == "dead"

    sheet.fail = None
    r = await client.post(f"/api/deliveries/{by_message[first]}/retry")
    assert r.status_code == 200 and r.json()["delivery"]["status"] in ("pending", "in_flight",
                                                                       "delivered")
    await settle(engine, first)
    assert (await engine.store.get_delivery(by_message[first])).status == "delivered"  # type: ignore[union-attr]
    r = await client.post(f"/api/deliveries/{by_message[first]}/retry")
    assert r.status_code == 409 and r.json()["error"] == "not_dead"
    r = await client.post(f"/api/deliveries/{by_message[first]}/discard")
    assert r.status_code == 409

    r = await client.post(f"/api/deliveries/{by_message[second]}/discard")
    assert r.status_code == 200 and r.json()["delivery"]["status"] == "discarded"
    assert (await client.get("/api/dead")).json()["deliveries"] == []
    assert (await client.post(f"/api/deliveries/{by_message[second]}/discard")
            ).status_code == 409
    for bad, status in (("999999", 404), ("abc", 400), ("-1", 400), ("²", 400)):
        assert (await client.post(f"/api/deliveries/{bad}/retry")).status_code == status
    actions = [(e.action, e.target) for e in await engine.store.list_audit()]
    assert ("retry", first) in actions and ("discard", second) in actions


# -- with API keys ---------------------------------------------------------------------------
KEYS = {"reader": "rk-reader-0123456789", "ops": "rk-ops-0123456789",
        "refunds-admin": "rk-refunds-0123456789"}


@pytest.fixture
async def keyed() -> AsyncIterator[tuple[Engine, httpx.AsyncClient]]:
    api_keys = [
        {"id": "reader", "sha256": hash_key(KEYS["reader"]), "rights": ["read", "ingest"]},
        {"id": "ops", "sha256": hash_key(KEYS["ops"]), "rights": ["read", "admin", "ingest"]},
        {"id": "refunds-admin", "sha256": hash_key(KEYS["refunds-admin"]),
         "channels": ["refunds"], "rights": ["read", "admin"]}]
    eng = Engine(settings(api_keys=api_keys), store=MemoryStore())
    await eng.start()
    try:
        async with client_for(eng) as c:
            yield eng, c
    finally:
        await eng.stop()


def key(name: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[name]}


async def test_api_keys_read_and_admin_rights(keyed: tuple[Engine, httpx.AsyncClient]) -> None:
    engine, client = keyed
    r = await client.post("/orders", json={"order_id": "K-1", "amount": "1"},
                          headers=key("reader"))
    mid = r.json()["message_id"]
    await settle(engine, mid)
    for path in ("/api/channels", "/api/messages", "/api/dead"):
        assert (await client.get(path)).status_code == 401, path
        assert (await client.get(path, headers=key("reader"))).status_code == 200, path
    resend = f"/api/messages/{mid}/resend"
    assert (await client.post(resend, json={"destination": "sheet"})).status_code == 401
    r = await client.post(resend, json={"destination": "sheet"}, headers=key("reader"))
    assert r.status_code == 403 and "admin" in r.json()["message"]
    r = await client.post(resend, json={"destination": "sheet"}, headers=key("refunds-admin"))
    assert r.status_code == 403 and "orders" in r.json()["message"]
    assert (await client.post("/api/channels/orders/stop", headers=key("refunds-admin"))
            ).status_code == 403
    assert (await client.post("/api/channels/refunds/stop", headers=key("refunds-admin"))
            ).status_code == 200
    r = await client.post(resend, json={"destination": "sheet"},
                          headers={"Authorization": f"Bearer {KEYS['ops']}"})
    assert r.status_code == 202
    entries = await engine.store.list_audit()
    assert [(e.actor, e.action) for e in entries[:2]] == [("key:ops", "resend"),
                                                          ("key:refunds-admin", "channel.stop")]
    assert not any(k in repr(entries) for k in KEYS.values())


async def test_a_store_that_refuses_writes_is_503(engine: Engine,
                                                  client: httpx.AsyncClient) -> None:
    mid = await post_order(client, "U-1")
    await settle(engine, mid)
    assert isinstance(engine.store, MemoryStore)
    engine.store.fail_writes = True
    try:
        r = await client.post(f"/api/messages/{mid}/resend", json={"destination": "sheet"})
        assert r.status_code == 503 and r.json()["error"] == "unavailable"
    finally:
        engine.store.fail_writes = False
    stored = await engine.store.get_message(mid)
    assert stored is not None and len(stored.deliveries) == 1
