"""WebhookDestination against a receiver in httpx.MockTransport: the request, its signature (as
the signed_webhook source verifies it) and the error mapping."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from alertpipe.destinations import REGISTRY, load_builtins
from alertpipe.destinations.base import Delivery, Sent
from alertpipe.destinations.webhook import WebhookDestination, WebhookDestinationConfig
from alertpipe.errors import ConfigError, PermanentError, RetryableError
from alertpipe.message import Message
from alertpipe.sources.signed_webhook import v1_signatures, verify

URL = "https://hooks.example.test/alertpipe"
SECRET = "whsec-0123456789abcdef"
NOW = 1_714_559_400


def make(**cfg: Any) -> WebhookDestination:
    config = WebhookDestinationConfig.model_validate({"type": "webhook", "url": URL, **cfg})
    return WebhookDestination("hook", config, clock=lambda: NOW)


def delivery(body: dict[str, Any] | None = None) -> Delivery:
    message = Message.new("orders", body or {"order_id": "W-1", "amount": Decimal("349.99")})
    return Delivery(id=7, message=message, destination="hook", target=None, attempts=0)


@pytest.fixture
def seen() -> list[httpx.Request]:
    return []


def receiver(seen: list[httpx.Request],
             answer: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)
    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


@pytest.fixture
async def ok_http(seen: list[httpx.Request]) -> AsyncIterator[httpx.AsyncClient]:
    async with receiver(seen, lambda r: httpx.Response(
            204, headers={"X-Request-Id": "req-42"})) as http:
        yield http


def test_registered_as_a_destination_type() -> None:
    load_builtins()
    assert REGISTRY["webhook"] is WebhookDestination


async def test_posts_the_body_as_json_with_its_ids(seen: list[httpx.Request],
                                                   ok_http: httpx.AsyncClient) -> None:
    dest = make(headers={"Authorization": "Bearer receiver-token"})
    await dest.start(ok_http)
    d = delivery()
    sent = await dest.send(d)
    assert sent == Sent(remote_id="req-42", detail="HTTP 204")
    (req,) = seen
    assert req.method == "POST" and str(req.url) == URL
    assert req.content == b'{"order_id":"W-1","amount":349.99}'  # the Decimal exactly
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-alertpipe-event-id"] == d.message.id
    assert req.headers["x-alertpipe-channel"] == "orders"
    assert req.headers["authorization"] == "Bearer receiver-token"
    assert "x-alertpipe-signature" not in req.headers


async def test_signature_verifies_as_the_signed_webhook_source_checks_it(
        seen: list[httpx.Request], ok_http: httpx.AsyncClient) -> None:
    dest = make(secret=SECRET)
    dest.check()
    await dest.start(ok_http)
    await dest.send(delivery())
    (req,) = seen
    stamp = req.headers["x-alertpipe-timestamp"]
    assert stamp == str(NOW)
    presented = v1_signatures(req.headers["x-alertpipe-signature"])
    assert verify([SECRET], stamp, req.content, presented)
    assert not verify(["another-secret-value"], stamp, req.content, presented)
    assert not verify([SECRET], stamp, req.content + b" ", presented)


@pytest.mark.parametrize(("status", "kind", "ambiguous", "throttled"), [
    (429, RetryableError, False, True), (408, RetryableError, False, False),
    (500, RetryableError, True, False), (503, RetryableError, True, False),
    (400, PermanentError, False, False), (404, PermanentError, False, False),
    (301, PermanentError, False, False)])
async def test_error_mapping(seen: list[httpx.Request], status: int, kind: type[Exception],
                             ambiguous: bool, throttled: bool) -> None:
    async with receiver(seen, lambda r: httpx.Response(
            status, text="nope", headers={"Retry-After": "7", "Location": "/x"})) as http:
        dest = make()
        await dest.start(http)
        with pytest.raises(kind) as info:
            await dest.send(delivery())
    err = info.value
    assert getattr(err, "code", None) == status
    assert getattr(err, "ambiguous", False) is ambiguous
    assert getattr(err, "throttled", False) is throttled
    if isinstance(err, RetryableError):
        assert err.retry_after == 7
    assert len(seen) == 1  # never retried here


async def test_transport_errors_say_whether_the_request_went_out() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    for handler, ambiguous in ((refuse, False), (drop, True)):
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            dest = make()
            await dest.start(http)
            with pytest.raises(RetryableError) as info:
                await dest.send(delivery())
        assert info.value.ambiguous is ambiguous


def test_config_is_checked_and_never_echoes_secrets() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        WebhookDestinationConfig.model_validate({"type": "webhook", "url": "ftp://x.test/a"})
    blank = WebhookDestinationConfig.model_validate({"type": "webhook", "url": URL,
                                                     "secret": "  "})
    assert blank.secret is None
    with pytest.raises(ConfigError, match="at least 16"):
        make(secret="short").check()
    try:
        WebhookDestinationConfig.model_validate({"type": "webhook", "url": URL,
                                                 "secret": SECRET, "bogus": SECRET})
    except ValueError as exc:
        assert SECRET not in str(exc)
    else:  # pragma: no cover - the unknown key must be refused
        raise AssertionError("unknown key accepted")
    assert SECRET not in repr(make(secret=SECRET).config)


def test_body_is_the_message_body() -> None:
    dest = make(secret=SECRET)
    body, headers = dest.request(delivery({"text": "[alertpipe] FIRING x", "value": 0.5}))
    assert json.loads(body) == {"text": "[alertpipe] FIRING x", "value": 0.5}
    assert headers["X-Alertpipe-Signature"].startswith("v1=")
