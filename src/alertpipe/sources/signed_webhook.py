"""Generic signed order webhooks (``type: signed_webhook``, default path ``/webhooks/orders``).

For systems that can sign but cannot hold an API key. The body is an order exactly as for
``POST /orders``. Each request carries::

    X-Alertpipe-Timestamp: 1714559400            (Unix seconds)
    X-Alertpipe-Signature: v1=<hex HMAC-SHA256 of b"1714559400." + raw body>[,v1=<hex>...]

(Stripe's scheme.) Several ``v1=`` values are allowed so that a sender can sign with an old and a
new secret while a secret is rotated; the receiver accepts ``secret`` and every entry of
``secrets``. Other schemes in the header are ignored. The timestamp must be an integer within
``tolerance_seconds`` (300) of the receiver's clock, which bounds how long a captured request can
be replayed; with ``X-Alertpipe-Event-Id`` the replay window is closed entirely (a repeat is a
200 ``duplicate`` for ``dedupe_window_seconds``). ``Idempotency-Key`` works as on ``/orders``.

:func:`sign` builds the header value for clients and tests.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from alertpipe.errors import CredentialsError
from alertpipe.sources.base import Source, accept_and_answer, fingerprint, register, reject
from alertpipe.sources.webhook import WebhookConfig, WebhookIntake, hmac_sha256
from alertpipe.store.base import MessageKey

if TYPE_CHECKING:
    from alertpipe.engine.core import Engine

TIMESTAMP_HEADER = "x-alertpipe-timestamp"
SIGNATURE_HEADER = "x-alertpipe-signature"
EVENT_HEADER = "x-alertpipe-event-id"
MAX_SIGNATURES = 8
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Alertpipe-Signature`` value for ``body`` sent at ``timestamp``: ``v1=<hex>``."""
    return "v1=" + hmac_sha256(secret, f"{timestamp}.".encode() + body).hex()


class SignedWebhookConfig(WebhookConfig):
    type: str = "signed_webhook"
    path: str = "/webhooks/orders"
    secrets: list[SecretStr] = []
    tolerance_seconds: int = Field(300, gt=0)

    def all_secrets(self) -> list[str]:
        values = [self.secret.get_secret_value(), *(s.get_secret_value() for s in self.secrets)]
        return [v for v in values if v]


def v1_signatures(header: str) -> list[str]:
    """The ``v1=`` values of a signature header (at most ``MAX_SIGNATURES``)."""
    out = []
    for part in header.split(","):
        scheme, sep, value = part.strip().partition("=")
        if sep and scheme.strip() == "v1" and value.strip():
            out.append(value.strip().lower())
    return out[:MAX_SIGNATURES]


def verify(secrets: Sequence[str], timestamp: str, raw: bytes, presented: Sequence[str]) -> bool:
    """True when one presented signature is the v1 HMAC under one of ``secrets``. Every pair is
    compared in constant time; an empty secret never verifies."""
    signed = timestamp.encode("ascii") + b"." + raw
    found = False
    for secret in secrets:
        if not secret:
            continue
        expected = hmac_sha256(secret, signed).hex().encode("ascii")
        for sig in presented:
            if hmac.compare_digest(expected, sig.encode("utf-8", "replace")):
                found = True
    return found


@register
class SignedWebhookSource(Source):
    type_name = "signed_webhook"
    Config = SignedWebhookConfig

    def __init__(self, channel: str, config: Any, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(channel, config)
        self.clock = clock

    def check(self) -> None:
        if not self.config.all_secrets():
            raise CredentialsError("no webhook secret is set; set secret (and, while rotating, "
                                   "secrets) to the key shared with the sender", key="secret")

    def routes(self, engine: Engine) -> list[Route]:
        return [Route(self.config.path, self.endpoint(engine), methods=["POST"])]

    def endpoint(self, engine: Engine) -> Any:
        cfg: SignedWebhookConfig = self.config
        channel = self.channel
        intake = WebhookIntake(channel, cfg)

        async def endpoint(request: Request) -> Response:
            if (limited := intake.rate_limited(request)) is not None:
                return limited
            idem = request.headers.get("idempotency-key")
            if idem is not None and not 1 <= len(idem) <= 255:
                return reject(400, "bad_idempotency_key",
                              "Idempotency-Key must be 1 to 255 characters")
            event = request.headers.get(EVENT_HEADER)
            if event is not None and not 1 <= len(event) <= 255:
                return reject(400, "bad_event_id", "X-Alertpipe-Event-Id must be 1 to 255 "
                              "characters")
            raw = await intake.read(request)
            if isinstance(raw, Response):
                return raw
            stamp = request.headers.get(TIMESTAMP_HEADER)
            if not stamp:
                return intake.refused(request, "the X-Alertpipe-Timestamp header is missing")
            if not _TIMESTAMP.fullmatch(stamp):
                return intake.refused(request, "X-Alertpipe-Timestamp must be an integer "
                                      "(Unix seconds)")
            header = request.headers.get(SIGNATURE_HEADER)
            if not header:
                return intake.refused(request, "the X-Alertpipe-Signature header is missing")
            presented = v1_signatures(header)
            if not presented:
                return intake.refused(request, "X-Alertpipe-Signature holds no v1= signature")
            if not verify(cfg.all_secrets(), stamp, raw, presented):
                return intake.refused(request, "the X-Alertpipe-Signature signature does not "
                                      "match the timestamp and body")
            if abs(self.clock() - int(stamp)) > cfg.tolerance_seconds:
                return intake.refused(request, "X-Alertpipe-Timestamp is more than "
                                      f"{cfg.tolerance_seconds} seconds from the server's "
                                      "clock; sign the request again")
            body = intake.parse(raw)
            if isinstance(body, Response):
                return body
            keys = []
            if event:
                keys.append(MessageKey("event", event, cfg.dedupe_window_seconds))
            if idem is not None:
                keys.append(MessageKey("idempotency", idem, cfg.idempotency_window_seconds,
                                       fingerprint(raw)))
            meta = {"remote_addr": request.client.host if request.client else None,
                    "signed_at": int(stamp), **({"event_id": event} if event else {})}
            return await accept_and_answer(engine, channel, request, body, raw, meta, keys=keys)

        return endpoint


__all__ = ["SignedWebhookConfig", "SignedWebhookSource", "sign", "v1_signatures", "verify"]
