"""Inspection and fault-injection endpoints under ``/_emulator`` (tests and demos only).

``GET /_emulator/sheets/{id}`` answers ``{"spreadsheetId", "sheets": {title: rows}, "values"}``
where ``values`` are the rows of the sheet named by ``?sheet=``, else of the first sheet that
received an append, else of the first sheet. Rows keep their JSON types; empty cells are
``null``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alertpipe.emulators.faults import Fault, FaultSpecError
from alertpipe.emulators.state import EmulatorState

__all__ = ["admin_routes"]


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


async def sms_log(request: Request) -> Response:
    """Every accepted message as its form fields plus ``sid`` and ``received_at``."""
    state = _state(request)
    with state.lock:
        return JSONResponse(list(state.sms_log))


async def sheet_rows(request: Request) -> Response:
    """The rows of one spreadsheet (see the module docstring)."""
    state = _state(request)
    spreadsheet_id = request.path_params["spreadsheet_id"]
    with state.lock:
        book = state.spreadsheets.get(spreadsheet_id)
        if book is None:
            return JSONResponse({"error": f"no spreadsheet {spreadsheet_id!r}"}, status_code=404)
        sheets = {sheet.title: [list(row) for row in sheet.rows] for sheet in book.sheets}
        chosen = request.query_params.get("sheet") or book.default_sheet or book.sheets[0].title
    if chosen not in sheets:
        return JSONResponse({"error": f"no sheet {chosen!r}"}, status_code=404)
    return JSONResponse({"spreadsheetId": spreadsheet_id, "sheet": chosen, "sheets": sheets,
                         "values": sheets[chosen]})


async def add_spreadsheet(request: Request) -> Response:
    """``{"id": ..., "sheets": [titles]}`` creates a spreadsheet (no-op if it exists)."""
    data: Any = await request.json()
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        return JSONResponse({"error": "expected {\"id\": str, \"sheets\": [str]}"},
                            status_code=400)
    titles = data.get("sheets") or ["Sheet1", "Orders"]
    book = _state(request).add_spreadsheet(data["id"], [str(t) for t in titles])
    return JSONResponse({"spreadsheetId": book.spreadsheet_id, "sheets": book.titles()},
                        status_code=201)


async def stats(request: Request) -> Response:
    """Counters: calls per API and method, quota violations, tokens issued, faults fired."""
    return JSONResponse(_state(request).stats())


async def faults(request: Request) -> Response:
    """POST queues a fault (JSON, see ``faults``); GET lists pending; DELETE clears them."""
    state = _state(request)
    if request.method == "DELETE":
        state.faults.clear()
        return JSONResponse({"pending": []})
    if request.method == "POST":
        try:
            data: Any = await request.json()
            items = data if isinstance(data, list) else [data]
            parsed = [Fault.from_json(item) for item in items]
        except (ValueError, FaultSpecError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        for fault in parsed:
            state.faults.add(fault)
        return JSONResponse({"pending": state.faults.pending()}, status_code=201)
    return JSONResponse({"pending": state.faults.pending()})


async def revoke_tokens(request: Request) -> Response:
    """Invalidate every issued access token (the client's 401 → refresh path)."""
    return JSONResponse({"revoked": _state(request).revoke_tokens()})


async def reset(request: Request) -> Response:
    """Clear messages, rows, counters and faults."""
    _state(request).reset()
    return JSONResponse({"reset": True})


def admin_routes() -> list[tuple[str, Any, list[str]]]:
    """(path, endpoint, methods) for every ``/_emulator`` route."""
    return [
        ("/_emulator/sms", sms_log, ["GET"]),
        ("/_emulator/sheets/{spreadsheet_id}", sheet_rows, ["GET"]),
        ("/_emulator/spreadsheets", add_spreadsheet, ["POST"]),
        ("/_emulator/stats", stats, ["GET"]),
        ("/_emulator/faults", faults, ["GET", "POST", "DELETE"]),
        ("/_emulator/tokens/revoke", revoke_tokens, ["POST"]),
        ("/_emulator/reset", reset, ["POST"]),
    ]
