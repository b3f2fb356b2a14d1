"""Shopify orders/create webhooks through the real ASGI app."""

from __future__ import annotations

import asyncio
import json
import logging
from decimal import Decimal
from typing import Any

import httpx
import pytest
from webhook_sources_support import (
    Client,
    b64_hmac,
    client_fixture,
    fixture_bytes,
    fixture_json,
    running,
    stored,
)

from alertpipe.errors import CredentialsError
from alertpipe.sources.shopify import ShopifyConfig, ShopifySource

SECRET = "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"
SOURCE = {"type": "shopify", "secret": SECRET}
client = client_fixture(SOURCE)


def headers(raw: bytes, *, event_id: str = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            topic: str = "orders/create", secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "X-Shopify-Hmac-Sha256": b64_hmac(secret, raw),
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": "jsmith.myshopify.com",
            "X-Shopify-API-Version": "2024-04",
            "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            "X-Shopify-Triggered-At": "2024-05-01T14:30:01.123456789Z",
            "X-Shopify-Event-Id": event_id}


async def post(c: httpx.AsyncClient, raw: bytes, **kw: Any) -> httpx.Response:
    return await c.post("/webhooks/shopify", content=raw, headers=headers(raw, **kw))


async def test_documented_payload_is_mapped_onto_the_order(client: Client) -> None:
    c, eng = client
    raw = fixture_bytes("shopify_orders_create.json")
    r = await post(c, raw)
    assert r.status_code == 202, r.text
    [msg] = await stored(eng)
    assert msg.message.id == r.json()["message_id"]
    assert msg.message.raw == raw
    body = msg.message.body
    # 820982911946154508 > 2**53: a float on the way would have changed its last digits
    assert body["order_id"] == "820982911946154508"
    assert int(float(820982911946154508)) != 820982911946154508
    assert body["amount"] == Decimal("403.00") and str(body["amount"]) == "403.00"
    assert body["currency"] == "USD"
    assert body["customer_name"] == "John Smith"
    assert body["customer_phone"] == "+15025550123"  # only the shipping address has one
    assert body["created_at"] == "2024-05-01T14:30:00+00:00"
    assert [(i["sku"], i["qty"], i["price"]) for i in body["items"]] == [
        ("IPOD2008PINK", 1, Decimal("199.00")), ("808950811", 1, Decimal("199.00"))]
    assert body["shopify"]["name"] == "#9999"
    assert body["shopify"]["id"] == "820982911946154508"
    assert body["shopify"]["test"] is True and "raw_phone" not in body["shopify"]
    assert body["high_value"] is True
    assert sorted(d.destination for d in msg.deliveries) == ["sheet", "sms"]
    meta = msg.message.meta
    assert meta["event_id"] == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert meta["webhook_id"] == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert meta["shop_domain"] == "jsmith.myshopify.com"
    assert meta["triggered_at"] == "2024-05-01T14:30:01.123456789Z"


async def test_id_just_past_two_to_the_53_survives_exactly(client: Client) -> None:
    c, eng = client
    raw = fixture_bytes("shopify_orders_create.json").replace(
        b'"id": 820982911946154508', b'"id": 9007199254740993', 1)
    assert float(9007199254740993) == 9007199254740992.0
    r = await post(c, raw)
    assert r.status_code == 202, r.text
    [msg] = await stored(eng)
    assert msg.message.body["order_id"] == "9007199254740993"


@pytest.mark.parametrize(("phones", "expected", "raw_phone"), [
    ({}, None, None),  # every phone null: accepted with no phone
    ({"shipping": None, "customer": "+447911123456"}, "+447911123456", None),
    ({"shipping": None, "top": "+14155550100", "billing": "+14155550199"}, "+14155550100", None),
    ({"shipping": "(502) 555-0123"}, None, "(502) 555-0123"),
])
async def test_phone_sources_and_the_e164_rule(client: Client, phones: dict[str, Any],
                                               expected: str | None,
                                               raw_phone: str | None) -> None:
    c, eng = client
    payload = fixture_json("shopify_orders_create.json")
    payload["shipping_address"]["phone"] = phones.get("shipping")
    payload["phone"] = phones.get("top")
    payload["customer"]["phone"] = phones.get("customer")
    payload["billing_address"]["phone"] = phones.get("billing")
    raw = json.dumps(payload).encode()
    r = await post(c, raw)
    assert r.status_code == 202, r.text
    [msg] = await stored(eng)
    assert msg.message.body["customer_phone"] == expected
    assert msg.message.body["shopify"].get("raw_phone") == raw_phone


async def test_name_falls_back_to_billing_address(client: Client) -> None:
    c, eng = client
    payload = fixture_json("shopify_orders_create.json")
    del payload["customer"]
    payload["line_items"][0]["sku"] = None
    raw = json.dumps(payload).encode()
    assert (await post(c, raw)).status_code == 202
    [msg] = await stored(eng)
    assert msg.message.body["customer_name"] == "Steve Shipper"
    assert msg.message.body["items"][0]["sku"] == "808950810"  # the variant id


@pytest.mark.parametrize("case", ["missing", "wrong_secret", "altered", "garbage"])
async def test_bad_signature_is_401_and_nothing_is_stored(client: Client, case: str) -> None:
    c, eng = client
    raw = fixture_bytes("shopify_orders_create.json")
    h: dict[str, Any] = headers(raw)
    if case == "missing":
        del h["X-Shopify-Hmac-Sha256"]
    elif case == "wrong_secret":
        h = headers(raw, secret="another-app-secret")
    elif case == "altered":  # signed, then the amount changed on the way
        raw = raw.replace(b'"total_price": "403.00"', b'"total_price": "4.03"')
    else:
        h["X-Shopify-Hmac-Sha256"] = "ünicode, not base64".encode("latin-1")
    r = await c.post("/webhooks/shopify", content=raw, headers=h)
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"
    assert "X-Shopify-Hmac-Sha256" in r.json()["message"]
    assert await stored(eng) == []


async def test_unwanted_topic_is_acknowledged_not_queued(client: Client) -> None:
    c, eng = client
    raw = fixture_bytes("shopify_orders_create.json")
    r = await post(c, raw, topic="orders/updated")
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    assert await stored(eng) == []


def with_order_id(order_id: int) -> bytes:
    return fixture_bytes("shopify_orders_create.json").replace(
        b'"id": 820982911946154508', b'"id": %d' % order_id, 1)


async def test_same_event_twice_is_a_duplicate(client: Client) -> None:
    c, eng = client
    first = await post(c, with_order_id(1001), event_id="evt-1")
    assert first.status_code == 202
    # another body under the same event id: the event id alone makes it a duplicate
    again = await post(c, with_order_id(1002), event_id="evt-1")
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "message_id": first.json()["message_id"]}
    other = await post(c, with_order_id(1003), event_id="evt-2")
    assert other.status_code == 202
    assert sorted(m.message.body["order_id"] for m in await stored(eng)) == ["1001", "1003"]


async def test_same_event_concurrently_stores_one_message(client: Client) -> None:
    c, eng = client
    answers = await asyncio.gather(*(post(c, with_order_id(2000 + i), event_id="evt-race")
                                     for i in range(5)))
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 200, 202]
    [msg] = await stored(eng)
    assert {r.json()["message_id"] for r in answers} == {msg.message.id}


async def test_malformed_json_after_a_valid_signature_is_400(client: Client) -> None:
    c, eng = client
    raw = b'{"id": 1, "total_price": "1.00"'
    r = await post(c, raw)
    assert r.status_code == 400 and r.json()["error"] == "malformed_json"
    assert await stored(eng) == []


async def test_body_over_the_limit_is_413() -> None:
    async with running({**SOURCE, "max_body_bytes": 1000}) as (c, eng):
        raw = fixture_bytes("shopify_orders_create.json")
        assert len(raw) > 1000
        r = await post(c, raw)
        assert r.status_code == 413
        assert await stored(eng) == []


async def test_invalid_order_is_422(client: Client) -> None:
    c, eng = client
    payload = fixture_json("shopify_orders_create.json")
    del payload["total_price"]
    r = await post(c, json.dumps(payload).encode())
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["amount"]
    assert await stored(eng) == []


async def test_signature_replaces_the_api_key_and_the_rate_limit_applies() -> None:
    keys = [{"id": "shop-client", "sha256": "0" * 64}]  # ingest endpoints now need a key
    async with running({**SOURCE, "rate_limit": {"per_second": 0.001, "burst": 1}},
                       api_keys=keys) as (c, _):
        raw = fixture_bytes("shopify_orders_create.json")
        assert (await post(c, raw, event_id="a")).status_code == 202
        r = await post(c, raw, event_id="b")
        assert r.status_code == 429 and "Retry-After" in r.headers


def test_empty_secret_fails_the_check_naming_the_setting() -> None:
    src = ShopifySource("orders", ShopifyConfig.model_validate({"type": "shopify"}))
    with pytest.raises(CredentialsError) as info:
        src.check()
    assert info.value.key == "secret"
    ShopifySource("orders", ShopifyConfig.model_validate(SOURCE)).check()


def test_secret_is_not_shown_by_the_config() -> None:
    cfg = ShopifyConfig.model_validate(SOURCE)
    assert SECRET not in repr(cfg) and SECRET not in str(cfg.model_dump())
    assert SECRET not in cfg.model_dump_json()


async def test_secret_never_reaches_logs_or_answers(client: Client,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    c, _ = client
    caplog.set_level(logging.DEBUG)
    raw = fixture_bytes("shopify_orders_create.json")
    answers = [await post(c, raw), await post(c, raw, secret="wrong"),
               await c.post("/webhooks/shopify", content=raw)]
    assert [r.status_code for r in answers] == [202, 401, 401]
    expected_sig = b64_hmac(SECRET, raw)
    for r in answers:
        assert SECRET not in r.text and expected_sig not in r.text
    logged = " ".join(f"{rec.getMessage()} {rec.__dict__}" for rec in caplog.records)
    assert caplog.records and SECRET not in logged and expected_sig not in logged
