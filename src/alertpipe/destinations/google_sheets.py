"""Google Sheets destination: the audit trail, one ``values.append`` call per batch.

A batch of up to ``batch_size`` deliveries becomes ONE
``POST {api_base}/v4/spreadsheets/{id}/values/{range}:append`` request with one row per
delivery; the body is written with :func:`alertpipe.jsoncodec.dumps`, so Decimal amounts go out
as exact JSON numbers. The outcome of that request is the outcome of every delivery in the batch
(errors are raised, which the engine applies to the whole batch).

Authentication is google-auth's service-account flow, run through the engine's HTTP client by
:mod:`alertpipe.destinations.google_auth`. A 401 from Sheets triggers exactly one forced token
refresh and one immediate re-send; a second 401 is permanent. Nothing else is retried here.

Delivery is at-least-once; the ``message_id`` column turns it into exactly-once rows. When ANY
delivery of a batch is ``ambiguous`` (its previous attempt may have appended: a read timeout, a
dropped connection, a 5xx), ``send_batch`` first reads that one column back::

    GET {api_base}/v4/spreadsheets/{id}/values/{column range}
        ?majorDimension=ROWS&valueRenderOption=UNFORMATTED_VALUE

The column range is the ``message_id`` column of the configured range, open-ended downwards:
``Orders!A:G`` with message_id second -> ``Orders!B:B``; ``Orders`` -> ``Orders!B:B``;
``'My Orders'!C5:I`` -> ``'My Orders'!D5:D``. Deliveries whose id is already in the column get
``Sent(remote_id=<that row, e.g. Orders!A7:G7>, detail=READ_BACK_DETAIL)``; only the others are
appended, in one call (none at all when every one was found). The read-back costs one extra read
request (Sheets' separate read quota) and only after ambiguous failures; it reads the whole
column, so its size grows with the sheet. Without a ``message_id`` column there is nothing to
look for: the batch is appended as usual and may be duplicated.

A read-back error is mapped like an append error (below) and applies to the whole batch, nothing
appended. Any error of a batch that held an ambiguous delivery is itself reported ambiguous, so
the next attempt reads back again (the engine remembers only the last attempt's flag).

Residual risk: nil for rows (the id in the sheet is the proof, and values.get is consistent with
values.append) except (a) someone edits or deletes rows or the id column, (b) columns are
reordered in the config between attempts, or (c) the earlier append is still in flight on
Google's side when the read-back runs (the engine's backoff makes this unlikely, not impossible).

Error mapping (Google's error body is ``{"error": {"code", "message", "status"}}``)::

    200                       -> Sent(remote_id=updates.updatedRange, detail=<its row>)
    401, then 401 again       -> PermanentError(code=401)
    429                       -> RetryableError(retry_after=Retry-After, code=429)
    5xx                       -> RetryableError(code=status, ambiguous=True)
    400 / 403 / 404 / other   -> PermanentError(code=status), message has Google's message+status
    ConnectError/ConnectTimeout/PoolTimeout -> RetryableError (not ambiguous)
    read timeout, dropped connection        -> RetryableError(ambiguous=True)

The same mapping (and the same single 401 refresh) applies to the read-back request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from pydantic import ConfigDict, Field

from alertpipe import jsoncodec
from alertpipe.destinations import register
from alertpipe.destinations._a1 import RANGE, IdColumn, id_column, row_of
from alertpipe.destinations._http import (
    json_body,
    keep_ambiguous,
    parse_retry_after,
    transport_error,
)
from alertpipe.destinations._sheet_rows import row as sheet_row
from alertpipe.destinations.base import Delivery, Destination, DestinationConfig, Outcome, Sent
from alertpipe.destinations.google_auth import TokenSource, load_service_account
from alertpipe.errors import (
    ConfigError,
    DeliveryError,
    PermanentError,
    RetryableError,
    UsageError,
)
from alertpipe.message import Message

log = logging.getLogger(__name__)

DEFAULT_COLUMNS = ["received_at", "message_id", "order_id", "customer", "amount", "currency",
                   "high_value"]
ROWS_PER_TURN = 100  # rows built between two turns of the event loop
#: ``Sent.detail`` of a delivery found in the sheet by the read-back (counted by the engine).
READ_BACK_DETAIL = "already in the sheet (found by read-back after an ambiguous failure)"


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
    # One batcher per Google account in a cluster: rows from every instance share its batches,
    # and the write quota (per project and user) is paced in one place.
    exclusive: ClassVar[bool] = True

    config: GoogleSheetsConfig

    def __init__(self, name: str, config: GoogleSheetsConfig) -> None:
        super().__init__(name, config)  # checks the config class
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
        self.id_column()
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
        """Append one row per delivery in one call, after a read-back if any is ambiguous."""
        if not deliveries:
            return []
        if self.http is None:
            raise UsageError(f"destination {self.name!r}: send_batch() before start()")
        ambiguous = any(d.ambiguous for d in deliveries)
        try:
            found = await self._read_back(deliveries) if ambiguous else {}
            todo = [d for d in deliveries if d.message.id not in found]
            appended = iter(await self._append_rows(todo) if todo else [])
        except DeliveryError as exc:
            keep_ambiguous(exc, ambiguous)
            raise
        if found:
            log.info("read-back found %d of %d rows already in %s", len(found),
                     len(deliveries), self.config.range, extra={"message_ids": list(found)})
        return [Sent(remote_id=found[d.message.id], detail=READ_BACK_DETAIL)
                if d.message.id in found else next(appended) for d in deliveries]

    async def _append_rows(self, deliveries: Sequence[Delivery]) -> list[Sent]:
        rows: list[list[Any]] = []
        for start in range(0, len(deliveries), ROWS_PER_TURN):
            if start:  # a batch of 500 rows takes ms to build: let intake run in between
                await asyncio.sleep(0)
            rows += [self.row(d.message) for d in deliveries[start:start + ROWS_PER_TURN]]
        content = jsoncodec.dumps(
            {"range": self.config.range, "majorDimension": "ROWS", "values": rows}
        ).encode("utf-8")
        response = await self._authorized(lambda token: self._append(content, token))
        updated = _updated_range(response)
        log.debug("appended %d rows to %s", len(rows), updated)
        return [Sent(remote_id=updated, detail=row_of(updated, i, len(rows)))
                for i in range(len(rows))]

    async def _read_back(self, deliveries: Sequence[Delivery]) -> dict[str, str]:
        """``{message id: its row range}`` for the batch's ids already in the id column."""
        column = self.id_column()
        if column is None:
            return {}
        cfg = self.config
        url = (f"{cfg.api_base.rstrip('/')}/v4/spreadsheets/{quote(cfg.spreadsheet_id, safe='')}"
               f"/values/{quote(column.a1, safe='')}")
        response = await self._authorized(lambda token: self._get(url, token))
        data = json_body(response)
        values = data.get("values")
        cells: list[Any] = []
        if isinstance(values, list):
            if data.get("majorDimension") == "COLUMNS":
                cells = list(values[0]) if values and isinstance(values[0], list) else []
            else:
                cells = [row[0] if isinstance(row, list) and row else None for row in values]
        sheet, first_row = column.sheet, column.first_row or 1
        echoed = RANGE.match(str(data.get("range") or ""))
        if echoed:
            sheet, first_row = echoed["sheet"], int(echoed["r1"])
        wanted = {d.message.id for d in deliveries}
        found: dict[str, str] = {}
        for offset, cell in enumerate(cells):
            value = cell if isinstance(cell, str) else None
            if value in wanted and value not in found:
                found[value] = column.row_range(sheet, first_row + offset)
        return found

    def id_column(self) -> IdColumn | None:
        """Where the ``message_id`` column lives in the configured range (None: not configured).

        Raises ``ConfigError`` when the range cannot be understood.
        """
        return id_column(self.config.range, self.config.columns)

    async def _authorized(
            self, call: Callable[[str], Awaitable[httpx.Response]]) -> httpx.Response:
        """``call(token)``; on 401 one forced refresh and one re-call; errors mapped."""
        assert self.http is not None
        tokens = self._token_source()
        token = await tokens.token(self.http)
        response = await call(token)
        if response.status_code == 401:
            token = await tokens.refresh_rejected(self.http, token)
            response = await call(token)
            if response.status_code == 401:
                raise PermanentError(
                    f"Google Sheets 401 {_google_error(response)} (after a fresh token for "
                    f"{tokens.email})", code=401)
        if not response.is_success:
            raise _status_error(response)
        return response

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
            raise transport_error(exc, "Google Sheets") from exc

    async def _get(self, url: str, token: str) -> httpx.Response:
        assert self.http is not None
        try:
            return await self.http.get(
                url, timeout=self.config.timeout_seconds,
                params={"majorDimension": "ROWS", "valueRenderOption": "UNFORMATTED_VALUE"},
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, "Google Sheets") from exc

    # -- rows ------------------------------------------------------------------------------
    def row(self, message: Message) -> list[Any]:
        """The sheet row for ``message``, one cell per configured column."""
        return sheet_row(message, self.config.columns)


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
        return RetryableError(text, code=status, throttled=True,
                              retry_after=parse_retry_after(response.headers.get("retry-after")))
    if status >= 500:
        return RetryableError(text, code=status, ambiguous=True,
                              retry_after=parse_retry_after(response.headers.get("retry-after")))
    return PermanentError(text, code=status)


def _updated_range(response: httpx.Response) -> str | None:
    try:
        updated = response.json()["updates"]["updatedRange"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(updated)


__all__ = ["DEFAULT_COLUMNS", "READ_BACK_DETAIL", "GoogleSheetsConfig", "GoogleSheetsDestination"]
