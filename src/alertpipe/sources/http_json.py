"""The HTTP JSON source: ``POST /orders`` (path configurable) accepts one JSON object.

Answers: 202 after the durable commit; 400 malformed JSON; 413 body over the limit (streamed
and cut off, never buffered whole); 415 not JSON; 422 field errors; 503 + Retry-After when the
store cannot accept. ``Prefer: wait=N`` waits up to N s for every delivery to finish and then
answers 200 with each destination's outcome (or 202 if some are still pending).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alertpipe.config.model import SourceSettings
from alertpipe.engine.core import Engine
from alertpipe.errors import MalformedInput, StoreUnavailable, ValidationFailed
from alertpipe.sources.jsonparse import parse_json_object
from alertpipe.steps.expr import ExprError
from alertpipe.store.base import StoredMessage

log = logging.getLogger("alertpipe.source")
_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$")
_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d+(?:\.\d+)?)\"?", re.IGNORECASE)


def reject(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(math.ceil(extra.pop("retry_after")))
    return JSONResponse({"status": "rejected", "error": error, "message": message, **extra},
                        status_code=status, headers=headers)


class BodyTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def prefer_wait(header: str | None, cap: float) -> float | None:
    if not header:
        return None
    m = _WAIT.search(header)
    return None if m is None else min(float(m.group(1)), cap)


def outcome_body(stored: StoredMessage) -> dict[str, Any]:
    ds = stored.deliveries
    if not ds:
        status = "filtered"
    elif all(d.status == "delivered" for d in ds):
        status = "delivered"
    elif any(d.status == "delivered" for d in ds):
        status = "partial"
    else:
        status = "failed"
    return {"status": status, "message_id": stored.message.id, "deliveries": [
        {"destination": d.destination, "target": d.target, "status": d.status,
         "attempts": d.attempts, "remote_id": d.remote_id, "error": d.last_error}
        for d in ds]}


def make_endpoint(engine: Engine, channel: str,
                  settings: SourceSettings) -> Callable[[Request], Awaitable[Response]]:
    limit = settings.max_body_bytes
    cap = engine.settings.engine.max_wait_seconds

    async def endpoint(request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not _JSON_TYPE.match(ctype):
            return reject(415, "unsupported_media_type",
                          f"Content-Type must be application/json, got {ctype or 'none'!r}")
        try:
            raw = await read_limited(request, limit)
        except BodyTooLarge:
            return reject(413, "body_too_large", f"the body is larger than {limit} bytes")
        try:
            body = parse_json_object(raw, max_depth=settings.max_depth)
        except MalformedInput as exc:
            return reject(400, "malformed_json", str(exc))
        wait = prefer_wait(request.headers.get("prefer"), cap)
        event = asyncio.Event() if wait else None
        meta = {"remote_addr": request.client.host if request.client else None}
        try:
            accepted = await engine.accept(channel, body, raw, meta, waiter=event)
        except ValidationFailed as exc:
            return reject(422, "validation_failed", "the order has invalid fields",
                          errors=[e.as_dict() for e in exc.errors])
        except ExprError as exc:  # an expression met data it cannot handle (e.g. "abc" > 300)
            return reject(422, "validation_failed", "the order cannot be routed",
                          errors=[{"field": "(expression)", "message": exc.reason,
                                   "type": "expression"}])
        except StoreUnavailable as exc:
            log.error("store cannot accept", extra={"channel": channel, "error": str(exc)})
            return reject(503, "store_unavailable", "the store cannot accept messages right now",
                          retry_after=exc.retry_after)
        except Exception:
            log.exception("a step failed", extra={"channel": channel})
            return reject(500, "internal_error", "a step of this channel failed; nothing was "
                          "stored")
        mid = accepted.message.id
        log.info("accepted", extra={"message_id": mid, "channel": channel,
                                    "routes": list(accepted.routes)})
        if event is not None and wait:
            try:
                return await _wait_for_outcome(engine, mid, event, wait)
            finally:
                engine.forget_waiter(mid, event)
        return JSONResponse({"status": "accepted", "message_id": mid}, status_code=202)

    return endpoint


async def _wait_for_outcome(engine: Engine, mid: str, event: asyncio.Event,
                            wait: float) -> Response:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        done, stored = await engine.outcome(mid)
        if done and stored is not None:
            return JSONResponse(outcome_body(stored), status_code=200)
        remaining = deadline - loop.time()
        if remaining <= 0:
            body = outcome_body(stored) if stored else {"message_id": mid}
            body["status"] = "accepted"
            return JSONResponse(body, status_code=202)
        event.clear()
        try:
            await asyncio.wait_for(event.wait(), timeout=remaining)
        except TimeoutError:
            pass
