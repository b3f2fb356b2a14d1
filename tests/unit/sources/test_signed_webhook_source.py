"""Generic signed webhooks (Stripe-style v1 signatures) through the real ASGI app."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from webhook_sources_support import Client, running, stored

from alertpipe.errors import CredentialsError
from alertpipe.sources.signed_webhook import (
    SignedWebhookConfig,
    SignedWebhookSource,
    sign,
    v1_signatures,
)

NEW, OLD = "whsec_new_2f1c9a", "whsec_old_77be04"
NOW = 1_714_559_400
SOURCE = {"type": "signed_webhook", "secret": NEW, "secrets": [OLD]}
ORDER = json.dumps({"order_id": "A-1001", "customer_name": "Ada Lovelace",
                    "customer_phone": "+14155550123", "amount": "349.99", "currency": "USD",
                    "items": [{"sku": "WIDGET-1", "qty": 2, "price": "174.995"}],
                    "created_at": "2024-05-01T10:30:00Z"}).encode()


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with running(SOURCE) as (c, eng):
        eng.channels["orders"].source.clock = lambda: float(NOW)
        yield c, eng


def signed(body: bytes, *, ts: int = NOW, secrets: tuple[str, ...] = (NEW,),
           extra: dict[str, str] | None = None) -> dict[str, str]:
    sig = ",".join(sign(s, ts, body) for s in secrets)
    return {"Content-Type": "application/json", "X-Alertpipe-Timestamp": str(ts),
            "X-Alertpipe-Signature": sig, **(extra or {})}


async def post(c: httpx.AsyncClient, body: bytes, h: dict[str, str]) -> httpx.Response:
    return await c.post("/webhooks/orders", content=body, headers=h)


def test_sign_is_hmac_sha256_hex_over_timestamp_dot_body() -> None:
    expected = hmac.new(b"k", b"1714559400." + ORDER, hashlib.sha256).hexdigest()
    assert sign("k", 1714559400, ORDER) == f"v1={expected}"
    assert v1_signatures(f"v0=aa, v1={expected} ,v1=BB,t=5") == [expected, "bb"]


async def test_valid_signature_is_accepted(client: Client) -> None:
    c, eng = client
    r = await post(c, ORDER, signed(ORDER))
    assert r.status_code == 202, r.text
    [msg] = await stored(eng)
    body = msg.message.body
    assert body["order_id"] == "A-1001" and body["amount"] == Decimal("349.99")
    assert body["items"][0]["price"] == Decimal("174.995") and body["high_value"] is True
    assert msg.message.meta["signed_at"] == NOW
    assert msg.message.raw == ORDER


@pytest.mark.parametrize("offset", [-300, 300])
async def test_timestamp_at_the_tolerance_edge_is_accepted(client: Client, offset: int) -> None:
    c, _ = client
    assert (await post(c, ORDER, signed(ORDER, ts=NOW + offset))).status_code == 202


@pytest.mark.parametrize("offset", [-301, 301, -86_400])
async def test_timestamp_outside_tolerance_is_401(client: Client, offset: int) -> None:
    c, eng = client
    r = await post(c, ORDER, signed(ORDER, ts=NOW + offset))
    assert r.status_code == 401 and "300 seconds" in r.json()["message"]
    assert await stored(eng) == []


async def test_old_timestamp_is_refused_by_the_real_clock() -> None:
    async with running(SOURCE) as (c, eng):
        old = int(time.time()) - 3600
        assert (await post(c, ORDER, signed(ORDER, ts=old))).status_code == 401
        fresh = int(time.time())
        assert (await post(c, ORDER, signed(ORDER, ts=fresh))).status_code == 202
        assert len(await stored(eng)) == 1


@pytest.mark.parametrize(("stamp", "fragment"), [
    (None, "missing"), ("", "missing"), ("1714559400.5", "integer"), ("-1714559400", "integer"),
    ("2024-05-01T10:30:00Z", "integer"), ("１７１４５５９４００", "integer")])
async def test_missing_or_malformed_timestamp_is_401(client: Client, stamp: str | None,
                                                     fragment: str) -> None:
    c, eng = client
    h = signed(ORDER)
    del h["X-Alertpipe-Timestamp"]
    hb = [(k.encode(), v.encode()) for k, v in h.items()]
    if stamp is not None:
        hb.append((b"X-Alertpipe-Timestamp", stamp.encode("utf-8")))
    r = await c.post("/webhooks/orders", content=ORDER, headers=hb)
    assert r.status_code == 401 and fragment in r.json()["message"]
    assert await stored(eng) == []


@pytest.mark.parametrize("secrets", [(NEW,), (OLD,), (OLD, NEW), ("retired", NEW)])
async def test_rotation_accepts_either_configured_secret(client: Client,
                                                         secrets: tuple[str, ...]) -> None:
    c, _ = client
    assert (await post(c, ORDER, signed(ORDER, secrets=secrets))).status_code == 202


@pytest.mark.parametrize("case", ["unknown_secret", "altered", "missing", "no_v1", "retimed"])
async def test_bad_signature_is_401_and_nothing_is_stored(client: Client, case: str) -> None:
    c, eng = client
    body, h = ORDER, signed(ORDER)
    if case == "unknown_secret":
        h = signed(ORDER, secrets=("retired",))
    elif case == "altered":
        body = ORDER.replace(b"349.99", b"3.49")
    elif case == "missing":
        del h["X-Alertpipe-Signature"]
    elif case == "no_v1":
        h["X-Alertpipe-Signature"] = h["X-Alertpipe-Signature"].replace("v1=", "v0=")
    else:  # a captured request replayed with a fresh timestamp
        h["X-Alertpipe-Timestamp"] = str(NOW + 10)
    r = await post(c, body, h)
    assert r.status_code == 401 and "X-Alertpipe-Signature" in r.json()["message"]
    assert await stored(eng) == []


async def test_event_id_makes_a_replay_a_duplicate(client: Client) -> None:
    c, eng = client
    first = await post(c, ORDER, signed(ORDER, extra={"X-Alertpipe-Event-Id": "evt_1"}))
    assert first.status_code == 202
    other = ORDER.replace(b"A-1001", b"A-1002")
    again = await post(c, other, signed(other, extra={"X-Alertpipe-Event-Id": "evt_1"}))
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "message_id": first.json()["message_id"]}
    assert len(await stored(eng)) == 1


async def test_idempotency_key_has_the_orders_endpoint_semantics(client: Client) -> None:
    c, _ = client
    key = {"Idempotency-Key": "idem-1"}
    first = await post(c, ORDER, signed(ORDER, extra=key))
    replay = await post(c, ORDER, signed(ORDER, ts=NOW + 5, extra=key))
    assert replay.status_code == 202 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["message_id"] == first.json()["message_id"]
    other = ORDER.replace(b"A-1001", b"A-1009")
    assert (await post(c, other, signed(other, extra=key))).status_code == 409


async def test_signed_malformed_json_is_400(client: Client) -> None:
    c, eng = client
    body = b'{"order_id": "A-1", "amount": NaN}'
    r = await post(c, body, signed(body))
    assert r.status_code == 400 and "NaN" in r.json()["message"]
    assert await stored(eng) == []


def test_no_secret_fails_the_check() -> None:
    cfg = SignedWebhookConfig.model_validate({"type": "signed_webhook", "secrets": [""]})
    with pytest.raises(CredentialsError) as info:
        SignedWebhookSource("orders", cfg).check()
    assert info.value.key == "secret"
    only_rotated = SignedWebhookConfig.model_validate({"type": "signed_webhook",
                                                       "secrets": [OLD]})
    SignedWebhookSource("orders", only_rotated).check()
    assert OLD not in repr(only_rotated) and NEW not in repr(
        SignedWebhookConfig.model_validate(SOURCE))
