"""The one exception tree of alertpipe.

::

    AlertpipeError
    ├── ConfigError              a bad configuration file; names the file, the channel and the key
    │   └── CredentialsError     a credential that is missing or unreadable at start-up
    ├── InputError               a message a source must refuse (never queued)
    │   ├── MalformedInput       not parseable at all (HTTP 400)
    │   └── ValidationFailed     parseable but invalid; carries field errors (HTTP 422)
    ├── StoreError               the durable store failed
    │   └── StoreUnavailable     the store cannot accept right now (HTTP 503 + Retry-After)
    │       └── Backpressure     the channel's backlog is at its bound (HTTP 503 + Retry-After)
    ├── DeliveryError            raised by a destination; the engine alone decides what follows
    │   ├── RetryableError       worth another attempt; may carry ``retry_after`` seconds
    │   └── PermanentError       will never succeed as sent; dead-lettered at once
    └── UsageError               a programming error (misuse of the API); never retried

Destinations translate library errors at their boundary (``raise ... from exc``) into
``RetryableError`` or ``PermanentError``. No message of any of these classes may contain a secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class AlertpipeError(Exception):
    """Base class of every error alertpipe raises on purpose."""


class ConfigError(AlertpipeError):
    """A configuration mistake found at start-up.

    ``file``, ``channel`` and ``key`` locate the mistake; the string form names all three.
    """

    def __init__(
        self, reason: str, *, file: str | None = None, channel: str | None = None,
        key: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.channel = channel
        self.key = key
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.channel:
            where.append(f"channel {self.channel!r}")
        if self.key:
            where.append(f"key {self.key!r}")
        prefix = ": ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason

    def located(
        self, *, file: str | None = None, channel: str | None = None, key_prefix: str | None = None
    ) -> ConfigError:
        """Return a copy of this error with missing location parts filled in."""
        key = self.key
        if key_prefix:
            key = f"{key_prefix}.{key}" if key else key_prefix
        return type(self)(
            self.reason, file=self.file or file, channel=self.channel or channel, key=key
        )


class CredentialsError(ConfigError):
    """A credential is missing, unreadable or malformed. The message never includes its value."""


class InputError(AlertpipeError):
    """A message that a source refuses. Nothing is queued."""

    status_code = 400


class MalformedInput(InputError):
    """The input could not be parsed (bad JSON, bad UTF-8, NaN, duplicate keys, too deep)."""

    status_code = 400


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: ``field`` is a dotted path such as ``items.0.qty``."""

    field: str
    message: str
    type: str = "invalid"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "type": self.type}


class ValidationFailed(InputError):
    """The input parsed but broke the schema; ``errors`` lists every field at fault."""

    status_code = 422

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        summary = "; ".join(f"{e.field}: {e.message}" for e in self.errors[:5])
        super().__init__(f"validation failed: {summary}")


class StoreError(AlertpipeError):
    """The durable store failed in a way the caller cannot fix."""


class StoreUnavailable(StoreError):
    """The store cannot accept writes right now; callers should answer 503 with Retry-After."""

    def __init__(self, reason: str, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(reason)


class Backpressure(StoreUnavailable):
    """The channel already holds its maximum of pending deliveries; try again later."""


class DeliveryError(AlertpipeError):
    """A destination could not deliver. Subclasses tell the engine what to do next.

    ``code`` is the remote API's error code when there is one (a Twilio code, an HTTP status).
    ``ambiguous`` is true when the request may have taken effect (a timeout after sending).
    """

    def __init__(
        self, message: str, *, code: str | int | None = None, ambiguous: bool = False
    ) -> None:
        self.code = code
        self.ambiguous = ambiguous
        super().__init__(message)


class RetryableError(DeliveryError):
    """Worth another attempt. ``retry_after`` (seconds) is the remote side's wish, if it had one.

    ``throttled`` says the remote asked us to slow down (a quota, a rate limit, a cap) rather
    than failed: pacing and Retry-After deal with it, and it does not open the circuit.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, code: str | int | None = None,
        ambiguous: bool = False, throttled: bool = False,
    ) -> None:
        self.retry_after = retry_after
        self.throttled = throttled
        super().__init__(message, code=code, ambiguous=ambiguous)


class PermanentError(DeliveryError):
    """Will never succeed as sent (bad number, bad credentials, unknown sheet). Dead-lettered."""


class UsageError(AlertpipeError):
    """The API was used wrongly: a programming error, never retried."""


__all__ = [
    "AlertpipeError",
    "Backpressure",
    "ConfigError",
    "CredentialsError",
    "DeliveryError",
    "FieldError",
    "InputError",
    "MalformedInput",
    "PermanentError",
    "RetryableError",
    "StoreError",
    "StoreUnavailable",
    "UsageError",
    "ValidationFailed",
]
