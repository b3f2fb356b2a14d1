"""The emulator's content-matching and unlimited faults (used by the poison scenario), and that
the fault JSON stays backward compatible."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from alertpipe.emulators import EmulatorSettings, running_emulator
from alertpipe.emulators.server import EmulatorHandle

SHEET = "sheet-1"
FROM = "+15017122661"
APPEND = (f"/v4/spreadsheets/{SHEET}/values/{quote('Orders!A:G', safe='')}:append"
          "?valueInputOption=RAW&insertDataOption=INSERT_ROWS")
SETTINGS = EmulatorSettings(twilio_from_numbers=[FROM], spreadsheets={SHEET: ["Orders"]})


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorHandle]:
    with running_emulator(SETTINGS) as emulator:
        yield emulator


@pytest.fixture
def http(emu: EmulatorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, timeout=10) as client:
        client.post("/_emulator/reset").raise_for_status()
        token = client.post("/token", data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": _assertion(emu)}).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def _assertion(emu: EmulatorHandle) -> str:
    import time

    from google.auth import crypt, jwt

    account = emu.account
    now = int(time.time())
    signer = crypt.RSASigner.from_string(  # type: ignore[no-untyped-call]
        account.private_key_pem(), account.private_key_id)
    claims = {"iat": now, "exp": now + 3600, "iss": account.client_email,
              "aud": "https://oauth2.googleapis.com/token",
              "scope": "https://www.googleapis.com/auth/spreadsheets"}
    encoded: bytes = jwt.encode(signer, claims)  # type: ignore[no-untyped-call]
    return encoded.decode()


def test_poison_fault_hits_only_matching_bodies_and_never_runs_out(http: httpx.Client) -> None:
    posted = http.post("/_emulator/faults", json={"api": "sheets", "status": 400,
                                                  "match": "POISON", "count": -1})
    assert posted.status_code == 201
    assert posted.json()["pending"][0]["match"] == "POISON"
    for _ in range(3):
        refused = http.post(APPEND, json={"values": [["m-1", "POISON pill"]]})
        assert refused.status_code == 400
        assert refused.json()["error"]["status"] == "INVALID_ARGUMENT"
        assert http.post(APPEND, json={"values": [["m-2", "Ada"]]}).status_code == 200
    rows = http.get(f"/_emulator/sheets/{SHEET}").json()["values"]
    assert rows == [["m-2", "Ada"]] * 3
    stats = http.get("/_emulator/stats").json()
    assert stats["faults_fired"] == {"sheets": 3}
    assert stats["faults_pending"][0]["count"] == -1  # still armed
    http.delete("/_emulator/faults")
    assert http.post(APPEND, json={"values": [["m-3", "POISON"]]}).status_code == 200


def test_match_reads_twilio_forms_decoded(emu: EmulatorHandle, http: httpx.Client) -> None:
    settings = emu.state.settings
    url = f"/2010-04-01/Accounts/{settings.twilio_account_sid}/Messages.json"
    auth = (settings.twilio_account_sid, settings.twilio_auth_token)
    http.post("/_emulator/faults", json={"api": "twilio", "status": 500,
                                         "match": "from Bad Actor", "count": 2})
    form = {"To": "+15558675310", "From": FROM}
    good = http.post(url, auth=auth, data={**form, "Body": "order 1 from Ada"})
    assert good.status_code == 201
    bad = http.post(url, auth=auth, data={**form, "Body": "order 2 from Bad Actor"})
    assert bad.status_code == 500 and bad.json()["code"] == 20500
    assert [m["Body"] for m in http.get("/_emulator/sms").json()] == ["order 1 from Ada"]
    assert http.get("/_emulator/faults").json()["pending"][0]["count"] == 1


def test_faults_without_match_behave_as_before(http: httpx.Client) -> None:
    http.post("/_emulator/faults", json={"api": "sheets", "status": 503})
    assert http.post(APPEND, json={"values": [["POISON"]]}).status_code == 503
    assert http.post(APPEND, json={"values": [["POISON"]]}).status_code == 200
    assert http.get("/_emulator/faults").json() == {"pending": []}


@pytest.mark.parametrize("spec", [
    {"api": "sheets", "status": 400, "match": ""},
    {"api": "sheets", "status": 400, "match": 7},
    {"api": "sheets", "status": 400, "count": -2},
    {"api": "sheets", "status": 400, "count": 0}])
def test_bad_match_and_count_specs_are_400(http: httpx.Client, spec: dict[str, object]) -> None:
    assert http.post("/_emulator/faults", json=spec).status_code == 400
    assert http.get("/_emulator/faults").json() == {"pending": []}


def test_active_counts_hung_calls_until_their_late_effect(emu: EmulatorHandle,
                                                          http: httpx.Client) -> None:
    http.post("/_emulator/faults", json={"api": "sheets", "hang": 1})
    with pytest.raises(httpx.ReadTimeout):
        http.post(APPEND, json={"values": [["late"]]}, timeout=0.05)
    assert emu.state.faults.active == 1  # the client gave up; the call goes on
    assert http.get(f"/_emulator/sheets/{SHEET}").json()["values"] == []
    emu.state.wait_until(lambda s: s.faults.active == 0, timeout=5)
    assert http.get(f"/_emulator/sheets/{SHEET}").json()["values"] == [["late"]]
