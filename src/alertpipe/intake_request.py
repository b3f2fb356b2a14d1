"""The request as intake sees it: a Starlette ``Request``, or on the fast path a bare one.

The fast path (:mod:`alertpipe.web.fastpath`) answers ``POST`` to a source's path before any
routing; building Starlette's Request and Headers objects for it cost more per request than
parsing the order did, so it reads the ASGI scope directly into a :class:`BareRequest`.
Everything on the intake path (the API key check, the body reader, the answer) takes either,
through :class:`IntakeRequest`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from starlette.datastructures import Address
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope


class IntakeRequest(Protocol):
    """What intake reads of a request (a Starlette ``Request`` has all of it)."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def client(self) -> Address | None: ...

    def stream(self) -> AsyncIterator[bytes]: ...


class BareRequest:
    """A request read straight from the ASGI scope: the headers in a plain dict (names
    lower-case, as ASGI gives them; of repeated ones the first wins, as in Starlette's
    ``Headers.get``), the client address, and the body from ``receive``."""

    __slots__ = ("_receive", "client", "headers")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1")
            if key not in headers:
                headers[key] = value.decode("latin-1")
        self.headers = headers
        client = scope.get("client")
        self.client = Address(client[0], client[1]) if client else None
        self._receive = receive

    async def stream(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect
            body = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return


__all__ = ["BareRequest", "IntakeRequest"]
