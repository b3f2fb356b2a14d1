"""Passwords, session cookies, CSRF tokens, redaction, and the users' config."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from pydantic import ValidationError

from alertpipe.config.model import EngineSettings, UserSettings
from alertpipe.errors import ConfigError
from alertpipe.web.passwords import hash_password, verify_password
from alertpipe.web.redact import REDACTED, redact
from alertpipe.web.sessions import SessionCodec, csrf_matches, session_secret

FAST = 2**10


def user(name: str = "ada", role: str = "admin", password: str = "pw-1") -> UserSettings:
    return UserSettings(name=name, role=role, password_hash=hash_password(password, n=FAST))


# -- passwords -------------------------------------------------------------------------------
def test_password_hash_round_trip_and_format() -> None:
    encoded = hash_password("correct horse", n=FAST)
    scheme, n, r, p, salt, digest = encoded.split("$")
    assert len(base64.urlsafe_b64decode(digest + "==")) == 32
    assert (scheme, n, r, p) == ("scrypt", str(FAST), "8", "1")
    assert len(base64.urlsafe_b64decode(salt + "==")) == 16
    assert "correct horse" not in encoded
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horsE", encoded)
    assert not verify_password("", encoded)


def test_password_salt_is_random() -> None:
    assert hash_password("same", n=FAST) != hash_password("same", n=FAST)


def test_default_work_factor_is_strong() -> None:
    assert hash_password("x").split("$")[1:4] == ["32768", "8", "1"]


@pytest.mark.parametrize("encoded", [
    "", "scrypt", "bcrypt$1024$8$1$c2FsdA$aGFzaA", "scrypt$1000$8$1$c2FsdA$aGFzaA",
    "scrypt$4194304$8$1$c2FsdA$aGFzaA", "scrypt$1024$0$1$c2FsdA$aGFzaA",
    "scrypt$1024$8$1$$aGFzaA", "scrypt$x$8$1$c2FsdA$aGFzaA", "scrypt$1024$8$1$!!$aGFzaA"])
def test_malformed_hash_never_verifies_and_never_raises(encoded: str) -> None:
    assert verify_password("anything", encoded) is False


def test_empty_password_cannot_be_hashed() -> None:
    with pytest.raises(ValueError):
        hash_password("")


# -- sessions --------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_session_round_trip_carries_user_role_and_csrf() -> None:
    ada = user()
    codec = SessionCodec(b"k" * 32, [ada])
    value, session = codec.issue(ada)
    read = codec.read(value)
    assert read == session
    assert (read.user, read.role) == ("ada", "admin") and len(read.csrf) >= 32
    assert "pw-1" not in value and ada.password_hash not in value


def _tamper(value: str, **changes: Any) -> str:
    body, mac = value.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"{forged}.{mac}"


def test_tampered_or_foreign_cookies_are_refused() -> None:
    ada, vera = user(), user("vera", "viewer")
    codec = SessionCodec(b"k" * 32, [ada, vera])
    value, _ = codec.issue(vera)
    assert codec.read(_tamper(value, u="ada")) is None  # the signature no longer matches
    assert codec.read(value[:-2] + ("AA" if value[-2:] != "AA" else "BB")) is None
    other = SessionCodec(b"x" * 32, [ada, vera])
    assert other.read(value) is None  # signed with another secret
    for junk in (None, "", "abc", "a.b.c", "!!!.???", "e30.e30"):
        assert codec.read(junk) is None
    login_cookie, _ = codec.login_token()
    assert codec.read(login_cookie) is None  # a login-form cookie is no session


def test_session_expires() -> None:
    clock = Clock()
    ada = user()
    codec = SessionCodec(b"k" * 32, [ada], max_age=60, clock=clock)
    value, _ = codec.issue(ada)
    clock.now += 59
    assert codec.read(value) is not None
    clock.now += 2
    assert codec.read(value) is None


def test_session_follows_the_current_config() -> None:
    ada = user(role="admin")
    value, _ = SessionCodec(b"k" * 32, [ada]).issue(ada)
    demoted = UserSettings(name="ada", role="viewer", password_hash=ada.password_hash)
    session = SessionCodec(b"k" * 32, [demoted]).read(value)
    assert session is not None and session.role == "viewer"  # a role change applies at once
    assert SessionCodec(b"k" * 32, []).read(value) is None  # a removed user is logged out
    changed = UserSettings(name="ada", role="admin",
                           password_hash=hash_password("new-pw", n=FAST))
    assert SessionCodec(b"k" * 32, [changed]).read(value) is None  # a new password ends it


def test_roles_are_ordered() -> None:
    codec = SessionCodec(b"k" * 32, [user("v", "viewer"), user("o", "operator")])
    _, viewer = codec.issue(user("v", "viewer"))
    _, operator = codec.issue(user("o", "operator"))
    assert viewer.may("viewer") and not viewer.may("operator")
    assert operator.may("operator") and not operator.may("admin")


def test_csrf_comparison() -> None:
    assert csrf_matches("abc", "abc")
    assert not csrf_matches("abc", "abd")
    assert not csrf_matches("abc", None)
    assert not csrf_matches("", "")


def test_login_token_binds_form_to_cookie() -> None:
    clock = Clock()
    codec = SessionCodec(b"k" * 32, [], clock=clock)
    cookie, token = codec.login_token()
    assert codec.check_login_token(cookie, token)
    assert not codec.check_login_token(cookie, token + "x")
    assert not codec.check_login_token(None, token)
    other_cookie, _ = codec.login_token()
    assert not codec.check_login_token(other_cookie, token)
    clock.now += 3600
    assert not codec.check_login_token(cookie, token)


def test_session_secret_sources() -> None:
    configured = EngineSettings.model_validate({"session_secret": "c" * 32})
    assert session_secret(configured, {"ALERTPIPE_SESSION_SECRET": "e" * 32}) == (b"c" * 32,
                                                                                False)
    assert session_secret(EngineSettings(), {"ALERTPIPE_SESSION_SECRET": "e" * 32}) == (
        b"e" * 32, False)
    one, ephemeral = session_secret(EngineSettings(), {})
    two, _ = session_secret(EngineSettings(), {})
    assert ephemeral and len(one) == 32 and one != two
    with pytest.raises(ConfigError, match="at least 32"):
        session_secret(EngineSettings(), {"ALERTPIPE_SESSION_SECRET": "short"})


# -- config ----------------------------------------------------------------------------------
def test_users_config_validates_role_names_and_hash() -> None:
    ok = {"name": "ada", "role": "operator", "password_hash": hash_password("x", n=FAST)}
    assert EngineSettings.model_validate({"users": [ok]}).users[0].role == "operator"
    with pytest.raises(ValidationError, match="must be one of viewer, operator, admin"):
        EngineSettings.model_validate({"users": [{**ok, "role": "root"}]})
    with pytest.raises(ValidationError, match="password_hash"):
        EngineSettings.model_validate({"users": [{**ok, "password_hash": "plain-text"}]})
    with pytest.raises(ValidationError, match="unique"):
        EngineSettings.model_validate({"users": [ok, ok]})
    with pytest.raises(ValidationError, match="at least 32"):
        EngineSettings.model_validate({"session_secret": "short"})
    blank = EngineSettings.model_validate({"session_secret": ""})
    assert blank.session_secret is None
    shown = repr(EngineSettings.model_validate({"session_secret": "z" * 40}))
    assert "z" * 40 not in shown


# -- redaction -------------------------------------------------------------------------------
def test_redaction_of_headers_and_fields() -> None:
    meta = {"remote_addr": "10.0.0.1", "Authorization": "Bearer abc",
            "X-Shopify-Hmac-Sha256": "sig==", "X-WC-Webhook-Signature": "sig2",
            "cookie": "alertpipe_session=x", "x-api-key": "ap_123", "event_id": "e-1",
            "headers": {"X-Alertpipe-Signature": "v1=00", "user-agent": "curl"},
            "note": "Basic dXNlcjpwYXNz"}
    body = {"order_id": "A-1", "api_key": "k", "customer": {"password": "p", "name": "Ada"},
            "items": [{"auth_token": "t", "sku": "KB"}], "total": 5}
    out_meta, out_body = redact(meta), redact(body)
    for key in ("Authorization", "X-Shopify-Hmac-Sha256", "X-WC-Webhook-Signature", "cookie",
                "x-api-key", "note"):
        assert out_meta[key] == REDACTED, key
    assert out_meta["headers"] == {"X-Alertpipe-Signature": REDACTED, "user-agent": "curl"}
    assert (out_meta["remote_addr"], out_meta["event_id"]) == ("10.0.0.1", "e-1")
    assert out_body == {"order_id": "A-1", "api_key": REDACTED,
                        "customer": {"password": REDACTED, "name": "Ada"},
                        "items": [{"auth_token": REDACTED, "sku": "KB"}], "total": 5}
    assert body["api_key"] == "k"  # the original is untouched
