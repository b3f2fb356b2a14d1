"""The intake fast path's request (alertpipe.intake_request.BareRequest) and its 202 answer."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from alertpipe.intake_request import BareRequest
from alertpipe.sources.base import AcceptedResponse, BodyTooLarge, read_limited

SCOPE: dict[str, Any] = {
    "type": "http", "method": "POST", "path": "/orders", "query_string": b"",
    "client": ("10.1.2.3", 5555),
    "headers": [(b"content-type", b"application/json"), (b"x-api-key", b"first"),
                (b"x-api-key", b"second"), (b"prefer", b"wait=3")],
}


def receiver(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


@pytest.mark.parametrize("name", ["content-type", "x-api-key", "prefer", "idempotency-key"])
def test_headers_read_as_starlette_reads_them(name: str) -> None:
    bare = BareRequest(SCOPE, receiver())
    starlette = Request(SCOPE, receiver())
    assert bare.headers.get(name) == starlette.headers.get(name)
    assert bare.client == starlette.client == ("10.1.2.3", 5555)


def test_no_client_in_the_scope() -> None:
    assert BareRequest({**SCOPE, "client": None}, receiver()).client is None


async def test_body_in_chunks_is_joined() -> None:
    request = BareRequest(SCOPE, receiver(
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"1}", "more_body": False}))
    assert await read_limited(request, 100) == b'{"a":1}'


async def test_body_over_the_limit_is_refused_while_streaming() -> None:
    request = BareRequest(SCOPE, receiver(
        {"type": "http.request", "body": b"x" * 60, "more_body": True},
        {"type": "http.request", "body": b"x" * 60, "more_body": True}))
    with pytest.raises(BodyTooLarge):
        await read_limited(request, 100)


async def test_client_gone_mid_body() -> None:
    request = BareRequest(SCOPE, receiver(
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"}))
    with pytest.raises(ClientDisconnect):
        await read_limited(request, 100)


async def test_accepted_answer_on_the_wire() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    mid = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
    response = AcceptedResponse(mid)
    await response(SCOPE, receiver(), send)
    body = b'{"status":"accepted","message_id":"%s"}' % mid.encode()
    assert sent == [
        {"type": "http.response.start", "status": 202,
         "headers": [(b"content-length", str(len(body)).encode()),
                     (b"content-type", b"application/json")]},
        {"type": "http.response.body", "body": body},
    ]
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
