"""The emulated Google token endpoint, driven by google-auth itself and by crafted JWTs."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import google.auth.transport
import httpx
import pytest
from google.auth import exceptions
from google.oauth2 import service_account

from alertpipe.destinations.google_auth import HttpxResponse
from alertpipe.emulators import (
    EmulatorSettings,
    ServiceAccount,
    running_emulator,
    write_credentials,
)
from alertpipe.emulators.state import EmulatorState
from alertpipe.errors import CredentialsError

SCOPE = "https://www.googleapis.com/auth/spreadsheets"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class HttpxRequest(google.auth.transport.Request):
    """A synchronous google-auth transport over httpx (requests is not installed)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def __call__(self, url: str, method: str = "GET", body: Any = None,
                 headers: Mapping[str, str] | None = None, timeout: float | None = None,
                 **kwargs: Any) -> HttpxResponse:
        response = self.client.request(method, url, content=body, headers=headers,
                                       timeout=timeout or 10)
        return HttpxResponse(response)


def test_google_auth_refreshes_against_the_emulator_over_a_socket(tmp_path: Path) -> None:
    with running_emulator(EmulatorSettings()) as emulator, httpx.Client() as http:
        key_file = emulator.write_credentials(tmp_path / "sa.json")
        info = json.loads(key_file.read_text())
        assert info["token_uri"] == f"{emulator.url}/token"
        assert info["type"] == "service_account"
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"

        creds = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(key_file), scopes=[SCOPE])
        request = HttpxRequest(http)
        creds.refresh(request)
        assert creds.valid and creds.token.startswith("ya29.")

        url = f"{emulator.url}/v4/spreadsheets/demo-spreadsheet"
        ok = http.get(url, headers={"Authorization": f"Bearer {creds.token}"})
        assert ok.status_code == 200
        assert [s["properties"]["title"] for s in ok.json()["sheets"]] == ["Sheet1", "Orders"]

        http.post(f"{emulator.url}/_emulator/tokens/revoke").raise_for_status()
        stale = http.get(url, headers={"Authorization": f"Bearer {creds.token}"})
        assert stale.status_code == 401
        assert stale.json()["error"]["status"] == "UNAUTHENTICATED"

        old = creds.token
        creds.refresh(request)
        assert creds.token != old
        fresh = http.get(url, headers={"Authorization": f"Bearer {creds.token}"})
        assert fresh.status_code == 200
        assert emulator.state.stats()["tokens_issued"] == 2


def test_google_auth_sees_a_rejection_as_refresh_error(tmp_path: Path) -> None:
    with running_emulator() as emulator, httpx.Client() as http:
        key_file = emulator.write_credentials(tmp_path / "sa.json")
        # An emulator that never saw this key: same e-mail, different key → signature fails.
        other = EmulatorState(EmulatorSettings())
        foreign = ServiceAccount(emulator.account.client_email, "1", emulator.account
                                 .private_key_id, "p", other.default_account.private_key)
        emulator.state.add_account(foreign)
        creds = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(key_file), scopes=[SCOPE])
        with pytest.raises(exceptions.RefreshError, match="Invalid JWT Signature"):
            creds.refresh(HttpxRequest(http))


async def _post_token(client: httpx.AsyncClient, assertion: str,
                      grant: str = JWT_GRANT) -> httpx.Response:
    return await client.post("/token", data={"grant_type": grant, "assertion": assertion})


async def test_token_success_shape(client: httpx.AsyncClient, state: EmulatorState,
                                   make_assertion: Any) -> None:
    response = await _post_token(client, make_assertion(state.default_account))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "token_type"}
    assert body["expires_in"] == 3599 and body["token_type"] == "Bearer"
    grant = state.token_grant(body["access_token"])
    assert grant is not None and grant.client_email == state.default_account.client_email


@pytest.mark.parametrize(("claims", "error", "description"), [
    ({"aud": "http://127.0.0.1:8099/token"}, "invalid_grant", "Failed audience check"),
    ({"iat": int(time.time()) - 4000, "exp": int(time.time()) - 400}, "invalid_grant",
     "short-lived token"),
    ({"exp": int(time.time()) + 7200}, "invalid_grant", "short-lived token"),
    ({"iss": "stranger@example.iam.gserviceaccount.com"}, "invalid_grant", "account not found"),
    ({"scope": ""}, "invalid_scope", "Invalid OAuth scope"),
])
async def test_token_rejections(client: httpx.AsyncClient, state: EmulatorState,
                                make_assertion: Any, claims: dict[str, Any], error: str,
                                description: str) -> None:
    response = await _post_token(client, make_assertion(state.default_account, **claims))
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert description in response.json()["error_description"]
    assert state.tokens_issued == 0


async def test_token_rejects_a_signature_from_another_key(
        client: httpx.AsyncClient, state: EmulatorState, make_assertion: Any) -> None:
    stranger_key = ServiceAccount.generate().private_key_pem()
    response = await _post_token(client, make_assertion(state.default_account,
                                                        key_pem=stranger_key))
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant",
                               "error_description": "Invalid JWT Signature."}


async def test_token_rejects_other_grant_types_and_garbage(
        client: httpx.AsyncClient, state: EmulatorState, make_assertion: Any) -> None:
    wrong = await _post_token(client, make_assertion(state.default_account),
                              grant="client_credentials")
    assert wrong.status_code == 400 and wrong.json()["error"] == "unsupported_grant_type"
    garbage = await _post_token(client, "not-a-jwt")
    assert garbage.status_code == 400 and garbage.json()["error"] == "invalid_grant"


async def test_token_without_spreadsheets_scope_is_refused_by_sheets(
        client: httpx.AsyncClient, state: EmulatorState, make_assertion: Any) -> None:
    response = await _post_token(client, make_assertion(
        state.default_account, scope="https://www.googleapis.com/auth/cloud-platform"))
    token = response.json()["access_token"]
    denied = await client.get("/v4/spreadsheets/sheet-1",
                              headers={"Authorization": f"Bearer {token}"})
    assert denied.status_code == 403
    assert denied.json()["error"]["status"] == "PERMISSION_DENIED"


def test_write_credentials_reuses_its_own_key_and_refuses_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    first = write_credentials(path, "http://127.0.0.1:1")
    second = write_credentials(path, "http://127.0.0.1:2")
    assert second.private_key_pem() == first.private_key_pem()
    assert json.loads(path.read_text())["token_uri"] == "http://127.0.0.1:2/token"

    restarted = EmulatorState(EmulatorSettings())
    restarted.write_credentials(path, "http://127.0.0.1:3")
    assert restarted.default_account.private_key_id == first.private_key_id

    foreign = tmp_path / "real.json"
    info = ServiceAccount.generate("robot", "real-project").to_info("https://oauth2.googleapis.com")
    foreign.write_text(json.dumps(info))
    with pytest.raises(CredentialsError, match="refusing to overwrite") as caught:
        write_credentials(foreign, "http://127.0.0.1:1")
    assert "PRIVATE KEY" not in str(caught.value)
    assert json.loads(foreign.read_text()) == info


def test_secrets_stay_out_of_logs_and_errors(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    settings = EmulatorSettings(twilio_auth_token="tok-" + "9" * 28)
    caplog.set_level(logging.DEBUG)
    with running_emulator(settings) as emulator, httpx.Client(base_url=emulator.url) as http:
        key = emulator.write_credentials(tmp_path / "sa.json")
        pem = json.loads(key.read_text())["private_key"]
        bad = http.post(f"/2010-04-01/Accounts/{settings.twilio_account_sid}/Messages.json",
                        auth=(settings.twilio_account_sid, "wrong-token"),
                        data={"To": "+15551230000", "From": "+15551230001", "Body": "x"})
        assert bad.status_code == 401
        assert "wrong-token" not in bad.text and settings.twilio_auth_token not in bad.text
    assert settings.twilio_auth_token not in repr(settings)
    assert settings.twilio_auth_token not in caplog.text
    assert pem.splitlines()[1] not in caplog.text
    assert "PRIVATE KEY" not in repr(emulator.account)
