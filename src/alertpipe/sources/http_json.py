"""The HTTP JSON source: ``POST /orders`` (path configurable) accepts one JSON object.

Answers: 202 after the durable commit; 400 malformed JSON; 401/403 API key; 409 an
Idempotency-Key reused with another body; 413 body over the limit (streamed and cut off, never
buffered whole); 415 not JSON; 422 field errors; 429 rate limited; 503 + Retry-After when the
store cannot accept or the channel's backlog is full. ``Prefer: wait=N`` waits up to N s for every
delivery and answers 200 with each destination's outcome (202 if some are still pending).

``Idempotency-Key`` (Stripe's semantics): the same key with the same body replays the original
202 (header ``Idempotent-Replayed: true``); with another body, 409; concurrent requests with one
key store one message; keys are kept ``idempotency_window_seconds`` (24 h).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from alertpipe.errors import MalformedInput
from alertpipe.intake_request import BareRequest, IntakeRequest
from alertpipe.sources.base import (
    BodyTooLarge,
    Source,
    SourceConfig,
    accept_and_answer,
    fingerprint,
    read_limited,
    register,
    reject,
)
from alertpipe.sources.jsonparse import parse_json_object
from alertpipe.store.base import MessageKey

if TYPE_CHECKING:
    from alertpipe.engine.core import Engine

log = logging.getLogger("alertpipe.source")
_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$")


class HttpJsonConfig(SourceConfig):
    type: str = "http_json"
    path: str = "/orders"


@register
class HttpJsonSource(Source):
    type_name = "http_json"
    Config = HttpJsonConfig

    def routes(self, engine: Engine) -> list[Route]:
        return [Route(self.config.path, self.endpoint(engine), methods=["POST"])]

    def fast_path(self, engine: Engine) -> tuple[str, ASGIApp]:
        """``(path, app)``: the same endpoint as a bare ASGI app, which the engine's HTTP app
        calls for ``POST path`` before any routing or middleware (the hot path of intake)."""
        endpoint = self.endpoint(engine)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                response = await endpoint(BareRequest(scope, receive))
            except Exception:
                log.exception("intake failed", extra={"channel": self.channel})
                response = reject(500, "internal_error", "the request could not be handled; "
                                  "nothing was stored")
            await response(scope, receive, send)

        return self.config.path, app

    def endpoint(self, engine: Engine) -> Any:
        cfg: HttpJsonConfig = self.config
        channel = self.channel

        async def endpoint(request: IntakeRequest) -> Response:
            gate = engine.gate(request, channel, cfg)
            if isinstance(gate, Response):
                return gate
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if not _JSON_TYPE.match(ctype):
                return reject(415, "unsupported_media_type",
                              f"Content-Type must be application/json, got {ctype or 'none'!r}")
            idem = request.headers.get("idempotency-key")
            if idem is not None and not 1 <= len(idem) <= 255:
                return reject(400, "bad_idempotency_key",
                              "Idempotency-Key must be 1 to 255 characters")
            try:
                raw = await read_limited(request, cfg.max_body_bytes)
            except BodyTooLarge:
                return reject(413, "body_too_large",
                              f"the body is larger than {cfg.max_body_bytes} bytes")
            try:
                body = parse_json_object(raw, max_depth=cfg.max_depth)
            except MalformedInput as exc:
                return reject(400, "malformed_json", str(exc))
            keys = [] if idem is None else [
                MessageKey("idempotency", idem, cfg.idempotency_window_seconds,
                           fingerprint(raw))]
            meta = {"remote_addr": request.client.host if request.client else None,
                    "client": gate}
            return await accept_and_answer(engine, channel, request, body, raw, meta, keys=keys)

        return endpoint
