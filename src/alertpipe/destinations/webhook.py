"""Webhook destination: ``POST`` the message body as JSON to a URL, optionally signed.

One request per delivery. The body is the message body (``Decimal`` kept exact, see
:mod:`alertpipe.jsoncodec`); the headers say which message it is::

    Content-Type: application/json
    X-Alertpipe-Event-Id: <message id>        (stable across retries: receivers de-duplicate)
    X-Alertpipe-Channel: <channel>
    X-Alertpipe-Timestamp: <Unix seconds>     \\ with ``secret``: Stripe's scheme, the one the
    X-Alertpipe-Signature: v1=<hex>           /  ``signed_webhook`` source verifies

where ``<hex>`` is HMAC-SHA256 under ``secret`` of ``b"<timestamp>." + body``. Extra ``headers``
(e.g. a bearer token for the receiver) are sent as configured and never logged.

Error mapping::

    2xx                              -> Sent(remote_id=<X-Request-Id or Location, if any>)
    408, 425, 429                    -> RetryableError(retry_after=Retry-After; 429 throttled)
    5xx                              -> RetryableError(ambiguous=True)
    other 4xx (and 3xx: no redirects are followed) -> PermanentError(code=<status>)
    ConnectError/ConnectTimeout/PoolTimeout -> RetryableError (not ambiguous)
    read timeout, dropped connection  -> RetryableError(ambiguous=True)

A retried POST may reach the receiver twice (an ambiguous failure); the event id header lets it
drop the repeat. The engine's alert monitor uses this destination too (``alerts.destinations``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import ClassVar, Literal

import httpx
from pydantic import ConfigDict, Field, SecretStr, field_validator

from alertpipe import jsoncodec
from alertpipe.destinations import register
from alertpipe.destinations._http import parse_retry_after, transport_error
from alertpipe.destinations.base import (
    Delivery,
    Destination,
    DestinationConfig,
    Sent,
    optional_secret,
)
from alertpipe.errors import CredentialsError, PermanentError, RetryableError, UsageError

EVENT_HEADER = "X-Alertpipe-Event-Id"
CHANNEL_HEADER = "X-Alertpipe-Channel"
TIMESTAMP_HEADER = "X-Alertpipe-Timestamp"
SIGNATURE_HEADER = "X-Alertpipe-Signature"
_RETRY_STATUSES = frozenset({408, 425, 429})


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256 of b"<timestamp>." + body>``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


class WebhookDestinationConfig(DestinationConfig):
    """The ``webhook`` destination's settings. ``secret``: blank means "do not sign"."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: Literal["webhook"] = "webhook"
    url: str
    secret: SecretStr | None = None
    headers: dict[str, SecretStr] = {}
    timeout_seconds: float = Field(10, gt=0)
    max_requests_per_minute: float | None = Field(None, gt=0)
    concurrency: int = Field(4, ge=1)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip()
        if not v.startswith(("http://", "https://")) or len(v) < 10:
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("secret", mode="before")
    @classmethod
    def _blank(cls, v: object) -> object:
        return optional_secret(v)


@register
class WebhookDestination(Destination):
    """POSTs each delivery's message body as JSON to ``url``."""

    type_name: ClassVar[str] = "webhook"
    Config: ClassVar[type[DestinationConfig]] = WebhookDestinationConfig

    config: WebhookDestinationConfig

    def __init__(self, name: str, config: WebhookDestinationConfig, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(name, config)
        self.config = config
        self.concurrency = config.concurrency
        self.max_requests_per_minute = config.max_requests_per_minute
        self.clock = clock

    def check(self) -> None:
        if self.config.secret is not None and len(self.config.secret.get_secret_value()) < 16:
            raise CredentialsError("webhook: secret must be at least 16 characters",
                                   key="secret")

    def describe(self, delivery: Delivery) -> str:
        return f"webhook {httpx.URL(self.config.url).host}"

    def request(self, delivery: Delivery) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the POST for ``delivery``."""
        body = jsoncodec.dumps(dict(delivery.message.body)).encode("utf-8")
        headers = {k: v.get_secret_value() for k, v in self.config.headers.items()}
        headers.update({"Content-Type": "application/json",
                        EVENT_HEADER: delivery.message.id,
                        CHANNEL_HEADER: delivery.message.channel})
        if self.config.secret is not None:
            stamp = int(self.clock())
            headers[TIMESTAMP_HEADER] = str(stamp)
            headers[SIGNATURE_HEADER] = signature(self.config.secret.get_secret_value(), stamp,
                                                  body)
        return body, headers

    async def send(self, delivery: Delivery) -> Sent:
        if self.http is None:
            raise UsageError(f"destination {self.name!r}: send() before start()")
        body, headers = self.request(delivery)
        try:
            response = await self.http.post(self.config.url, content=body, headers=headers,
                                            timeout=self.config.timeout_seconds,
                                            follow_redirects=False)
        except httpx.HTTPError as exc:
            raise transport_error(exc, "webhook") from exc
        status = response.status_code
        if response.is_success:
            ref = response.headers.get("x-request-id") or response.headers.get("location")
            return Sent(remote_id=ref[:200] if ref else None, detail=f"HTTP {status}")
        text = f"webhook HTTP {status}: {' '.join(response.text.split())[:200]}"
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status in _RETRY_STATUSES:
            raise RetryableError(text, code=status, retry_after=retry_after,
                                 throttled=status == 429)
        if status >= 500:
            raise RetryableError(text, code=status, ambiguous=True, retry_after=retry_after)
        raise PermanentError(text, code=status)


__all__ = ["WebhookDestination", "WebhookDestinationConfig", "signature"]
