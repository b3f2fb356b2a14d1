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
from typing import Any

from pydantic import Field, SecretStr
from starlette.requests import Request
from starlette.responses import Response

from alertpipe.errors import CredentialsError
from alertpipe.sources.base import fingerprint, register, reject
from alertpipe.sources.webhook import WebhookConfig, WebhookSource, hmac_sha256
from alertpipe.store.base import MessageKey

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
class SignedWebhookSource(WebhookSource):
    type_name = "signed_webhook"
    Config = SignedWebhookConfig
    event_headers = (EVENT_HEADER,)

    def __init__(self, channel: str, config: Any, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(channel, config)
        self.clock = clock

    def check(self) -> None:
        if not self.config.all_secrets():
            raise CredentialsError("no webhook secret is set; set secret (and, while rotating, "
                                   "secrets) to the key shared with the sender", key="secret")

    def pre_check(self, request: Request) -> Response | None:
        idem = request.headers.get("idempotency-key")
        if idem is not None and not 1 <= len(idem) <= 255:
            return reject(400, "bad_idempotency_key",
                          "Idempotency-Key must be 1 to 255 characters")
        event = request.headers.get(EVENT_HEADER)
        if event is not None and not 1 <= len(event) <= 255:
            return reject(400, "bad_event_id", "X-Alertpipe-Event-Id must be 1 to 255 "
                          "characters")
        return None

    def verify(self, request: Request, raw: bytes) -> Response | None:
        cfg: SignedWebhookConfig = self.config
        stamp = request.headers.get(TIMESTAMP_HEADER)
        if not stamp:
            return self.refused(request, "the X-Alertpipe-Timestamp header is missing")
        if not _TIMESTAMP.fullmatch(stamp):
            return self.refused(request, "X-Alertpipe-Timestamp must be an integer "
                                "(Unix seconds)")
        header = request.headers.get(SIGNATURE_HEADER)
        if not header:
            return self.refused(request, "the X-Alertpipe-Signature header is missing")
        presented = v1_signatures(header)
        if not presented:
            return self.refused(request, "X-Alertpipe-Signature holds no v1= signature")
        if not verify(cfg.all_secrets(), stamp, raw, presented):
            return self.refused(request, "the X-Alertpipe-Signature signature does not "
                                "match the timestamp and body")
        if abs(self.clock() - int(stamp)) > cfg.tolerance_seconds:
            return self.refused(request, "X-Alertpipe-Timestamp is more than "
                                f"{cfg.tolerance_seconds} seconds from the server's "
                                "clock; sign the request again")
        return None

    def keys(self, request: Request, raw: bytes) -> list[MessageKey]:
        keys = super().keys(request, raw)
        idem = request.headers.get("idempotency-key")
        if idem is not None:
            keys.append(MessageKey("idempotency", idem, self.config.idempotency_window_seconds,
                                   fingerprint(raw)))
        return keys

    def meta(self, request: Request) -> dict[str, Any]:
        event = request.headers.get(EVENT_HEADER)
        return {**super().meta(request), "signed_at": int(request.headers[TIMESTAMP_HEADER]),
                **({"event_id": event} if event else {})}


__all__ = ["SignedWebhookConfig", "SignedWebhookSource", "sign", "v1_signatures", "verify"]
