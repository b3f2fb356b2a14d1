"""Fixtures for the emulator tests: an in-process app and helpers to obtain tokens."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from google.auth import crypt, jwt
from starlette.applications import Starlette

from alertpipe.emulators import EmulatorSettings, ServiceAccount, create_app
from alertpipe.emulators.state import EmulatorState

SCOPE = "https://www.googleapis.com/auth/spreadsheets"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "s3cr3t-auth-token-0000000000000"
API_KEY = "SK" + "2" * 32
API_SECRET = "s3cr3t-api-secret-000000000000"
FROM = "+15017122661"


@pytest.fixture
def settings() -> EmulatorSettings:
    return EmulatorSettings(
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_api_key=API_KEY,
        twilio_api_secret=API_SECRET, twilio_from_numbers=[FROM],
        spreadsheets={"sheet-1": ["Sheet1", "My Orders", "Orders"]},
        sheets_write_quota_per_minute=5)


@pytest.fixture
def app(settings: EmulatorSettings) -> Starlette:
    return create_app(settings)


@pytest.fixture
def state(app: Starlette) -> EmulatorState:
    emulator: EmulatorState = app.state.emulator
    return emulator


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
        yield http


def assertion(account: ServiceAccount, *, key_pem: str | None = None, **overrides: Any) -> str:
    """A JWT-bearer assertion as google-auth builds it, with claims overridable."""
    now = int(time.time())
    claims: dict[str, Any] = {"iat": now, "exp": now + 3600, "iss": account.client_email,
                              "aud": GOOGLE_TOKEN_URL, "scope": SCOPE}
    claims.update(overrides)
    signer = crypt.RSASigner.from_string(  # type: ignore[no-untyped-call]
        key_pem or account.private_key_pem(), account.private_key_id)
    encoded: bytes = jwt.encode(signer, claims)  # type: ignore[no-untyped-call]
    return encoded.decode()


async def get_token(client: httpx.AsyncClient, state: EmulatorState, **overrides: Any) -> str:
    response = await client.post("/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": assertion(state.default_account, **overrides)})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_assertion() -> Any:
    """``make_assertion(account, key_pem=None, **claims)`` → a signed assertion."""
    return assertion


@pytest.fixture
async def token(client: httpx.AsyncClient, state: EmulatorState) -> str:
    """A valid access token with the spreadsheets scope."""
    return await get_token(client, state)


@pytest.fixture
def auth_headers(token: str) -> dict[str, str]:
    return bearer(token)
