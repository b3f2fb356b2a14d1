"""Twilio SMS destination: the real-time alert, one Messages API call per recipient.

Fan-out happens at intake: :meth:`TwilioSmsDestination.targets` returns every recipient, and
the engine writes one delivery row per recipient. Each row succeeds, retries or dead-letters on
its own, so a failure to one number never re-sends the text to the numbers that already got it.

``send`` makes one ``POST {api_base}/2010-04-01/Accounts/{sid}/Messages.json`` with HTTP
Basic auth (``account_sid:auth_token`` or ``api_key:api_secret``). It is never retried here: a
silent POST retry can text someone twice, so the engine decides, knowing ``ambiguous``.

Lookup before a re-send. Twilio has no idempotency key. When ``delivery.ambiguous`` is true (the
previous attempt may have created the message), ``send`` first lists::

    GET {api_base}/2010-04-01/Accounts/{sid}/Messages.json
        ?To=<target>&From=<from_number>&DateSent>=<received_at's UTC date minus one day>
        &PageSize=50

(``From`` is left out with a messaging service alone: the list has no service filter; the
``messaging_service_sid`` of each result is compared instead), following ``next_page_uri`` for at
most ``LOOKUP_MAX_PAGES`` pages. A message with the same ``to`` and exactly the same rendered
``body`` counts as the earlier attempt: ``Sent(remote_id=<its SID>, detail=FOUND_BY_LOOKUP)``,
no POST. Lookup errors map like send errors (429/5xx retryable, 401 permanent). Any error of an
ambiguous delivery is reported ambiguous again, so the next attempt looks up again.

Residual duplicate risk (count it: ``Sent.detail == FOUND_BY_LOOKUP`` marks the suppressions):

- a message created but not yet visible in the list: the list is eventually consistent, a
  message still ``queued``/``accepted`` may have no ``date_sent`` and so miss the DateSent
  filter, and an earlier request may still be in flight at Twilio -> a second text;
- a body Twilio changed (trial-account prefix, a messaging service's smart encoding) -> no
  match -> a second text; so is a match beyond the first ``LOOKUP_MAX_PAGES`` pages (more than
  500 texts to that number since the day before the message arrived);
- the opposite error: two identical texts legitimately sent to one number within the window
  look like one, and the lookup wrongly suppresses the second. Put ``{message_id}`` (or a short
  ref such as the order id) in ``template`` to make the match exact.

SMS pumping cap. ``max_per_recipient_per_hour`` (default 30, 0 = no cap) bounds successful sends
per recipient in a sliding hour, in this process (see :mod:`._recipient_cap`); a send beyond it
raises ``RetryableError(code="recipient_cap", retry_after=...)`` without calling Twilio. Once
every recipient has hit the cap, the worker claims nothing until the first has room
(:meth:`ready_in`): the texts stay pending without spending attempts.

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
    recipient cap reached                   -> RetryableError(code="recipient_cap")

The text is ``template.format_map(fields)`` over the body plus ``message_id`` and ``channel``,
a missing field rendering as "" (see :mod:`._sms_template`); a template that cannot render is a
``ConfigError`` at construction.

No log line and no error message carries the auth token or the API secret.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, timedelta
from typing import Any, ClassVar, Literal

import httpx
from pydantic import ConfigDict, Field, SecretStr, field_validator

from alertpipe.destinations import register
from alertpipe.destinations._http import json_body, keep_ambiguous, transport_error
from alertpipe.destinations._recipient_cap import RecipientWindow
from alertpipe.destinations._sms_template import check_template, render
from alertpipe.destinations._twilio_errors import PERMANENT_CODES, status_error
from alertpipe.destinations.base import (
    Delivery,
    Destination,
    DestinationConfig,
    Sent,
    optional_secret,
)
from alertpipe.errors import (
    ConfigError,
    CredentialsError,
    DeliveryError,
    PermanentError,
    RetryableError,
    UsageError,
)
from alertpipe.message import Message

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "High-value order {order_id}: ${amount} {currency} from {customer_name}"
#: ``Sent.detail`` of a delivery found by the lookup instead of sent again (counted by the engine).
FOUND_BY_LOOKUP = "found by lookup after an ambiguous failure"
LOOKUP_PAGE_SIZE = 50
LOOKUP_MAX_PAGES = 10

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_API_KEY = re.compile(r"^SK[0-9a-fA-F]{32}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")


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
    max_per_recipient_per_hour: int = Field(30, ge=0)

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
        return optional_secret(value)

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


@register
class TwilioSmsDestination(Destination):
    """Sends one SMS per delivery (one delivery per recipient) through Twilio's Messages API."""

    type_name: ClassVar[str] = "twilio_sms"
    Config: ClassVar[type[DestinationConfig]] = TwilioSmsConfig

    config: TwilioSmsConfig

    def __init__(self, name: str, config: TwilioSmsConfig) -> None:
        super().__init__(name, config)  # checks the config class
        self.config = config
        self.batch_size = 1
        self.concurrency = config.concurrency
        self.max_requests_per_minute = config.max_requests_per_minute
        self.recipient_window = RecipientWindow(config.max_per_recipient_per_hour)
        check_template(self.config.template)

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
        check_template(self.config.template)

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

    def ready_in(self) -> float:
        """While every recipient has hit the SMS cap, the seconds until the first has room: the
        worker claims nothing meanwhile, so capped texts wait without spending attempts (with
        some recipients still free, each capped send raises ``recipient_cap`` as documented)."""
        window = self.recipient_window
        if window.cap <= 0 or not self.config.to:
            return 0.0
        return min(window.wait(r) for r in self.config.to)

    # -- sending ---------------------------------------------------------------------------
    def render(self, message: Message) -> str:
        """The SMS text for ``message``, truncated to Twilio's 1600-character limit."""
        return render(self.config.template, message)

    async def send(self, delivery: Delivery) -> Sent:
        if self.http is None:
            raise UsageError(f"destination {self.name!r}: send() before start()")
        if not delivery.target:
            raise PermanentError("twilio_sms: delivery has no recipient")
        target, body = delivery.target, self.render(delivery.message)
        try:
            stamp = self.recipient_window.reserve(target)
        except RetryableError as exc:
            raise keep_ambiguous(exc, delivery.ambiguous) from None
        try:
            if delivery.ambiguous:
                sid = await self._lookup(target, body, delivery)
                if sid is not None:
                    log.info("twilio message %s to %s found by lookup; not sent again", sid,
                             target, extra={"message_id": delivery.message.id})
                    return Sent(remote_id=sid, detail=FOUND_BY_LOOKUP)
            return await self._create(target, body)
        except BaseException as exc:
            self.recipient_window.release(target, stamp)
            if isinstance(exc, DeliveryError):
                keep_ambiguous(exc, delivery.ambiguous)
            raise

    async def _create(self, target: str, body: str) -> Sent:
        assert self.http is not None
        cfg = self.config
        data = {"To": target, "Body": body}
        if cfg.messaging_service_sid:
            data["MessagingServiceSid"] = cfg.messaging_service_sid
        if cfg.from_number:
            data["From"] = cfg.from_number
        try:
            response = await self.http.post(self._messages_url(), data=data, auth=self._auth(),
                                            timeout=cfg.timeout_seconds)
        except httpx.HTTPError as exc:
            raise transport_error(exc, "Twilio") from exc
        if response.is_success:
            reply = json_body(response)
            sid = reply.get("sid")
            log.debug("twilio message %s to %s", sid, target)
            return Sent(remote_id=str(sid) if sid else None,
                        detail=str(reply["status"]) if reply.get("status") else None)
        raise status_error(response)

    async def _lookup(self, target: str, body: str, delivery: Delivery) -> str | None:
        """The SID of a message already created for this delivery, or ``None``."""
        assert self.http is not None
        cfg = self.config
        received = delivery.message.received_at
        received = (received if received.tzinfo else received.replace(tzinfo=UTC)).astimezone(UTC)
        params = {"To": target, "DateSent>": (received - timedelta(days=1)).date().isoformat(),
                  "PageSize": str(LOOKUP_PAGE_SIZE)}
        if cfg.from_number:
            params["From"] = cfg.from_number
        url: str | None = self._messages_url()
        query: dict[str, str] | None = params
        for _ in range(LOOKUP_MAX_PAGES):
            if url is None:
                break
            try:
                response = await self.http.get(url, params=query, auth=self._auth(),
                                               timeout=cfg.timeout_seconds)
            except httpx.HTTPError as exc:
                raise transport_error(exc, "Twilio") from exc
            if not response.is_success:
                raise status_error(response)
            page = json_body(response)
            messages = page.get("messages")
            for message in messages if isinstance(messages, list) else []:
                if isinstance(message, Mapping) and self._same(message, target, body):
                    return str(message["sid"])
            next_uri = page.get("next_page_uri")
            url = f"{cfg.api_base.rstrip('/')}{next_uri}" if isinstance(next_uri, str) \
                and next_uri.startswith("/") else None
            query = None  # next_page_uri carries the query (params={} would erase it)
        return None

    def _same(self, message: Mapping[str, Any], target: str, body: str) -> bool:
        cfg = self.config
        if not message.get("sid") or message.get("to") != target or message.get("body") != body:
            return False
        if cfg.from_number:
            return message.get("from") == cfg.from_number
        return message.get("messaging_service_sid") == cfg.messaging_service_sid

    def _messages_url(self) -> str:
        cfg = self.config
        return f"{cfg.api_base.rstrip('/')}/2010-04-01/Accounts/{cfg.account_sid}/Messages.json"


__all__ = ["DEFAULT_TEMPLATE", "FOUND_BY_LOOKUP", "LOOKUP_MAX_PAGES", "PERMANENT_CODES",
           "RecipientWindow", "TwilioSmsConfig", "TwilioSmsDestination"]
