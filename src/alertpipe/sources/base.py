"""What a source is, and the intake path every HTTP source shares.

A source class has a ``type_name``, a pydantic ``Config`` (subclass of :class:`SourceConfig`) and
builds Starlette routes for one channel. Every source reads the body with a hard size limit
(streamed, never buffered whole), checks who is calling, parses, and hands the message to
:func:`accept_and_answer`, which commits it and answers: 202 accepted, 200 duplicate (or the
outcome with ``Prefer: wait``), 409 idempotency conflict, 422, 503.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertpipe.errors import Backpressure, StoreUnavailable, ValidationFailed
from alertpipe.intake_request import IntakeRequest
from alertpipe.steps.expr import ExprError
from alertpipe.store.base import MessageKey, StoredMessage

if TYPE_CHECKING:
    from alertpipe.engine.core import Engine
    from alertpipe.metrics import IntakeCounts

log = logging.getLogger("alertpipe.source")
_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d+(?:\.\d+)?)\"?", re.IGNORECASE)


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_second: float = Field(gt=0)
    burst: int = Field(20, ge=1)


class SourceConfig(BaseModel):
    """Settings every HTTP source understands."""

    model_config = ConfigDict(extra="forbid")
    type: str
    path: str
    max_body_bytes: int = Field(1024 * 1024, gt=0)
    max_depth: int = Field(64, ge=1)
    idempotency_window_seconds: float = Field(24 * 3600, gt=0)
    rate_limit: RateLimit | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with '/'")
        return v


class Source(abc.ABC):
    type_name: ClassVar[str]
    Config: ClassVar[type[SourceConfig]]

    def __init__(self, channel: str, config: Any) -> None:
        self.channel = channel
        self.config = config

    def check(self) -> None:
        """Check secrets and settings at start-up; raise CredentialsError/ConfigError."""

    @abc.abstractmethod
    def routes(self, engine: Engine) -> list[Route]:
        """The Starlette routes of this source."""


SOURCES: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    SOURCES[cls.type_name] = cls
    return cls


# -- answers -------------------------------------------------------------------------------
def reject(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(max(1, math.ceil(extra.pop("retry_after"))))
    return JSONResponse({"status": "rejected", "error": error, "message": message, **extra},
                        status_code=status, headers=headers)


class BodyTooLarge(Exception):
    pass


async def read_limited(request: IntakeRequest, limit: int) -> bytes:
    """The raw body, refusing (BodyTooLarge) as soon as it passes ``limit`` bytes."""
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


def fingerprint(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


async def accept_and_answer(
        engine: Engine, channel: str, request: IntakeRequest, body: dict[str, Any], raw: bytes,
        meta: Mapping[str, Any], *, keys: Sequence[MessageKey] = (),
        log_extra: Callable[[], Mapping[str, Any]] | None = None) -> Response:
    """Commit one parsed message and answer the client."""
    wait = prefer_wait(request.headers.get("prefer"), engine.settings.engine.max_wait_seconds)
    event = asyncio.Event() if wait else None
    try:
        accepted = await engine.accept(channel, body, raw, meta, waiter=event, keys=keys)
    except ValidationFailed as exc:
        _count(engine, channel, "rejected", "validation_failed")
        return reject(422, "validation_failed", "the message has invalid fields",
                      errors=[e.as_dict() for e in exc.errors])
    except ExprError as exc:  # an expression met data it cannot handle (e.g. "abc" > 300)
        _count(engine, channel, "rejected", "validation_failed")
        return reject(422, "validation_failed", "the message cannot be routed",
                      errors=[{"field": "(expression)", "message": exc.reason,
                               "type": "expression"}])
    except StoreUnavailable as exc:
        log.error("store cannot accept", extra={"channel": channel, "error": str(exc)})
        _count(engine, channel, "unavailable",
               "backpressure" if isinstance(exc, Backpressure) else "store")
        return reject(503, "unavailable", str(exc), retry_after=exc.retry_after)
    except Exception:
        log.exception("a step failed", extra={"channel": channel})
        _count(engine, channel, "error", "internal_error")
        return reject(500, "internal_error", "a step of this channel failed; nothing was stored")
    mid = accepted.message_id
    if accepted.conflict is not None:
        return _duplicate_answer(channel, accepted.conflict, accepted.fingerprint, mid,
                                 engine.metrics.intake[channel])
    engine.metrics.intake[channel].accepted += 1  # the one metric on the hot path: an int
    if log.isEnabledFor(logging.DEBUG):  # the extra dict is built per message otherwise
        log.debug("accepted", extra={"message_id": mid, "channel": channel,
                                     "routes": list(accepted.routes)})
    if event is not None and wait:
        try:
            return await _wait_for_outcome(engine, mid, event, wait)
        finally:
            engine.forget_waiter(mid, event)
    return AcceptedResponse(mid)


class AcceptedResponse(Response):
    """``202 {"status":"accepted","message_id":…}`` (the id is a UUID: nothing to escape), its
    two headers written directly rather than assembled by ``Response.init_headers``: the answer
    to almost every intake request."""

    media_type = "application/json"

    def __init__(self, mid: str) -> None:
        self.status_code = 202
        self.background = None
        self.body = b'{"status":"accepted","message_id":"%s"}' % mid.encode()
        self.raw_headers = [(b"content-length", b"%d" % len(self.body)),
                            (b"content-type", b"application/json")]


def _count(engine: Engine, channel: str, outcome: str, reason: str) -> None:
    counts = engine.metrics.intake.get(channel)
    if counts is not None:
        counts.count(outcome, reason)


def _duplicate_answer(channel: str, key: MessageKey, stored_fp: str | None,
                      mid: str, counts: IntakeCounts) -> Response:
    if key.kind == "idempotency":
        if stored_fp != key.fingerprint:
            counts.count("rejected", "idempotency_conflict")
            return reject(409, "idempotency_conflict",
                          "this Idempotency-Key was already used with a different request body; "
                          "use a new key for a new request", message_id=mid)
        log.info("idempotent replay", extra={"message_id": mid, "channel": channel})
        counts.count("duplicate", "idempotency")
        return JSONResponse({"status": "accepted", "message_id": mid}, status_code=202,
                            headers={"Idempotent-Replayed": "true"})
    log.info("duplicate", extra={"message_id": mid, "channel": channel, "key_kind": key.kind})
    counts.count("duplicate", key.kind)
    return JSONResponse({"status": "duplicate", "message_id": mid}, status_code=200)


async def _wait_for_outcome(engine: Engine, mid: str, event: asyncio.Event,
                            wait: float) -> Response:
    done, stored = await engine.wait_final(mid, wait, event)
    if done and stored is not None:
        return JSONResponse(outcome_body(stored), status_code=200)
    body = outcome_body(stored) if stored else {"message_id": mid}
    body["status"] = "accepted"
    return JSONResponse(body, status_code=202)
