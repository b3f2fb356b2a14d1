"""Who may call: API keys (hashed at rest) and per-client rate limits.

Keys are configured as SHA-256 hashes (``alertpipe apikey new`` prints a key and its hash), so
the config and the store never hold a usable key. Several keys may grant the same channel, so a
key can be rotated without downtime. No keys configured means the endpoints are open (a warning
is logged at start-up). 401 means no valid key was presented; 403 means the key is valid but
lacks the right (``ingest``, ``read`` or ``admin``) for this channel.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence

from starlette.responses import JSONResponse, Response

from alertpipe.config.model import ApiKeySettings
from alertpipe.intake_request import IntakeRequest


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh random key (shown once) and the hash to put in the config."""
    key = "ap_" + secrets.token_urlsafe(32)
    return key, hash_key(key)


def presented_key(request: IntakeRequest) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


class Authenticator:
    def __init__(self, keys: Sequence[ApiKeySettings]) -> None:
        self.keys = list(keys)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def identify(self, presented: str | None) -> ApiKeySettings | None:
        if presented is None:
            return None
        digest = hash_key(presented)
        found = None
        for k in self.keys:  # compare every key, in constant time each
            if hmac.compare_digest(digest, k.sha256):
                found = k
        return found

    def check(self, request: IntakeRequest, right: str, channel: str | None) -> Response | str:
        """A 401/403 response, or the caller's identity (key id, or the client address)."""
        address = request.client.host if request.client else "unknown"
        if not self.enabled:
            return f"ip:{address}"
        key = self.identify(presented_key(request))
        if key is None:
            return JSONResponse(
                {"status": "rejected", "error": "unauthorized",
                 "message": "a valid API key is required (X-API-Key or Authorization: Bearer)"},
                status_code=401, headers={"WWW-Authenticate": 'Bearer realm="alertpipe"'})
        if right not in key.rights or (channel is not None and "*" not in key.channels
                                       and channel not in key.channels):
            where = f" on channel {channel!r}" if channel else ""
            return JSONResponse(
                {"status": "rejected", "error": "forbidden",
                 "message": f"API key {key.id!r} lacks the {right!r} right{where}"},
                status_code=403)
        return f"key:{key.id}"


class ClientRateLimiter:
    """A token bucket per client; at most ``max_clients`` remembered (least recent dropped)."""

    def __init__(self, per_second: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate = per_second
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, now: float | None = None) -> float:
        """0 if allowed, else the seconds to wait before the next request would be."""
        now = time.monotonic() if now is None else now
        tokens, stamp = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def too_many(wait: float) -> Response:
    return JSONResponse({"status": "rejected", "error": "rate_limited",
                         "message": "too many requests from this client; slow down"},
                        status_code=429, headers={"Retry-After": str(max(1, math.ceil(wait)))})
