"""Google Sheets destination: the audit trail, one ``values.append`` call per batch.

A batch of up to ``batch_size`` deliveries becomes ONE
``POST {api_base}/v4/spreadsheets/{id}/values/{range}:append`` request with one row per
delivery; the body is written with :func:`alertpipe.jsoncodec.dumps`, so Decimal amounts go out
as exact JSON numbers. The outcome of that request is the outcome of every delivery in the batch
(errors are raised, which the engine applies to the whole batch).

Authentication is google-auth's service-account flow, run through the engine's HTTP client by
:mod:`alertpipe.destinations.google_auth`. A 401 from Sheets triggers exactly one forced token
refresh and one immediate re-send; a second 401 is permanent. Nothing else is retried here.

Delivery is at-least-once: a batch may reach the sheet twice (say, after a read timeout). The
``message_id`` column is what lets such duplicates be found later, so keep it in ``columns``.

Error mapping (Google's error body is ``{"error": {"code", "message", "status"}}``)::

    200                       -> Sent(remote_id=updates.updatedRange) for every delivery
    401, then 401 again       -> PermanentError(code=401)
    429                       -> RetryableError(retry_after=Retry-After, code=429)
    5xx                       -> RetryableError(code=status, ambiguous=True)
    400 / 403 / 404 / other   -> PermanentError(code=status), message has Google's message+status
    ConnectError/ConnectTimeout/PoolTimeout -> RetryableError (not ambiguous)
    read timeout, dropped connection        -> RetryableError(ambiguous=True)
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from pydantic import ConfigDict, Field

from alertpipe import jsoncodec
from alertpipe.destinations import register
from alertpipe.destinations.base import Delivery, Destination, DestinationConfig, Outcome, Sent
from alertpipe.destinations.google_auth import TokenSource, load_service_account, parse_retry_after
from alertpipe.errors import ConfigError, PermanentError, RetryableError, UsageError
from alertpipe.message import Message

log = logging.getLogger(__name__)

DEFAULT_COLUMNS = ["received_at", "message_id", "order_id", "customer", "amount", "currency",
                   "high_value"]
_MISSING = object()
_RANGE = re.compile(r"^(?P<sheet>.+)!(?P<c1>[A-Z]+)(?P<r1>\d+)(?::(?P<c2>[A-Z]+)(?P<r2>\d+))?$")


class GoogleSheetsConfig(DestinationConfig):
    """The ``google_sheets`` destination's settings."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["google_sheets"] = "google_sheets"
    spreadsheet_id: str
    range: str = "Sheet1!A:G"
    credentials_file: str
    columns: list[str] = Field(default_factory=lambda: list(DEFAULT_COLUMNS), min_length=1)
    api_base: str = "https://sheets.googleapis.com"
    batch_size: int = Field(500, ge=1, le=10_000)
    max_requests_per_minute: float = Field(50, gt=0)
    timeout_seconds: float = Field(10, gt=0)
    scopes: list[str] = Field(
        default_factory=lambda: ["https://www.googleapis.com/auth/spreadsheets"], min_length=1)


@register
class GoogleSheetsDestination(Destination):
    """Appends one row per message to a Google Sheet; one API call per batch."""

    type_name: ClassVar[str] = "google_sheets"
    Config: ClassVar[type[DestinationConfig]] = GoogleSheetsConfig

    config: GoogleSheetsConfig

    def __init__(self, name: str, config: DestinationConfig) -> None:
        if not isinstance(config, GoogleSheetsConfig):
            raise UsageError(f"{type(self).__name__} needs a GoogleSheetsConfig, got "
                             f"{type(config).__name__}")
        super().__init__(name, config)
        self.config = config
        self.batch_size = config.batch_size
        self.concurrency = 1  # appends in order; Google's quota is per user anyway
        self.max_requests_per_minute = config.max_requests_per_minute
        self._tokens: TokenSource | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def check(self) -> None:
        if not self.config.spreadsheet_id.strip():
            raise ConfigError("google_sheets: spreadsheet_id is missing "
                              "(set SHEETS_SPREADSHEET_ID)", key="spreadsheet_id")
        if not self.config.range.strip():
            raise ConfigError("google_sheets: range is empty", key="range")
        self._token_source()

    async def start(self, http: httpx.AsyncClient) -> None:
        await super().start(http)
        self._token_source()

    def _token_source(self) -> TokenSource:
        if self._tokens is None:
            creds = load_service_account(self.config.credentials_file, self.config.scopes)
            self._tokens = TokenSource(creds, timeout=self.config.timeout_seconds)
        return self._tokens

    # -- routing ---------------------------------------------------------------------------
    def rate_key(self) -> str:
        email = self._tokens.email if self._tokens else _peek_client_email(
            self.config.credentials_file)
        return f"google_sheets:{email}" if email else super().rate_key()

    def describe(self, delivery: Delivery | None = None) -> str:
        return f"sheet {self.config.spreadsheet_id} {self.config.range}"

    # -- sending ---------------------------------------------------------------------------
    async def send(self, delivery: Delivery) -> Sent:
        outcome = (await self.send_batch([delivery]))[0]
        if isinstance(outcome, Sent):
            return outcome
        raise outcome

    async def send_batch(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        if not deliveries:
            return []
        if self.http is None:
            raise UsageError(f"destination {self.name!r}: send_batch() before start()")
        tokens = self._token_source()
        rows = [self.row(d.message) for d in deliveries]
        content = jsoncodec.dumps(
            {"range": self.config.range, "majorDimension": "ROWS", "values": rows}
        ).encode("utf-8")
        token = await tokens.token(self.http)
        response = await self._append(content, token)
        if response.status_code == 401:
            token = await tokens.refresh_rejected(self.http, token)
            response = await self._append(content, token)
            if response.status_code == 401:
                raise PermanentError(
                    f"Google Sheets 401 {_google_error(response)} (after a fresh token for "
                    f"{tokens.email})", code=401)
        if not response.is_success:
            raise _status_error(response)
        updated = _updated_range(response)
        log.debug("appended %d rows to %s", len(rows), updated)
        return [Sent(remote_id=updated, detail=_row_range(updated, i, len(rows)))
                for i in range(len(rows))]

    async def _append(self, content: bytes, token: str) -> httpx.Response:
        assert self.http is not None
        cfg = self.config
        url = (f"{cfg.api_base.rstrip('/')}/v4/spreadsheets/{quote(cfg.spreadsheet_id, safe='')}"
               f"/values/{quote(cfg.range, safe='')}:append")
        try:
            return await self.http.post(
                url, content=content, timeout=cfg.timeout_seconds,
                params={"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"},
                headers={"Authorization": f"Bearer {token}",
                         "Content-Type": "application/json; charset=utf-8"},
            )
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc

    # -- rows ------------------------------------------------------------------------------
    def row(self, message: Message) -> list[Any]:
        """The sheet row for ``message``, one cell per configured column."""
        return [_cell(_column_value(message, column)) for column in self.config.columns]


def _column_value(message: Message, column: str) -> Any:
    if column == "message_id":
        return message.id
    if column == "received_at":
        at = message.received_at
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if column == "channel":
        return message.channel
    value = _lookup(message.body, column)
    if value is _MISSING and column == "customer":
        value = _lookup(message.body, "customer_name")
    return None if value is _MISSING else value


def _lookup(body: Mapping[str, Any], path: str) -> Any:
    """``body[path]``, else a dotted walk through mappings and list indices, else ``_MISSING``."""
    if path in body:
        return body[path]
    current: Any = body
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif (isinstance(current, Sequence) and not isinstance(current, str | bytes)
              and part.isdigit() and int(part) < len(current)):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _cell(value: Any) -> Any:
    """A JSON-ready cell: None -> "", bool and numbers kept, containers -> compact JSON text."""
    if value is None:
        return ""
    if isinstance(value, bool | int | Decimal | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return jsoncodec.dumps(value)
    return str(value)


def _peek_client_email(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            email = json.load(f).get("client_email")
    except (OSError, ValueError, AttributeError):
        return None
    return email if isinstance(email, str) and email else None


def _google_error(response: httpx.Response) -> str:
    """``"<STATUS>: <message>"`` from Google's error body, or a short text fallback."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, Mapping):
        status, message = error.get("status"), error.get("message")
        text = ": ".join(str(p) for p in (status, message) if p)
    else:
        text = " ".join(response.text.split())[:200] or response.reason_phrase
    return text[:500]


def _status_error(response: httpx.Response) -> RetryableError | PermanentError:
    status = response.status_code
    text = f"Google Sheets {status} {_google_error(response)}"
    if status == 429:
        return RetryableError(text, code=status,
                              retry_after=parse_retry_after(response.headers.get("retry-after")))
    if status >= 500:
        return RetryableError(text, code=status, ambiguous=True,
                              retry_after=parse_retry_after(response.headers.get("retry-after")))
    return PermanentError(text, code=status)


def _transport_error(exc: httpx.HTTPError) -> RetryableError:
    """Never reached the server (connect, pool) -> not ambiguous; anything later -> ambiguous."""
    unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return RetryableError(f"Google Sheets request failed: {type(exc).__name__}",
                          ambiguous=not unsent)


def _updated_range(response: httpx.Response) -> str | None:
    try:
        updated = response.json()["updates"]["updatedRange"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(updated)


def _row_range(updated: str | None, index: int, count: int) -> str:
    """The one-row range of row ``index`` inside ``updated`` ("Sheet1!A7:G9" -> "Sheet1!A8:G8")."""
    match = _RANGE.match(updated or "")
    if not match:
        return f"row {index + 1} of {count}"
    row = int(match["r1"]) + index
    return f"{match['sheet']}!{match['c1']}{row}:{match['c2'] or match['c1']}{row}"


__all__ = ["DEFAULT_COLUMNS", "GoogleSheetsConfig", "GoogleSheetsDestination"]
