"""The emulated Google Sheets API v4: ``spreadsheets.get``, ``values.append``, ``values.get``.

Requests need ``Authorization: Bearer <token>`` from the emulated token endpoint; writes are
limited to ``sheets_write_quota_per_minute`` per service account in a rolling minute (429
``RESOURCE_EXHAUSTED`` beyond, counted in ``quota_violations``). Ranges arrive percent-encoded
in the path, including the ``:append`` suffix; the raw path is used to tell them apart.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alertpipe.emulators.faults import guarded
from alertpipe.emulators.google import google_error
from alertpipe.emulators.grid import Cell, RangeError, parse_range
from alertpipe.emulators.state import EmulatorState, Spreadsheet

__all__ = ["sheets_fault", "spreadsheet_get", "values_route"]

SCOPE = "https://www.googleapis.com/auth/spreadsheets"
READ_SCOPES = frozenset({SCOPE, SCOPE + ".readonly", "https://www.googleapis.com/auth/drive",
                         "https://www.googleapis.com/auth/drive.readonly",
                         "https://www.googleapis.com/auth/drive.file"})
WRITE_SCOPES = frozenset({SCOPE, "https://www.googleapis.com/auth/drive",
                          "https://www.googleapis.com/auth/drive.file"})
UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project.")
QUOTA_MESSAGE = (
    "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute per "
    "user' of service 'sheets.googleapis.com' for consumer 'project_number:{project}'.")
QUOTA_INFO = {
    "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
    "domain": "googleapis.com",
    "metadata": {"service": "sheets.googleapis.com",
                 "quota_metric": "sheets.googleapis.com/write_requests",
                 "quota_limit": "WriteRequestsPerMinutePerUser"}}
INPUT_OPTIONS = ("RAW", "USER_ENTERED")
INSERT_OPTIONS = ("INSERT_ROWS", "OVERWRITE")
RENDER_OPTIONS = ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA")


def _project_number(email: str) -> int:
    return sum(ord(char) for char in email) * 7919


def sheets_fault(status: int) -> Response:
    """The Sheets API's answer for an injected fault status."""
    if status == 429:
        return google_error(429, QUOTA_MESSAGE.format(project="0"), "RESOURCE_EXHAUSTED")
    return google_error(status)


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _authorize(request: Request, scopes: frozenset[str]) -> str:
    """Return the caller's service account, or raise ``_Refused`` with Google's 401/403."""
    state: EmulatorState = request.app.state.emulator
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    grant = state.token_grant(token.strip()) if scheme.lower() == "bearer" else None
    if grant is None:
        raise _Refused(google_error(401, UNAUTHENTICATED, headers={
            "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
                                'error="invalid_token"'}))
    if not grant.scopes & scopes:
        raise _Refused(google_error(403, "Request had insufficient authentication scopes.",
                                    details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                              "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                                              "domain": "googleapis.com"}]))
    return grant.client_email


def _spreadsheet(state: EmulatorState, spreadsheet_id: str) -> Spreadsheet:
    book = state.spreadsheets.get(spreadsheet_id)
    if book is None:
        raise _Refused(google_error(404, "Requested entity was not found."))
    return book


def _display(cell: Cell, render: str) -> Cell:
    if render != "FORMATTED_VALUE" or cell is None:
        return "" if cell is None else cell
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell)


def _user_entered(cell: Cell) -> Cell:
    if not isinstance(cell, str):
        return cell
    if cell.startswith("'"):
        return cell[1:]
    if cell.upper() in ("TRUE", "FALSE"):
        return cell.upper() == "TRUE"
    for kind in (int, float):
        try:
            return kind(cell.replace(",", ""))
        except ValueError:
            continue
    return cell


def _option(request: Request, name: str, allowed: tuple[str, ...], default: str | None,
            proto: str) -> str:
    value = request.query_params.get(name, default)
    if value is None:
        raise _Refused(google_error(400, f"'{name}' is required but not specified"))
    if value not in allowed:
        field = "".join("_" + c.lower() if c.isupper() else c for c in name)
        raise _Refused(google_error(400, f"Invalid value at '{field}' "
                                    f"(type.googleapis.com/google.apps.sheets.v4.{proto}), "
                                    f"\"{value}\""))
    return value


async def _parse_values(request: Request) -> list[list[Cell]]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise _Refused(google_error(400, "Invalid JSON payload received.")) from None
    values = body.get("values", []) if isinstance(body, dict) else None
    if not isinstance(values, list) or not all(isinstance(row, list) for row in values):
        raise _Refused(google_error(400, "Invalid JSON payload received. 'values' must be a "
                                    "list of lists."))
    for i, row in enumerate(values):
        for j, cell in enumerate(row):
            if cell is not None and not isinstance(cell, str | int | float | bool):
                raise _Refused(google_error(400, f"Invalid values[{i}][{j}]: {json.dumps(cell)}"))
    if body.get("majorDimension", "ROWS") == "COLUMNS":
        width = max((len(col) for col in values), default=0)
        values = [[col[r] if r < len(col) else None for col in values] for r in range(width)]
    return values


def _split_values_path(request: Request) -> tuple[str, bool]:
    """Return (decoded range, is_append) from the raw path after ``/values/``."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1").split("?")[0] if raw else request.url.path
    encoded = path.split("/values/", 1)[1]
    append = encoded.endswith(":append")
    if append:
        encoded = encoded[: -len(":append")]
    return unquote(encoded), append


async def spreadsheet_get(request: Request) -> Response:
    """``GET /v4/spreadsheets/{id}``: the spreadsheet resource."""
    state: EmulatorState = request.app.state.emulator
    spreadsheet_id = request.path_params["spreadsheet_id"]

    async def handle() -> Response:
        try:
            _authorize(request, READ_SCOPES)
            book = _spreadsheet(state, spreadsheet_id)
        except _Refused as refused:
            return refused.response
        with state.lock:
            return JSONResponse({
                "spreadsheetId": spreadsheet_id,
                "properties": {"title": f"alertpipe emulator {spreadsheet_id}", "locale": "en_US",
                               "autoRecalc": "ON_CHANGE", "timeZone": "Etc/GMT"},
                "sheets": [{"properties": sheet.properties()} for sheet in book.sheets],
                "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit",
            })

    return await guarded(request, "sheets", "spreadsheets.get", sheets_fault, handle)


async def values_route(request: Request) -> Response:
    """``GET .../values/{range}`` and ``POST .../values/{range}:append``."""
    state: EmulatorState = request.app.state.emulator
    text, append = _split_values_path(request)
    if append != (request.method == "POST"):
        return google_error(404, "Requested entity was not found.")
    method = "spreadsheets.values.append" if append else "spreadsheets.values.get"
    handler = _append if append else _get

    async def handle() -> Response:
        try:
            return await handler(request, state, text)
        except _Refused as refused:
            return refused.response

    return await guarded(request, "sheets", method, sheets_fault, handle)


def _resolve(state: EmulatorState, spreadsheet_id: str, text: str) -> tuple[Spreadsheet, Any]:
    book = _spreadsheet(state, spreadsheet_id)
    try:
        return book, parse_range(text, book.titles())
    except RangeError:
        raise _Refused(google_error(400, f"Unable to parse range: {text}")) from None


async def _append(request: Request, state: EmulatorState, text: str) -> Response:
    email = _authorize(request, WRITE_SCOPES)
    spreadsheet_id = request.path_params["spreadsheet_id"]
    input_option = _option(request, "valueInputOption", INPUT_OPTIONS, None, "ValueInputOption")
    insert = _option(request, "insertDataOption", INSERT_OPTIONS, "OVERWRITE", "InsertDataOption")
    book, rng = _resolve(state, spreadsheet_id, text)
    values = await _parse_values(request)
    if input_option == "USER_ENTERED":
        values = [[_user_entered(cell) for cell in row] for row in values]
    if not state.take_write_quota(email):
        account = state.accounts.get(email)
        project = _project_number(account.client_email) if account else 0
        return google_error(429, QUOTA_MESSAGE.format(project=project), details=[QUOTA_INFO])
    with state.lock:
        sheet = book.sheet(rng.sheet)
        table, updated, columns, cells = sheet.append(rng, values, insert == "INSERT_ROWS")
        if book.default_sheet is None:
            book.default_sheet = sheet.title
    state.notify()
    result: dict[str, Any] = {"spreadsheetId": spreadsheet_id}
    if table:
        result["tableRange"] = table
    result["updates"] = {"spreadsheetId": spreadsheet_id, "updatedRange": updated,
                         "updatedRows": len(values), "updatedColumns": columns,
                         "updatedCells": cells}
    return JSONResponse(result)


async def _get(request: Request, state: EmulatorState, text: str) -> Response:
    _authorize(request, READ_SCOPES)
    render = _option(request, "valueRenderOption", RENDER_OPTIONS, "FORMATTED_VALUE",
                     "ValueRenderOption")
    book, rng = _resolve(state, request.path_params["spreadsheet_id"], text)
    with state.lock:
        sheet = book.sheet(rng.sheet)
        rows = sheet.read(rng)
        body: dict[str, Any] = {"range": rng.format(sheet.row_count, sheet.col_count),
                                "majorDimension": "ROWS"}
    if rows:
        body["values"] = [[_display(cell, render) for cell in row] for row in rows]
    return JSONResponse(body)
