"""What the signed-webhook sources (shopify, woocommerce, signed_webhook) share.

A platform webhook cannot carry one of our API keys, so these sources authenticate each request
by its HMAC signature instead of :meth:`Engine.gate`; only the per-client rate limit of ``gate``
is applied (:class:`WebhookIntake.rate_limited`, before the body is read). The order of work is
fixed, and :class:`WebhookSource` runs it for every platform: rate limit, the platform's header
checks (:meth:`~WebhookSource.pre_check`), read the raw bytes with the size limit (413), verify
the signature over those exact bytes in constant time (401, :meth:`~WebhookSource.verify`), drop
unwanted topics (:meth:`~WebhookSource.skip`), and only then parse (400), map and accept. A
rejected request is never queued, and no secret, signature or body ever reaches a log line or an
answer. A platform file holds only its config, its verification and its mapping.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertpipe.auth import ClientRateLimiter, too_many
from alertpipe.errors import CredentialsError, MalformedInput
from alertpipe.sources.base import (
    BodyTooLarge,
    Source,
    SourceConfig,
    accept_and_answer,
    read_limited,
    reject,
)
from alertpipe.sources.jsonparse import parse_json_object
from alertpipe.store.base import MessageKey

if TYPE_CHECKING:
    from alertpipe.engine.core import Engine

log = logging.getLogger("alertpipe.source.webhook")

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_PLACES = Decimal("0.000001")  # the order schema keeps at most 6 decimal places


class WebhookConfig(SourceConfig):
    """Settings of a webhook source: the shared secret and how long delivery ids are kept."""

    secret: SecretStr = SecretStr("")
    dedupe_window_seconds: float = Field(48 * 3600, gt=0)


def require_secret(value: SecretStr | None, what: str) -> None:
    """Raise :class:`CredentialsError` (naming the setting, never the value) when empty."""
    if value is None or not value.get_secret_value():
        raise CredentialsError(f"the webhook secret is empty; set it to {what}", key="secret")


# -- signatures ------------------------------------------------------------------------------
def hmac_sha256(secret: str, data: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), data, hashlib.sha256).digest()


def base64_hmac(secret: str, raw: bytes) -> str:
    """``base64(HMAC-SHA256(secret, raw))``: what Shopify and WooCommerce send."""
    return base64.b64encode(hmac_sha256(secret, raw)).decode("ascii")


def same(expected: str, presented: str) -> bool:
    """Constant-time comparison of two header values (any characters, no exception)."""
    return hmac.compare_digest(expected.encode("utf-8"),
                               presented.strip().encode("utf-8", "replace"))


def verify_base64_hmac(secret: str, raw: bytes, presented: str) -> bool:
    """True when ``presented`` is the base64 HMAC-SHA256 of ``raw``. An empty secret never
    verifies (an HMAC keyed with nothing is forgeable by anyone)."""
    if not secret:
        return False
    return same(base64_hmac(secret, raw), presented)


def unauthorized(message: str) -> JSONResponse:
    return reject(401, "unauthorized", message)


def client_of(request: Request) -> str:
    return f"ip:{request.client.host if request.client else 'unknown'}"


def refuse(channel: str, request: Request, reason: str) -> JSONResponse:
    """Log (without secrets or body) and answer 401."""
    log.info("webhook refused", extra={"channel": channel, "reason": reason,
                                       "client": client_of(request)})
    return unauthorized(reason)


# -- intake ----------------------------------------------------------------------------------
class WebhookIntake:
    """Per-source state for the request steps every webhook source runs."""

    def __init__(self, channel: str, config: WebhookConfig) -> None:
        self.channel = channel
        self.config = config
        self._limiter: ClientRateLimiter | None = None

    def client(self, request: Request) -> str:
        return client_of(request)

    def rate_limited(self, request: Request) -> Response | None:
        """429 when this client is over ``rate_limit`` (the part of ``Engine.gate`` that applies
        to a webhook; its API-key check does not, the signature takes its place)."""
        limit = self.config.rate_limit
        if limit is None:
            return None
        if self._limiter is None:
            self._limiter = ClientRateLimiter(limit.per_second, limit.burst)
        wait = self._limiter.take(self.client(request))
        if wait > 0:
            log.info("rate limited", extra={"channel": self.channel,
                                            "client": self.client(request)})
            return too_many(wait)
        return None

    async def read(self, request: Request) -> bytes | Response:
        """The raw body, or 413."""
        try:
            return await read_limited(request, self.config.max_body_bytes)
        except BodyTooLarge:
            return reject(413, "body_too_large",
                          f"the body is larger than {self.config.max_body_bytes} bytes")

    def parse(self, raw: bytes) -> dict[str, Any] | Response:
        """The parsed JSON object, or 400. Call only after the signature was verified."""
        try:
            return parse_json_object(raw, max_depth=self.config.max_depth)
        except MalformedInput as exc:
            return reject(400, "malformed_json", str(exc))


class WebhookSource(Source):
    """One ``POST`` route running the fixed webhook flow; subclasses fill in the hooks.

    The class attributes describe a platform's headers: ``meta_headers`` (``{meta key: header}``,
    copied into the message meta when present), ``topic_header`` (when set, a topic not in the
    config's ``topics`` is acknowledged :func:`ignored`) and ``event_headers`` (the first one
    present is the delivery's dedupe key, kept ``dedupe_window_seconds``).
    """

    meta_headers: ClassVar[Mapping[str, str]] = {}
    topic_header: ClassVar[str | None] = None
    event_headers: ClassVar[tuple[str, ...]] = ()

    def routes(self, engine: Engine) -> list[Route]:
        return [Route(self.config.path, self.endpoint(engine), methods=["POST"])]

    # -- hooks ---------------------------------------------------------------------------------
    def pre_check(self, request: Request) -> Response | None:
        """An answer that refuses the request before its body is read, or None."""
        return None

    @abc.abstractmethod
    def verify(self, request: Request, raw: bytes) -> Response | None:
        """The answer to a request that is not (or need not be) verified, or None to go on."""

    def skip(self, request: Request) -> Response | None:
        """200 ``ignored`` for a verified event whose topic this channel does not want."""
        if self.topic_header is None:
            return None
        topic = request.headers.get(self.topic_header)
        return None if topic in self.config.topics else ignored(topic)

    def map(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The platform's payload as an alertpipe message body."""
        return payload

    def keys(self, request: Request, raw: bytes) -> list[MessageKey]:
        """The dedupe / idempotency keys of this request: the platform's event id, if any."""
        event = next((v for h in self.event_headers if (v := request.headers.get(h))), None)
        return [] if not event else [
            MessageKey("event", event, self.config.dedupe_window_seconds)]

    def meta(self, request: Request) -> dict[str, Any]:
        """The message meta: the ``meta_headers`` present, then the caller's address."""
        return {**header_meta(request, self.meta_headers),
                "remote_addr": request.client.host if request.client else None}

    def refused(self, request: Request, reason: str) -> JSONResponse:
        """401 with ``reason``, logged without secrets or body."""
        return refuse(self.channel, request, reason)

    def base64_signed(self, request: Request, raw: bytes, header: str,
                      name: str) -> Response | None:
        """None when ``header`` holds the base64 HMAC-SHA256 of ``raw`` under ``secret``; else
        the 401 naming the header as ``name`` (its spelling in the platform's documentation)."""
        presented = request.headers.get(header)
        if not presented:
            return self.refused(request, f"the {name} header is missing")
        if not verify_base64_hmac(self.config.secret.get_secret_value(), raw, presented):
            return self.refused(request, f"the {name} signature does not match the body")
        return None

    # -- the flow ------------------------------------------------------------------------------
    def endpoint(self, engine: Engine) -> Callable[[Request], Awaitable[Response]]:
        intake = WebhookIntake(self.channel, self.config)

        async def endpoint(request: Request) -> Response:
            if (limited := intake.rate_limited(request)) is not None:
                return limited
            if (early := self.pre_check(request)) is not None:
                return early
            raw = await intake.read(request)
            if isinstance(raw, Response):
                return raw
            if (answer := self.verify(request, raw)) is not None:
                return answer
            if (skipped := self.skip(request)) is not None:
                return skipped
            payload = intake.parse(raw)
            if isinstance(payload, Response):
                return payload
            return await accept_and_answer(engine, self.channel, request, self.map(payload),
                                           raw, self.meta(request), keys=self.keys(request, raw))

        return endpoint


def ignored(topic: str | None) -> JSONResponse:
    """200, so that the platform does not retry an event this channel does not want."""
    return JSONResponse({"status": "ignored", "topic": topic}, status_code=200)


def header_meta(request: Request, names: Mapping[str, str]) -> dict[str, str]:
    """``{meta_key: header value}`` for each header present."""
    out = {}
    for key, header in names.items():
        value = request.headers.get(header)
        if value is not None:
            out[key] = value
    return out


# -- payload helpers (defensive: a payload may have any shape) -------------------------------
def obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def text(value: Any) -> str | None:
    """A stripped non-empty string, or None."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def id_str(value: Any) -> str | None:
    """An id as an exact string: ints stay exact (no float on the way), strings pass through."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return str(int(value))
    return None


def full_name(*parts: Any) -> str | None:
    joined = " ".join(p for p in (text(x) for x in parts) if p)
    return joined or None


def split_phone(candidates: list[Any]) -> tuple[str | None, str | None]:
    """(first candidate already in E.164, first non-empty candidate that was not).

    Phones are passed through only when they already match E.164; anything else (a local
    number, spaces, an extension) is kept aside as the raw phone so that it cannot make the
    order fail validation, and is never guessed into a number we would then text."""
    raw = None
    for c in candidates:
        value = text(c)
        if value is None:
            continue
        if E164.fullmatch(value):
            return value, None
        raw = raw or value
    return None, raw


def money_str(value: Any) -> str | None:
    """A money value as a plain decimal string, never through float. Ints and Decimals (what
    :func:`parse_json_object` yields) and numeric strings are accepted; anything else is None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else (
            Decimal(value) if isinstance(value, int | Decimal) else None)
    except InvalidOperation:
        return None
    if number is None or not number.is_finite():
        return None
    if int(number.as_tuple().exponent) < -6:
        number = number.quantize(_PLACES, rounding=ROUND_HALF_EVEN)
    return format(number, "f")


__all__ = ["E164", "WebhookConfig", "WebhookIntake", "WebhookSource", "base64_hmac", "client_of",
           "full_name", "header_meta", "hmac_sha256", "id_str", "ignored", "money_str", "obj",
           "refuse", "require_secret", "same", "split_phone", "text",
           "unauthorized", "verify_base64_hmac"]
