"""What the signed-webhook sources (shopify, woocommerce, signed_webhook) share.

A platform webhook cannot carry one of our API keys, so these sources authenticate each request
by its HMAC signature instead of :meth:`Engine.gate`; only the per-client rate limit of ``gate``
is applied (:class:`WebhookIntake.rate_limited`, before the body is read). The order of work is
fixed: rate limit, read the raw bytes with the size limit (413), verify the signature over those
exact bytes in constant time (401), and only then parse (400) and map. A rejected request is
never queued, and no secret, signature or body ever reaches a log line or an answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from pydantic import Field, SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alertpipe.auth import ClientRateLimiter, too_many
from alertpipe.errors import CredentialsError, MalformedInput
from alertpipe.sources.base import BodyTooLarge, SourceConfig, read_limited, reject
from alertpipe.sources.jsonparse import parse_json_object

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


# -- intake ----------------------------------------------------------------------------------
class WebhookIntake:
    """Per-source state for the request steps every webhook source runs."""

    def __init__(self, channel: str, config: WebhookConfig) -> None:
        self.channel = channel
        self.config = config
        self._limiter: ClientRateLimiter | None = None

    def client(self, request: Request) -> str:
        return f"ip:{request.client.host if request.client else 'unknown'}"

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

    def refused(self, request: Request, reason: str) -> JSONResponse:
        """Log (without secrets or body) and answer 401."""
        log.info("webhook refused", extra={"channel": self.channel, "reason": reason,
                                           "client": self.client(request)})
        return unauthorized(reason)


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


__all__ = ["E164", "WebhookConfig", "WebhookIntake", "base64_hmac", "full_name", "header_meta",
           "hmac_sha256", "id_str", "ignored", "money_str", "obj", "require_secret", "same",
           "split_phone", "text", "unauthorized", "verify_base64_hmac"]
