"""WooCommerce order webhooks through the real ASGI app."""

from __future__ import annotations

import json
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
from alertpipe.sources.woocommerce import WooCommerceConfig, WooCommerceSource

SECRET = "wc-webhook-secret-9f8e7d6c"
SOURCE = {"type": "woocommerce", "secret": SECRET}
client = client_fixture(SOURCE)


def headers(raw: bytes, *, delivery: str = "36e520ebabc2fa725092ff4a47acedf2",
            topic: str = "order.created", secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "User-Agent": "WooCommerce/8.9.1 Hookshot (WordPress/6.5.2)",
            "X-WC-Webhook-Source": "https://shop.example.com/",
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": "order",
            "X-WC-Webhook-Event": topic.split(".")[1],
            "X-WC-Webhook-Signature": b64_hmac(secret, raw),
            "X-WC-Webhook-ID": "3",
            "X-WC-Webhook-Delivery-ID": delivery}


async def post(c: httpx.AsyncClient, raw: bytes, **kw: Any) -> httpx.Response:
    return await c.post("/webhooks/woocommerce", content=raw, headers=headers(raw, **kw))


async def test_order_payload_is_mapped_onto_the_order(client: Client) -> None:
    c, eng = client
    raw = fixture_bytes("woocommerce_order_created.json")
    r = await post(c, raw)
    assert r.status_code == 202, r.text
    [msg] = await stored(eng)
    body = msg.message.body
    assert body["order_id"] == "4750" and body["woocommerce"]["number"] == "4750"
    assert body["amount"] == Decimal("350.00") and str(body["amount"]) == "350.00"
    assert body["currency"] == "EUR"
    assert body["customer_name"] == "María García"
    assert body["customer_phone"] == "+34600123456"
    assert body["created_at"] == "2024-05-01T10:30:00+00:00"  # date_created_gmt, as UTC
    items = [(i["sku"], i["qty"], i["price"]) for i in body["items"]]
    # unit price before discount = subtotal / quantity, exact in Decimal; the blank sku falls
    # back to the variation id
    assert items == [("WOO-SINGLE-1", 2, Decimal("125.00")), ("23", 3, Decimal("33.333333"))]
    assert body["items"][1]["line_total"] == "90.00"
    assert body["high_value"] is True
    assert "order_key" not in json.dumps(body["woocommerce"])
    meta = msg.message.meta
    assert meta["delivery_id"] == "36e520ebabc2fa725092ff4a47acedf2"
    assert meta["topic"] == "order.created" and meta["resource"] == "order"
    assert meta["source"] == "https://shop.example.com/" and meta["webhook_id"] == "3"


async def test_price_number_is_used_without_subtotal(client: Client) -> None:
    c, eng = client
    raw = fixture_bytes("woocommerce_order_created.json").replace(
        b'"subtotal": "250.00",', b"", 1).replace(b'"price": 125', b'"price": 124.99', 1)
    assert (await post(c, raw)).status_code == 202
    [msg] = await stored(eng)
    assert msg.message.body["items"][0]["price"] == Decimal("124.99")


async def test_local_phone_is_kept_aside_and_does_not_reject(client: Client) -> None:
    c, eng = client
    payload = fixture_json("woocommerce_order_created.json")
    payload["billing"]["phone"] = "600 12 34 56"
    assert (await post(c, json.dumps(payload).encode())).status_code == 202
    [msg] = await stored(eng)
    assert msg.message.body["customer_phone"] is None
    assert msg.message.body["woocommerce"]["raw_phone"] == "600 12 34 56"


async def test_creation_ping_is_ok_and_not_queued(client: Client) -> None:
    c, eng = client
    r = await c.post("/webhooks/woocommerce", content=b"webhook_id=3",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert await stored(eng) == []


async def test_other_form_bodies_need_a_signature(client: Client) -> None:
    c, eng = client
    r = await c.post("/webhooks/woocommerce", content=b"webhook_id=3&total=999",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 401
    assert await stored(eng) == []


@pytest.mark.parametrize("case", ["missing", "wrong_secret", "altered"])
async def test_bad_signature_is_401_and_nothing_is_stored(client: Client, case: str) -> None:
    c, eng = client
    raw = fixture_bytes("woocommerce_order_created.json")
    h = headers(raw, secret="not-the-secret" if case == "wrong_secret" else SECRET)
    if case == "missing":
        del h["X-WC-Webhook-Signature"]
    if case == "altered":
        raw = raw.replace(b'"total": "350.00"', b'"total": "35.00"')
    r = await c.post("/webhooks/woocommerce", content=raw, headers=h)
    assert r.status_code == 401
    assert "X-WC-Webhook-Signature" in r.json()["message"]
    assert await stored(eng) == []


async def test_topics_are_configurable(client: Client) -> None:
    c, eng = client
    raw = fixture_bytes("woocommerce_order_created.json")
    r = await post(c, raw, topic="order.deleted")
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    assert await stored(eng) == []
    r = await post(c, raw, topic="order.updated")
    assert r.status_code == 202


async def test_same_delivery_id_is_a_duplicate(client: Client) -> None:
    c, eng = client
    raw = fixture_bytes("woocommerce_order_created.json")
    first = await post(c, raw, delivery="d-1")
    other_order = raw.replace(b'"id": 4750', b'"id": 4751', 1)
    again = await post(c, other_order, delivery="d-1")
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "message_id": first.json()["message_id"]}
    assert len(await stored(eng)) == 1


def test_empty_secret_fails_the_check_naming_the_setting() -> None:
    src = WooCommerceSource("orders", WooCommerceConfig.model_validate({"type": "woocommerce"}))
    with pytest.raises(CredentialsError) as info:
        src.check()
    assert info.value.key == "secret" and "secret" in str(info.value)


async def test_engine_refuses_to_start_without_secret() -> None:
    with pytest.raises(CredentialsError) as info:
        async with running({"type": "woocommerce"}):
            pass
    assert info.value.key == "source.secret" and info.value.channel == "orders"
