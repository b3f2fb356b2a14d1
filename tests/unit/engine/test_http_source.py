"""POST /orders through the real ASGI app (httpx.ASGITransport): every answer the issue names."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from engine_support import settings

from alertpipe.engine import Engine
from alertpipe.store import MemoryStore
from alertpipe.web import create_app


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    eng = Engine(settings(), store=MemoryStore())  # the default 1 MiB body limit
    await eng.start()
    transport = httpx.ASGITransport(app=create_app(eng))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c, eng
    await eng.stop()


async def test_accepted_after_commit(client: tuple[httpx.AsyncClient, Engine]) -> None:
    c, eng = client
    r = await c.post("/orders", json={"order_id": "A-1001", "amount": "349.99"})
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "accepted"
    assert await eng.store.get_message(body["message_id"]) is not None


@pytest.mark.parametrize(("content", "fragment"), [
    (b'{"order_id": "A-1", "amount": 1', "line 1"),
    (b'{"order_id": "A-1", "amount": NaN}', "NaN"),
    (b'{"order_id": "A-1", "amount": 1, "amount": 2}', "duplicate key"),
    (b"\xff\xfe{}", "UTF-8"),
    (b"[" * 10_000 + b"]" * 10_000, "deep"),
    (b'{"amount": ' + b"9" * 100_000 + b"}", "digits"),
    (b"[]", "object"),
])
async def test_malformed_json_is_400(client: tuple[httpx.AsyncClient, Engine], content: bytes,
                                     fragment: str) -> None:
    c, eng = client
    r = await c.post("/orders", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert fragment.lower() in r.json()["message"].lower()
    assert await eng.store.list_messages() == []


async def test_non_json_content_type_is_415(client: tuple[httpx.AsyncClient, Engine]) -> None:
    c, _ = client
    r = await c.post("/orders", content=b"order_id=1", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["message"]
    r = await c.post("/orders", content=b"{}")
    assert r.status_code == 415


async def test_body_over_limit_is_413_even_when_streamed(
        client: tuple[httpx.AsyncClient, Engine]) -> None:
    c, eng = client
    big = json.dumps({"order_id": "A-1", "amount": 1, "pad": "x" * (1024 * 1024)}).encode()
    r = await c.post("/orders", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: must be cut off while read
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    r = await c.post("/orders", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert await eng.store.list_messages() == []


async def test_field_errors_are_422_with_each_field(
        client: tuple[httpx.AsyncClient, Engine]) -> None:
    c, eng = client
    r = await c.post("/orders", json={"amount": True, "customer_phone": "555", "currency": "XXQ"})
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"order_id", "amount", "customer_phone", "currency"} <= fields
    assert all(e["message"] for e in r.json()["errors"])
    assert await eng.store.list_messages() == []


async def test_store_refusing_gives_503_with_retry_after(
        client: tuple[httpx.AsyncClient, Engine]) -> None:
    c, eng = client
    assert isinstance(eng.store, MemoryStore)
    eng.store.fail_writes = True
    r = await c.post("/orders", json={"order_id": "A-1", "amount": "1"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    ready = await c.get("/readyz")
    assert ready.status_code == 503 and "not writable" in ready.json()["store"]
    eng.store.fail_writes = False
    assert (await c.get("/readyz")).status_code == 200


async def test_prefer_wait_returns_each_destination_outcome(
        client: tuple[httpx.AsyncClient, Engine]) -> None:
    c, _ = client
    r = await c.post("/orders", json={"order_id": "A-2", "amount": "300.01"},
                     headers={"Prefer": "wait=5"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "delivered"
    got = sorted((d["destination"], d["target"], d["status"]) for d in body["deliveries"])
    assert got == [("sheet", None, "delivered"), ("sms", "+15550001", "delivered"),
                   ("sms", "+15550002", "delivered")]
    detail = await c.get(f"/api/messages/{body['message_id']}")
    assert detail.status_code == 200 and detail.json()["deliveries"][0]["history"]


async def test_prefer_wait_times_out_with_202(client: tuple[httpx.AsyncClient, Engine]) -> None:
    c, eng = client
    from alertpipe.errors import RetryableError
    eng.channels["orders"].destinations["sheet"].script = [  # type: ignore[attr-defined]
        RetryableError("busy", retry_after=60)]
    r = await c.post("/orders", json={"order_id": "A-3", "amount": "1"},
                     headers={"Prefer": "wait=0.5"})
    assert r.status_code == 202
    assert r.json()["deliveries"][0]["status"] == "pending"


async def test_health(client: tuple[httpx.AsyncClient, Engine]) -> None:
    c, _ = client
    assert (await c.get("/healthz")).json() == {"status": "ok"}
    ready = (await c.get("/readyz")).json()
    assert ready["status"] == "ready" and set(ready["workers"]) == {"orders/sheet", "orders/sms"}
