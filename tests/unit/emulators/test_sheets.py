"""The emulated Sheets API v4: append/get, ranges, auth, errors and the write quota."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from alertpipe.emulators.grid import A1Range, RangeError, column_letters, parse_range
from alertpipe.emulators.state import EmulatorState

BASE = "/v4/spreadsheets/sheet-1"


def values_url(rng: str, *, append: bool = False, spreadsheet: str = BASE) -> str:
    return f"{spreadsheet}/values/{quote(rng, safe='')}" + (":append" if append else "")


async def append(client: httpx.AsyncClient, headers: dict[str, str], rng: str,
                 rows: list[list[Any]], **params: str) -> httpx.Response:
    query = {"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS", **params}
    return await client.post(values_url(rng, append=True), params=query, headers=headers,
                             json={"range": rng, "majorDimension": "ROWS", "values": rows})


async def test_append_then_get_round_trip_with_a_quoted_sheet_name(
        client: httpx.AsyncClient, auth_headers: dict[str, str], state: EmulatorState) -> None:
    header = ["id", "amount", "paid", "note"]
    first = await append(client, auth_headers, "'My Orders'!A:G", [header])
    assert first.status_code == 200, first.text
    assert first.json() == {"spreadsheetId": "sheet-1", "updates": {
        "spreadsheetId": "sheet-1", "updatedRange": "'My Orders'!A1:D1", "updatedRows": 1,
        "updatedColumns": 4, "updatedCells": 4}}

    rows = [["o-1", 450.5, True, "a:b!c"], ["o-2", 12, False, "it's"]]
    second = await append(client, auth_headers, "'My Orders'!A:G", rows)
    body = second.json()
    assert body["tableRange"] == "'My Orders'!A1:D1"
    assert body["updates"]["updatedRange"] == "'My Orders'!A2:D3"
    assert body["updates"]["updatedRows"] == 2 and body["updates"]["updatedCells"] == 8

    raw = await client.get(values_url("'My Orders'!A1:G"), headers=auth_headers,
                           params={"valueRenderOption": "UNFORMATTED_VALUE"})
    assert raw.json() == {"range": "'My Orders'!A1:G1000", "majorDimension": "ROWS",
                          "values": [header, *rows]}
    formatted = await client.get(values_url("'My Orders'"), headers=auth_headers)
    assert formatted.json()["range"] == "'My Orders'!A1:Z1000"
    assert formatted.json()["values"][1] == ["o-1", "450.5", "TRUE", "a:b!c"]

    inspected = (await client.get("/_emulator/sheets/sheet-1")).json()
    assert inspected["values"] == [header, *rows]
    assert inspected["sheets"]["Sheet1"] == []
    assert state.stats()["calls"]["sheets"] == {"spreadsheets.values.append": 2,
                                                "spreadsheets.values.get": 2}


@pytest.mark.parametrize(("rng", "updated"), [
    ("Orders", "Orders!A1:B1"),
    ("Orders!A:G", "Orders!A1:B1"),
    ("Orders!A1:G", "Orders!A1:B1"),
    ("Orders!A1", "Orders!A1:B1"),
    ("Orders!C5", "Orders!C5:D5"),
    ("A1:G1", "Sheet1!A1:B1"),
])
async def test_range_forms(client: httpx.AsyncClient, auth_headers: dict[str, str], rng: str,
                           updated: str) -> None:
    response = await append(client, auth_headers, rng, [["x", 1]])
    assert response.status_code == 200, response.text
    assert response.json()["updates"]["updatedRange"] == updated


async def test_get_single_cell_and_empty_range(client: httpx.AsyncClient,
                                               auth_headers: dict[str, str]) -> None:
    await append(client, auth_headers, "Orders", [["a", "b"], ["c", "d"]])
    cell = await client.get(values_url("Orders!B2"), headers=auth_headers)
    assert cell.json() == {"range": "Orders!B2", "majorDimension": "ROWS", "values": [["d"]]}
    empty = await client.get(values_url("Sheet1!A:C"), headers=auth_headers)
    assert empty.json() == {"range": "Sheet1!A1:C1000", "majorDimension": "ROWS"}


async def test_user_entered_and_columns(client: httpx.AsyncClient,
                                        auth_headers: dict[str, str]) -> None:
    response = await client.post(
        values_url("Orders", append=True), headers=auth_headers,
        params={"valueInputOption": "USER_ENTERED"},
        json={"majorDimension": "COLUMNS", "values": [["12", "'12"], ["true", "x"]]})
    assert response.status_code == 200
    rows = (await client.get("/_emulator/sheets/sheet-1?sheet=Orders")).json()["values"]
    assert rows == [[12, True], ["12", "x"]]


async def test_missing_or_invalid_value_input_option(client: httpx.AsyncClient,
                                                     auth_headers: dict[str, str]) -> None:
    missing = await client.post(values_url("Orders", append=True), headers=auth_headers,
                                json={"values": [[1]]})
    assert missing.status_code == 400
    assert missing.json()["error"] == {
        "code": 400, "status": "INVALID_ARGUMENT",
        "message": "'valueInputOption' is required but not specified"}
    invalid = await client.post(values_url("Orders", append=True), headers=auth_headers,
                                params={"valueInputOption": "RAWISH"}, json={"values": [[1]]})
    assert invalid.status_code == 400 and "RAWISH" in invalid.json()["error"]["message"]


async def test_unknown_sheet_and_unknown_spreadsheet(client: httpx.AsyncClient,
                                                     auth_headers: dict[str, str]) -> None:
    bad_range = await append(client, auth_headers, "Nope!A:G", [[1]])
    assert bad_range.status_code == 400
    assert bad_range.json()["error"]["message"] == "Unable to parse range: Nope!A:G"
    missing = await client.get("/v4/spreadsheets/unknown", headers=auth_headers)
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": 404, "message": "Requested entity was not found.",
                                        "status": "NOT_FOUND"}}
    missing_values = await client.get(values_url("Sheet1", spreadsheet="/v4/spreadsheets/x"),
                                      headers=auth_headers)
    assert missing_values.status_code == 404


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer ya29.forged"},
                                     {"Authorization": "Basic Zm9vOmJhcg=="}])
async def test_401_without_a_valid_token(client: httpx.AsyncClient, state: EmulatorState,
                                         headers: dict[str, str]) -> None:
    response = await append(client, headers, "Orders", [[1]])
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["status"] == "UNAUTHENTICATED" and error["code"] == 401
    assert error["message"].startswith("Request had invalid authentication credentials.")
    assert state.spreadsheets["sheet-1"].sheet("Orders").rows == []


async def test_expired_token_is_401(client: httpx.AsyncClient, state: EmulatorState,
                                    token: str, auth_headers: dict[str, str]) -> None:
    state.tokens[token].expires_at = state.clock() - 1
    response = await client.get(BASE, headers=auth_headers)
    assert response.status_code == 401


async def test_write_quota_per_service_account(client: httpx.AsyncClient, state: EmulatorState,
                                               auth_headers: dict[str, str]) -> None:
    quota = state.settings.sheets_write_quota_per_minute
    for i in range(quota):
        assert (await append(client, auth_headers, "Orders", [[i]])).status_code == 200
    refused = await append(client, auth_headers, "Orders", [["over"]])
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["message"].startswith("Quota exceeded for quota metric 'Write requests' and "
                                       "limit 'Write requests per minute per user' of service "
                                       "'sheets.googleapis.com'")
    assert state.stats()["quota_violations"] == 1
    assert len(state.spreadsheets["sheet-1"].sheet("Orders").rows) == quota
    reads = await client.get(values_url("Orders"), headers=auth_headers)
    assert reads.status_code == 200


async def test_quota_window_rolls(client: httpx.AsyncClient, state: EmulatorState,
                                  auth_headers: dict[str, str]) -> None:
    now = [1_000_000.0]
    state.clock = lambda: now[0]
    state.tokens[auth_headers["Authorization"][7:]].expires_at = now[0] + 3600
    for _ in range(state.settings.sheets_write_quota_per_minute):
        assert (await append(client, auth_headers, "Orders", [[1]])).status_code == 200
    assert (await append(client, auth_headers, "Orders", [[1]])).status_code == 429
    now[0] += 60.5
    assert (await append(client, auth_headers, "Orders", [[1]])).status_code == 200


def test_a1_parsing() -> None:
    titles = ["Sheet1", "My Orders", "it's"]
    assert parse_range("Sheet1", titles) == A1Range("Sheet1")
    assert parse_range("'My Orders'!A:G", titles) == A1Range("My Orders", 0, None, 6, None)
    assert parse_range("'it''s'!B2", titles) == A1Range("it's", 1, 1)
    assert parse_range("A1:C", titles) == A1Range("Sheet1", 0, 0, 2, None)
    assert parse_range("sheet1!AA10:AB", titles) == A1Range("Sheet1", 26, 9, 27, None)
    for bad in ("Orders", "Nope!A1", "Sheet1!A0", "Sheet1!?", "'My Orders'x"):
        with pytest.raises(RangeError):
            parse_range(bad, titles)
    assert [column_letters(i) for i in (0, 25, 26, 701, 702)] == ["A", "Z", "AA", "ZZ", "AAA"]
