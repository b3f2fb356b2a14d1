"""Dashboard sessions and CSRF tokens: signed cookies, no server-side session table.

A session cookie is ``base64(json).base64(hmac)``: HMAC-SHA256, under the engine's session
secret, over a JSON payload naming the user, the expiry, a random CSRF token and a fingerprint
of the user's password hash. Each request resolves the user again from the current config, so a
user removed from the config, or whose password changed, is logged out, and a changed role
applies at once. The CSRF token travels in every form and is compared in constant time with the
one in the cookie; an attacker's page can neither read the cookie (HttpOnly) nor send it along
with a cross-site POST (SameSite=Lax). The login form has its own short-lived signed cookie
with a token, so that a login cannot be forged either.

The secret is ``engine.session_secret``, else ``ALERTPIPE_SESSION_SECRET``, else random for this
process (sessions then end when the engine restarts, which is logged).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alertpipe.config.model import ROLES, EngineSettings, UserSettings

log = logging.getLogger("alertpipe.web")

SESSION_COOKIE = "alertpipe_session"
LOGIN_COOKIE = "alertpipe_login"
SESSION_SECONDS = 8 * 3600
LOGIN_FORM_SECONDS = 15 * 60

__all__ = ["LOGIN_COOKIE", "SESSION_COOKIE", "Session", "SessionCodec", "session_secret"]


def session_secret(settings: EngineSettings,
                   environ: Mapping[str, str] | None = None) -> tuple[bytes, bool]:
    """(the key that signs cookies, whether it is random for this process only)."""
    env = os.environ if environ is None else environ
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value().encode("utf-8"), False
    from_env = env.get("ALERTPIPE_SESSION_SECRET", "")
    if from_env:
        if len(from_env) < 32:
            from alertpipe.errors import ConfigError
            raise ConfigError("ALERTPIPE_SESSION_SECRET must be at least 32 characters",
                              key="engine.session_secret")
        return from_env.encode("utf-8"), False
    return secrets.token_bytes(32), True


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _fingerprint(user: UserSettings) -> str:
    return hashlib.sha256(user.password_hash.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in user, as resolved from a valid cookie and the current config."""

    user: str
    role: str
    csrf: str
    expires: float

    def may(self, role: str) -> bool:
        """Does this session's role include ``role``'s rights (viewer < operator < admin)?"""
        return ROLES.index(self.role) >= ROLES.index(role)


class SessionCodec:
    def __init__(self, secret: bytes, users: Sequence[UserSettings], *,
                 max_age: float = SESSION_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(secret, b"alertpipe dashboard cookies v1", hashlib.sha256).digest()
        self.users = {u.name: u for u in users}
        self.max_age = max_age
        self.clock = clock

    # -- signing ------------------------------------------------------------------------
    def _sign(self, kind: str, payload: dict[str, Any]) -> str:
        body = json.dumps({"k": kind, **payload}, separators=(",", ":"),
                          sort_keys=True).encode("utf-8")
        mac = hmac.new(self._key, body, hashlib.sha256).digest()
        return f"{_b64(body)}.{_b64(mac)}"

    def _open(self, kind: str, value: str | None) -> dict[str, Any] | None:
        """The payload of a cookie signed by us, of this kind and not expired; else None."""
        if not value or value.count(".") != 1 or len(value) > 4096:
            return None
        body_text, mac_text = value.split(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except ValueError:
            return None
        if not hmac.compare_digest(hmac.new(self._key, body, hashlib.sha256).digest(), mac):
            return None
        try:
            payload = json.loads(body)
        except ValueError:
            return None
        if (not isinstance(payload, dict) or payload.get("k") != kind
                or not isinstance(payload.get("x"), int | float)
                or payload["x"] <= self.clock()):
            return None
        return payload

    # -- sessions -----------------------------------------------------------------------
    def issue(self, user: UserSettings) -> tuple[str, Session]:
        """A new session for ``user``: the cookie value and the session it carries."""
        expires = int(self.clock() + self.max_age)
        csrf = secrets.token_urlsafe(32)
        value = self._sign("session", {"u": user.name, "x": expires, "c": csrf,
                                       "f": _fingerprint(user)})
        return value, Session(user=user.name, role=user.role, csrf=csrf, expires=expires)

    def read(self, value: str | None) -> Session | None:
        """The session a cookie carries, if it is ours, unexpired, and its user still exists
        with the same password. The role is the user's current one."""
        payload = self._open("session", value)
        if payload is None:
            return None
        user = self.users.get(str(payload.get("u")))
        if user is None or not hmac.compare_digest(str(payload.get("f")), _fingerprint(user)):
            return None
        csrf = payload.get("c")
        if not isinstance(csrf, str) or not csrf:
            return None
        return Session(user=user.name, role=user.role, csrf=csrf, expires=float(payload["x"]))

    # -- the login form's own token -----------------------------------------------------
    def login_token(self) -> tuple[str, str]:
        """(cookie value, form token) for one login form."""
        token = secrets.token_urlsafe(32)
        return self._sign("login", {"c": token,
                                    "x": int(self.clock() + LOGIN_FORM_SECONDS)}), token

    def check_login_token(self, cookie: str | None, token: str | None) -> bool:
        payload = self._open("login", cookie)
        return payload is not None and csrf_matches(str(payload.get("c", "")), token)


def csrf_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token with the one a form sent."""
    return bool(expected) and given is not None and hmac.compare_digest(
        expected.encode("utf-8"), given.encode("utf-8"))
