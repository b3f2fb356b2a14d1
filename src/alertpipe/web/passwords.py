"""Dashboard passwords: scrypt with a random salt, encoded ``scrypt$n$r$p$salt$hash``.

The salt and the hash are unpadded URL-safe base64. ``alertpipe user hash`` makes the encoded
form for the config; :func:`verify_password` checks a password against it in constant time.
Nothing here logs or returns a password.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

N, R, P = 2**15, 8, 1  # about 32 MiB and 50-100 ms per hash on a server core (OWASP: n ≥ 2^15)
SALT_BYTES = 16
HASH_BYTES = 32
_MAX_N = 2**20  # refuse work factors that would take seconds or gigabytes per login

__all__ = ["dummy_hash", "hash_password", "verify_password"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r * p + 1024 * 1024, dklen=size)


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    """The encoded scrypt hash of ``password`` with a fresh random salt."""
    if not password:
        raise ValueError("the password is empty")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p, HASH_BYTES)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; False for a wrong password or a malformed
    or unreasonable encoding (never an exception)."""
    try:
        scheme, n_text, r_text, p_text, salt_text, hash_text = encoded.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        salt, expected = _unb64(salt_text), _unb64(hash_text)
    except ValueError:
        return False
    if (scheme != "scrypt" or not 1 < n <= _MAX_N or n & (n - 1) or not 0 < r <= 32
            or not 0 < p <= 16 or not salt or not expected):
        return False
    try:
        actual = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def dummy_hash() -> str:
    """A valid hash of a random password nobody knows: checked when the user name is unknown,
    so a login takes as long for a stranger as for a user (its time tells no one exists)."""
    return hash_password(secrets.token_urlsafe(16))
