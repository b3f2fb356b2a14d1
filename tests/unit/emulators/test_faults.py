"""Fault injection, inspection, reset and the real-socket server."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from alertpipe.emulators import EmulatorSettings, running_emulator
from alertpipe.emulators.state import EmulatorState

ORDERS_APPEND = (f"/v4/spreadsheets/sheet-1/values/{quote('Orders!A:G', safe='')}:append"
                 "?valueInputOption=RAW&insertDataOption=INSERT_ROWS")


def _messages_url(settings: EmulatorSettings) -> str:
    return f"/2010-04-01/Accounts/{settings.twilio_account_sid}/Messages.json"


def _sms(settings: EmulatorSettings) -> dict[str, str]:
    return {"To": "+14155550100", "From": settings.twilio_from_numbers[0], "Body": "alert"}


async def test_twilio_429_with_retry_after_then_normal(
        client: httpx.AsyncClient, settings: EmulatorSettings, state: EmulatorState) -> None:
    posted = await client.post("/_emulator/faults", json={
        "api": "twilio", "status": 429, "count": 2, "retry_after": 2})
    assert posted.status_code == 201
    auth = (settings.twilio_account_sid, settings.twilio_auth_token)
    for _ in range(2):
        refused = await client.post(_messages_url(settings), auth=auth, data=_sms(settings))
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "2"
        assert refused.json() == {"code": 20429, "message": "Too Many Requests",
                                  "more_info": "https://www.twilio.com/docs/errors/20429",
                                  "status": 429}
    assert state.sms_log == []
    accepted = await client.post(_messages_url(settings), auth=auth, data=_sms(settings))
    assert accepted.status_code == 201
    stats = (await client.get("/_emulator/stats")).json()
    assert stats["faults_fired"] == {"twilio": 2}
    assert stats["calls"]["twilio"]["messages.create"] == 3
    assert stats["faults_pending"] == []


async def test_sheets_503_in_google_shape_and_method_filter(
        client: httpx.AsyncClient, auth_headers: dict[str, str]) -> None:
    await client.post("/_emulator/faults", json={
        "api": "sheets", "status": 503, "method": "spreadsheets.values.append"})
    metadata = await client.get("/v4/spreadsheets/sheet-1", headers=auth_headers)
    assert metadata.status_code == 200
    failed = await client.post(ORDERS_APPEND, headers=auth_headers, json={"values": [[1]]})
    assert failed.status_code == 503
    assert failed.json() == {"error": {"code": 503, "status": "UNAVAILABLE",
                                       "message": "The service is currently unavailable."}}
    assert "Retry-After" not in failed.headers
    ok = await client.post(ORDERS_APPEND, headers=auth_headers, json={"values": [[1]]})
    assert ok.status_code == 200


async def test_after_effect_fault_applies_the_write_then_fails(
        client: httpx.AsyncClient, auth_headers: dict[str, str], state: EmulatorState) -> None:
    await client.post("/_emulator/faults", json={"api": "sheets", "status": 500,
                                                 "after_effect": True})
    failed = await client.post(ORDERS_APPEND, headers=auth_headers, json={"values": [["o-1"]]})
    assert failed.status_code == 500
    assert failed.json()["error"]["status"] == "INTERNAL"
    rows = (await client.get("/_emulator/sheets/sheet-1")).json()
    assert rows["values"] == [["o-1"]] and rows["sheet"] == "Orders"


async def test_token_fault_uses_the_oauth_shape(client: httpx.AsyncClient,
                                                state: EmulatorState,
                                                make_assertion: object) -> None:
    await client.post("/_emulator/faults", json={"api": "token", "status": 503})
    response = await client.post("/token", data={"grant_type": "x"})
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"


@pytest.mark.parametrize("spec", [
    {"api": "fax", "status": 500}, {"api": "sheets"}, {"api": "sheets", "status": 200},
    {"api": "sheets", "status": 500, "count": 0}, {"api": "sheets", "hang": -1},
    {"api": "sheets", "status": 500, "colour": "red"}])
async def test_bad_fault_specs_are_400(client: httpx.AsyncClient, spec: dict[str, object]
                                       ) -> None:
    response = await client.post("/_emulator/faults", json=spec)
    assert response.status_code == 400
    assert (await client.get("/_emulator/faults")).json() == {"pending": []}


async def test_delete_faults_and_reset(client: httpx.AsyncClient, settings: EmulatorSettings,
                                       auth_headers: dict[str, str],
                                       state: EmulatorState) -> None:
    await client.post("/_emulator/faults", json={"api": "twilio", "status": 500, "count": 9})
    assert len((await client.get("/_emulator/faults")).json()["pending"]) == 1
    await client.delete("/_emulator/faults")
    auth = (settings.twilio_account_sid, settings.twilio_auth_token)
    assert (await client.post(_messages_url(settings), auth=auth,
                              data=_sms(settings))).status_code == 201
    await client.post(ORDERS_APPEND, headers=auth_headers, json={"values": [[1]]})
    await client.post("/_emulator/faults", json={"api": "twilio", "status": 500})

    assert (await client.post("/_emulator/reset")).status_code == 200
    assert (await client.get("/_emulator/sms")).json() == []
    assert (await client.get("/_emulator/sheets/sheet-1")).json()["values"] == []
    stats = (await client.get("/_emulator/stats")).json()
    assert stats["calls"] == {} and stats["faults_pending"] == []
    # Tokens and spreadsheets survive a reset.
    assert (await client.get("/v4/spreadsheets/sheet-1", headers=auth_headers)).status_code == 200


def test_hang_then_effect_over_a_real_socket() -> None:
    settings = EmulatorSettings(twilio_from_numbers=["+15017122661"])
    with running_emulator(settings) as emulator:
        assert emulator.url.startswith("http://127.0.0.1:")
        auth = (settings.twilio_account_sid, settings.twilio_auth_token)
        with httpx.Client(base_url=emulator.url) as http:
            http.post("/_emulator/faults", json={"api": "twilio", "hang": 0.5}).raise_for_status()
            with pytest.raises(httpx.ReadTimeout):
                http.post(_messages_url(settings), auth=auth, data=_sms(settings), timeout=0.05)
            assert emulator.state.sms_log == []  # the client gave up before the effect
            emulator.state.wait_until(lambda s: len(s.sms_log) == 1, timeout=5)
            listed = http.get(_messages_url(settings), auth=auth).json()
            assert len(listed["messages"]) == 1
            # The fault is spent: the next call is served at once.
            assert http.post(_messages_url(settings), auth=auth,
                             data=_sms(settings)).status_code == 201
        assert emulator.state.stats()["faults_fired"] == {"twilio": 1}


async def test_running_emulator_from_async_code() -> None:
    with running_emulator() as emulator:
        async with httpx.AsyncClient(base_url=emulator.url) as http:
            response = await http.get("/_emulator/stats")
        assert response.status_code == 200
        assert emulator.state.stats()["calls"] == {}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{emulator.url}/_emulator/stats")


def test_settings_from_env_and_validation() -> None:
    settings = EmulatorSettings.from_env({
        "TWILIO_ACCOUNT_SID": "AC" + "a" * 32, "TWILIO_AUTH_TOKEN": "t",
        "TWILIO_FROM_NUMBER": "+15550001111", "SHEETS_SPREADSHEET_ID": "abc"})
    assert settings.twilio_from_numbers == ["+15550001111"]
    assert settings.spreadsheets["abc"] == ["Sheet1", "Orders"]
    assert "demo-spreadsheet" in settings.spreadsheets
    defaults = EmulatorSettings.from_env({})
    assert defaults.twilio_account_sid == "AC" + "0" * 32 and defaults.twilio_from_numbers == []
    from alertpipe.errors import ConfigError

    with pytest.raises(ConfigError):
        EmulatorSettings(twilio_account_sid="AC123")
    with pytest.raises(ConfigError):
        EmulatorSettings(twilio_api_key="SK" + "1" * 32)
