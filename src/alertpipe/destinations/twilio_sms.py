"""Twilio SMS destination: the real-time alert, one Messages API call per recipient.

Fan-out happens at intake: :meth:`TwilioSmsDestination.targets` returns every recipient, and
the engine writes one delivery row per recipient. Each row succeeds, retries or dead-letters on
its own, so a failure to one number never re-sends the text to the numbers that already got it.

``send`` makes exactly one ``POST {api_base}/2010-04-01/Accounts/{sid}/Messages.json`` with HTTP
Basic auth (``account_sid:auth_token`` or ``api_key:api_secret``). It is never retried here: a
silent POST retry can text someone twice, so the engine decides, knowing ``ambiguous``.

Error mapping (Twilio's error body is ``{"code", "message", "more_info", "status"}``)::

    201                               -> Sent(remote_id=<message SID>)
    429 or code 20429                 -> RetryableError(retry_after=Retry-After)
    5xx                               -> RetryableError(ambiguous=True)
    401 or code 20003                 -> PermanentError (authentication)
    21211 21408 21606 21608 21610 21612 21614
                                      -> PermanentError(code=<code>, "Twilio <code>: <message>")
    other 4xx                         -> PermanentError(code=<code or status>)
    ConnectError/ConnectTimeout/PoolTimeout -> RetryableError (not ambiguous)
    read timeout, RemoteProtocolError, …    -> RetryableError(ambiguous=True)

The text is ``template.format_map(fields)`` over the body plus ``message_id`` and ``channel``;
a missing (or null) field renders as "" even with a format spec or an index
(``{billing[phone]}``). A template that cannot render is a ``ConfigError`` at construction.

No log line and no error message carries the auth token or the API secret.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar, Literal

import httpx
from pydantic import ConfigDict, Field, SecretStr, field_validator

from alertpipe.destinations import register
from alertpipe.destinations.base import Delivery, Destination, DestinationConfig, Sent
from alertpipe.destinations.google_auth import parse_retry_after
from alertpipe.errors import (
    ConfigError,
    CredentialsError,
    PermanentError,
    RetryableError,
    UsageError,
)
from alertpipe.message import Message

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "High-value order {order_id}: ${amount} {currency} from {customer_name}"
MAX_BODY = 1600
#: Twilio error codes about the recipient or sender that no retry can fix.
PERMANENT_CODES = frozenset({21211, 21408, 21606, 21608, 21610, 21612, 21614})

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_API_KEY = re.compile(r"^SK[0-9a-fA-F]{32}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_SAMPLE = {"order_id": "A-1", "customer_name": "Ada", "customer": "Ada", "amount": Decimal("1.00"),
           "currency": "USD", "high_value": True, "message_id": "m", "channel": "c"}


class TwilioSmsConfig(DestinationConfig):
    """The ``twilio_sms`` destination's settings. Blank strings mean "not set".

    ``hide_input_in_errors``: a validation error must never echo a secret's value.
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: Literal["twilio_sms"] = "twilio_sms"
    account_sid: str | None = None
    auth_token: SecretStr | None = None
    api_key: str | None = None
    api_secret: SecretStr | None = None
    from_number: str | None = None
    messaging_service_sid: str | None = None
    to: list[str] = Field(default_factory=list)
    template: str = DEFAULT_TEMPLATE
    api_base: str = "https://api.twilio.com"
    max_requests_per_minute: float = Field(60, gt=0)
    concurrency: int = Field(2, ge=1)
    timeout_seconds: float = Field(10, gt=0)

    @field_validator("account_sid", "api_key", "from_number", "messaging_service_sid",
                     mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        """Unset env vars interpolate to ""; a blank value means "not set"."""
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("auth_token", "api_secret", mode="before")
    @classmethod
    def _blank_secret(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is not None and not isinstance(raw, str):
            raise ValueError("must be a string (quote it in YAML)")
        return None if raw is None or not raw.strip() else value

    @field_validator("account_sid")
    @classmethod
    def _account_sid(cls, value: str | None) -> str | None:
        if value is not None and not _ACCOUNT_SID.match(value):
            raise ValueError("account_sid must be 'AC' followed by 32 hex digits")
        return value

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: str | None) -> str | None:
        if value is not None and not _API_KEY.match(value):
            raise ValueError("api_key must be 'SK' followed by 32 hex digits")
        return value

    @field_validator("messaging_service_sid")
    @classmethod
    def _service_sid(cls, value: str | None) -> str | None:
        if value is not None and not _SERVICE_SID.match(value):
            raise ValueError("messaging_service_sid must be 'MG' followed by 32 hex digits")
        return value

    @field_validator("from_number")
    @classmethod
    def _from_number(cls, value: str | None) -> str | None:
        if value is not None and not _E164.match(value):
            raise ValueError("from_number must be an E.164 number such as +15551234567")
        return value

    @field_validator("to", mode="before")
    @classmethod
    def _split_to(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            value = [v.strip() if isinstance(v, str) else v for v in value]
            return [v for v in value if v != ""]
        return value

    @field_validator("to")
    @classmethod
    def _check_to(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not _E164.match(v)]
        if bad:
            raise ValueError(f"not E.164 (like +15551234567): {', '.join(bad)}")
        return list(dict.fromkeys(value))  # one text per person, even if listed twice


class _Empty:
    """A missing template field: renders as "" whatever the format spec, index or attribute."""

    def __format__(self, spec: str) -> str:
        return ""

    def __repr__(self) -> str:
        return ""

    __str__ = __repr__

    def __getattr__(self, name: str) -> _Empty:
        return self

    def __getitem__(self, key: Any) -> _Empty:
        return self


_EMPTY = _Empty()


class _Blank(dict[str, Any]):
    """Template fields (``str.format_map``): a missing field renders as the empty string."""

    def __missing__(self, key: str) -> _Empty:
        return _EMPTY


@register
class TwilioSmsDestination(Destination):
    """Sends one SMS per delivery (one delivery per recipient) through Twilio's Messages API."""

    type_name: ClassVar[str] = "twilio_sms"
    Config: ClassVar[type[DestinationConfig]] = TwilioSmsConfig

    config: TwilioSmsConfig

    def __init__(self, name: str, config: DestinationConfig) -> None:
        if not isinstance(config, TwilioSmsConfig):
            raise UsageError(f"{type(self).__name__} needs a TwilioSmsConfig, got "
                             f"{type(config).__name__}")
        super().__init__(name, config)
        self.config = config
        self.batch_size = 1
        self.concurrency = config.concurrency
        self.max_requests_per_minute = config.max_requests_per_minute
        self._check_template()

    # -- lifecycle -------------------------------------------------------------------------
    def check(self) -> None:
        cfg = self.config
        if not cfg.account_sid:
            raise CredentialsError("twilio_sms: account_sid is missing (set TWILIO_ACCOUNT_SID)",
                                   key="account_sid")
        self._auth()
        if not (cfg.from_number or cfg.messaging_service_sid):
            raise ConfigError("twilio_sms: from_number or messaging_service_sid is required "
                              "(set TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID)",
                              key="from_number")
        if not cfg.to:
            raise ConfigError("twilio_sms: no recipients in to (set ALERT_SMS_TO)", key="to")
        self._check_template()

    def _check_template(self) -> None:
        try:
            self.config.template.format_map(_Blank(_SAMPLE))
            self.config.template.format_map(_Blank())
        except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
            raise ConfigError(f"twilio_sms: template is not a valid format string "
                              f"({type(exc).__name__}: {exc})", key="template") from exc

    def _auth(self) -> httpx.BasicAuth:
        """Basic auth from the complete credential pair; a half-set pair is an error."""
        cfg = self.config
        if cfg.api_key and cfg.api_secret:
            return httpx.BasicAuth(cfg.api_key, cfg.api_secret.get_secret_value())
        if cfg.api_key:
            raise CredentialsError("twilio_sms: api_secret is missing (set TWILIO_API_SECRET)",
                                   key="api_secret")
        if cfg.api_secret:
            raise CredentialsError("twilio_sms: api_key is missing (set TWILIO_API_KEY)",
                                   key="api_key")
        if cfg.auth_token and cfg.account_sid:
            return httpx.BasicAuth(cfg.account_sid, cfg.auth_token.get_secret_value())
        raise CredentialsError("twilio_sms: auth_token is missing (set TWILIO_AUTH_TOKEN, or "
                               "TWILIO_API_KEY and TWILIO_API_SECRET)", key="auth_token")

    # -- routing ---------------------------------------------------------------------------
    def targets(self, message: Message) -> Sequence[str | None]:
        return list(self.config.to)

    def rate_key(self) -> str:
        sender = self.config.from_number or self.config.messaging_service_sid
        return f"twilio_sms:{sender}" if sender else super().rate_key()

    def describe(self, delivery: Delivery) -> str:
        return f"SMS to {delivery.target}"

    # -- sending ---------------------------------------------------------------------------
    def render(self, message: Message) -> str:
        """The SMS text for ``message``, truncated to Twilio's 1600-character limit."""
        fields = _Blank({k: _EMPTY if v is None else v for k, v in message.body.items()
                         if isinstance(k, str)})
        fields.update(message_id=message.id, channel=message.channel)
        try:
            text = self.config.template.format_map(fields)
        except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
            raise PermanentError(f"twilio_sms: template cannot render this message "
                                 f"({type(exc).__name__})") from exc
        return text[:MAX_BODY]

    async def send(self, delivery: Delivery) -> Sent:
        if self.http is None:
            raise UsageError(f"destination {self.name!r}: send() before start()")
        if not delivery.target:
            raise PermanentError("twilio_sms: delivery has no recipient")
        cfg = self.config
        data = {"To": delivery.target, "Body": self.render(delivery.message)}
        if cfg.messaging_service_sid:
            data["MessagingServiceSid"] = cfg.messaging_service_sid
        if cfg.from_number:
            data["From"] = cfg.from_number
        url = f"{cfg.api_base.rstrip('/')}/2010-04-01/Accounts/{cfg.account_sid}/Messages.json"
        try:
            response = await self.http.post(url, data=data, auth=self._auth(),
                                            timeout=cfg.timeout_seconds)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        if response.is_success:
            body = _json(response)
            sid = body.get("sid")
            log.debug("twilio message %s to %s", sid, delivery.target)
            return Sent(remote_id=str(sid) if sid else None,
                        detail=str(body["status"]) if body.get("status") else None)
        raise _status_error(response)


def _json(response: httpx.Response) -> Mapping[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, Mapping) else {}


def _status_error(response: httpx.Response) -> RetryableError | PermanentError:
    status = response.status_code
    body = _json(response)
    raw_code = body.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    detail = " ".join(str(body.get("message") or response.reason_phrase).split())[:300]
    text = f"Twilio {code}: {detail}" if code else f"Twilio HTTP {status}: {detail}"
    if status == 429 or code == 20429:
        return RetryableError(text, code=code or status,
                              retry_after=parse_retry_after(response.headers.get("retry-after")))
    if code in PERMANENT_CODES:
        return PermanentError(text, code=code)
    if status >= 500:
        return RetryableError(text, code=code or status, ambiguous=True,
                              retry_after=parse_retry_after(response.headers.get("retry-after")))
    if status == 401 or code == 20003:
        return PermanentError(f"Twilio authentication failed: {text}", code=code or status)
    return PermanentError(text, code=code or status)


def _transport_error(exc: httpx.HTTPError) -> RetryableError:
    """Never reached Twilio (connect, pool) -> not ambiguous; anything later -> ambiguous."""
    unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return RetryableError(f"Twilio request failed: {type(exc).__name__}", ambiguous=not unsent)


__all__ = ["DEFAULT_TEMPLATE", "PERMANENT_CODES", "TwilioSmsConfig", "TwilioSmsDestination"]
