"""GoogleSheetsDestination against a fake Google (token endpoint + Sheets) in httpx.MockTransport.

The service-account key is generated here with ``cryptography``; the fake token endpoint verifies
the jwt-bearer assertion google-auth signs with it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import google.auth.jwt
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from alertpipe import jsoncodec
from alertpipe.destinations import REGISTRY, load_builtins
from alertpipe.destinations.base import Delivery, Sent
from alertpipe.destinations.google_auth import AsyncClientRequest
from alertpipe.destinations.google_sheets import READ_BACK_DETAIL, GoogleSheetsDestination
from alertpipe.emulators import EmulatorSettings, create_app
from alertpipe.errors import (
    ConfigError,
    CredentialsError,
    DeliveryError,
    PermanentError,
    RetryableError,
    UsageError,
)
from alertpipe.message import Message

TOKEN_URI = "https://oauth2.fake.test/token"
API = "https://sheets.fake.test"
EMAIL = "alerts@proj.iam.gserviceaccount.com"
SHEET_ID = "1AbC-sheet_ID"
RANGE = "'My Orders'!A:G"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: google-auth signs this audience whatever the key file's token_uri (it only POSTs there).
GOOGLE_AUD = "https://oauth2.googleapis.com/token"


@pytest.fixture(scope="module")
def rsa_pem() -> tuple[str, str]:
    """(private key PKCS#8 PEM, public key PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def write_key(tmp_path: Path, private_pem: str, **overrides: Any) -> Path:
    info: dict[str, Any] = {
        "type": "service_account", "project_id": "proj", "private_key_id": "kid1",
        "private_key": private_pem, "client_email": EMAIL, "client_id": "123",
        "token_uri": TOKEN_URI,
    }
    info.update(overrides)
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({k: v for k, v in info.items() if v is not None}))
    return path


class FakeGoogle:
    """Token endpoint + values.append + values.get. Queued responses (or exceptions) come first.

    ``column`` is what values.get answers: the cells of the id column from row 1 down.
    """

    def __init__(self, public_pem: str) -> None:
        self.public_pem = public_pem
        self.token_requests: list[httpx.Request] = []
        self.sheet_requests: list[httpx.Request] = []  # values.get and values.append, in order
        self.append_requests: list[httpx.Request] = []
        self.get_requests: list[httpx.Request] = []
        self.get_queue: list[httpx.Response | Exception] = []
        self.column: list[Any] = []
        self.token_queue: list[httpx.Response | Exception | None] = []  # None: issue normally
        self.append_queue: list[httpx.Response | Exception] = []
        self.issued: list[str] = []
        self.assertions: list[str] = []
        self.claims: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            self.token_requests.append(request)
            form = parse_qs(request.content.decode())
            self.assertions.append(form["assertion"][0])
            queued = self.token_queue.pop(0) if self.token_queue else None
            if queued is not None:
                return self._next([queued])
            assert form["grant_type"] == [JWT_BEARER]
            self.claims.append(google.auth.jwt.decode(  # type: ignore[no-untyped-call]
                form["assertion"][0], certs=self.public_pem, audience=GOOGLE_AUD))
            token = f"ya29.secret-token-{len(self.issued) + 1}"
            self.issued.append(token)
            return httpx.Response(200, json={"access_token": token, "expires_in": 3599,
                                             "token_type": "Bearer"})
        self.sheet_requests.append(request)
        if request.method == "GET":
            self.get_requests.append(request)
            if self.get_queue:
                return self._next(self.get_queue)
            body: dict[str, Any] = {"range": "'My Orders'!B1:B1000", "majorDimension": "ROWS"}
            if self.column:
                body["values"] = [[cell] if cell not in (None, "") else [] for cell in self.column]
            return httpx.Response(200, json=body)
        self.append_requests.append(request)
        if self.append_queue:
            return self._next(self.append_queue)
        rows = len(json.loads(request.content)["values"])
        return httpx.Response(200, json={
            "spreadsheetId": SHEET_ID, "tableRange": "'My Orders'!A1:G1",
            "updates": {"spreadsheetId": SHEET_ID, "updatedRange": f"'My Orders'!A2:G{1 + rows}",
                        "updatedRows": rows, "updatedColumns": 7, "updatedCells": 7 * rows}})

    @staticmethod
    def _next(queue: list[httpx.Response | Exception]) -> httpx.Response:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def secrets(self, private_pem: str) -> list[str]:
        key_lines = [line for line in private_pem.splitlines() if "-----" not in line]
        return [*self.issued, *self.assertions, *key_lines]


def order(**extra: Any) -> Message:
    body: dict[str, Any] = {
        "order_id": "A-1001", "customer_name": "Ada Lovelace", "customer_phone": "+15551234567",
        "amount": Decimal("349.99"), "currency": "USD", "items": [{"sku": "X1", "qty": 2}],
        "created_at": "2024-05-01T11:59:00Z", "high_value": True,
    }
    body.update(extra)
    return Message.new("orders", body)


def delivery(message: Message, n: int = 1, *, ambiguous: bool = False) -> Delivery:
    return Delivery(id=n, message=message, destination="audit", target=None, attempts=0,
                    ambiguous=ambiguous)


def make_dest(key_path: Path | str, **cfg: Any) -> GoogleSheetsDestination:
    config = {"type": "google_sheets", "spreadsheet_id": SHEET_ID, "range": RANGE,
              "credentials_file": str(key_path), "api_base": API, **cfg}
    return GoogleSheetsDestination("audit", GoogleSheetsDestination.Config.model_validate(config))


@pytest.fixture
def fake(rsa_pem: tuple[str, str]) -> FakeGoogle:
    return FakeGoogle(rsa_pem[1])


@pytest.fixture
async def dest(tmp_path: Path, rsa_pem: tuple[str, str],
               fake: FakeGoogle) -> AsyncIterator[GoogleSheetsDestination]:
    d = make_dest(write_key(tmp_path, rsa_pem[0]))
    d.check()
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        await d.start(http)
        yield d


def assert_no_secret(exc: BaseException, fake: FakeGoogle, private_pem: str) -> None:
    for text in (str(exc), repr(exc)):
        for secret in fake.secrets(private_pem):
            assert secret not in text


# -- config, registry, check ---------------------------------------------------------------

def test_config_defaults_and_registration(tmp_path: Path) -> None:
    load_builtins()
    assert REGISTRY["google_sheets"] is GoogleSheetsDestination
    cfg = GoogleSheetsDestination.Config.model_validate(
        {"type": "google_sheets", "spreadsheet_id": "x", "credentials_file": "k.json"})
    d = GoogleSheetsDestination("audit", cfg)
    assert cfg.range == "Sheet1!A:G"  # type: ignore[attr-defined]
    assert cfg.columns == ["received_at", "message_id", "order_id", "customer",  # type: ignore[attr-defined]
                           "amount", "currency", "high_value"]
    assert (d.batch_size, d.max_requests_per_minute) == (500, 50)
    assert d.describe(delivery(order())) == "sheet x Sheet1!A:G"


@pytest.mark.parametrize("bad", [{"batch_size": 10_001}, {"batch_size": 0}, {"colour": "red"},
                                 {"spreadsheet_id": None}])
def test_config_rejects(bad: dict[str, Any]) -> None:
    base = {"type": "google_sheets", "spreadsheet_id": "x", "credentials_file": "k.json"}
    with pytest.raises(ValidationError):
        GoogleSheetsDestination.Config.model_validate({**base, **bad})


def test_check_accepts_a_real_key_and_rate_key_names_the_user(
        tmp_path: Path, rsa_pem: tuple[str, str]) -> None:
    d = make_dest(write_key(tmp_path, rsa_pem[0]))
    assert d.rate_key() == f"google_sheets:{EMAIL}"
    d.check()
    assert d.rate_key() == f"google_sheets:{EMAIL}"


@pytest.mark.parametrize(("overrides", "raw", "expected"), [
    ({}, "{not json", "not valid JSON"),
    ({"type": "authorized_user"}, None, "expected 'service_account'"),
    ({"private_key": None}, None, "missing private_key"),
    ({"client_email": None, "token_uri": None}, None, "missing client_email, token_uri"),
    ({"private_key": "-----BEGIN PRIVATE KEY-----\nNOTAKEYxyz123\n-----END PRIVATE KEY-----\n"},
     None, "private_key could not be loaded"),
])
def test_check_explains_a_bad_key_file(tmp_path: Path, rsa_pem: tuple[str, str],
                                       overrides: dict[str, Any], raw: str | None,
                                       expected: str) -> None:
    path = write_key(tmp_path, rsa_pem[0], **overrides)
    if raw is not None:
        path.write_text(raw)
    with pytest.raises(CredentialsError) as info:
        make_dest(path).check()
    assert str(path) in str(info.value)
    assert expected in str(info.value)
    assert "NOTAKEYxyz123" not in str(info.value)
    for line in rsa_pem[0].splitlines()[1:-1]:
        assert line not in str(info.value)


def test_check_missing_file_and_missing_setting(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="no such file") as info:
        make_dest(tmp_path / "absent.json").check()
    assert "absent.json" in str(info.value)
    with pytest.raises(CredentialsError, match="credentials_file is missing"):
        make_dest("").check()
    with pytest.raises(ConfigError, match=r"spreadsheet_id is missing \(set SHEETS_SPREADSHEET"):
        make_dest(tmp_path / "absent.json", spreadsheet_id=" ").check()


# -- rows --------------------------------------------------------------------------------

def test_row_building(tmp_path: Path, rsa_pem: tuple[str, str]) -> None:
    d = make_dest(write_key(tmp_path, rsa_pem[0]), columns=[
        "received_at", "message_id", "channel", "customer", "amount", "billing.phone",
        "items", "items.0.sku", "high_value", "note", "absent", "dotted.key"])
    msg = Message(id="m-1", channel="orders",
                  received_at=datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
                  body={"customer_name": "Ada", "amount": Decimal("300.00"),
                        "billing": {"phone": "+15550001111"}, "items": [{"sku": "X1"}],
                        "high_value": False, "note": None, "dotted.key": 7})
    assert d.row(msg) == ["2024-05-01T12:00:00+00:00", "m-1", "orders", "Ada", Decimal("300.00"),
                          "+15550001111", '[{"sku":"X1"}]', "X1", False, "", "", 7]
    # an explicit ``customer`` (added by a step) wins over customer_name
    assert make_dest("k.json", columns=["customer"]).row(order(customer="VIP Ada")) == ["VIP Ada"]


# -- the append call ---------------------------------------------------------------------

async def test_one_append_call_per_batch(dest: GoogleSheetsDestination, fake: FakeGoogle) -> None:
    msgs = [order(order_id=f"A-{i}", amount=a)
            for i, a in enumerate([Decimal("349.99"), Decimal("300.00"), Decimal("12")])]
    outcomes = await dest.send_batch([delivery(m, i) for i, m in enumerate(msgs)])

    assert len(fake.append_requests) == 1 and len(fake.token_requests) == 1
    req = fake.append_requests[0]
    assert req.method == "POST"
    assert req.url.raw_path.decode().split("?")[0] == (
        f"/v4/spreadsheets/{SHEET_ID}/values/{quote(RANGE, safe='')}:append")
    assert quote(RANGE, safe="") == "%27My%20Orders%27%21A%3AG"
    assert dict(req.url.params) == {"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"}
    assert req.headers["authorization"] == "Bearer ya29.secret-token-1"
    assert req.headers["content-type"].startswith("application/json")
    assert b',349.99,"USD",true]' in req.content
    assert b',300.00,"USD",true]' in req.content and b'"300.00"' not in req.content
    body = jsoncodec.loads(req.content)
    assert body["range"] == RANGE and body["majorDimension"] == "ROWS"
    assert [row[1:4] for row in body["values"]] == [
        [m.id, m.body["order_id"], "Ada Lovelace"] for m in msgs]
    assert outcomes == [
        Sent(remote_id="'My Orders'!A2:G4", detail=f"'My Orders'!A{r}:G{r}") for r in (2, 3, 4)]


async def test_token_is_the_jwt_bearer_grant_and_is_cached(
        dest: GoogleSheetsDestination, fake: FakeGoogle) -> None:
    await dest.send_batch([delivery(order())])
    await dest.send_batch([delivery(order())])
    assert len(fake.token_requests) == 1 and len(fake.append_requests) == 2
    tok = fake.token_requests[0]
    assert tok.method == "POST" and str(tok.url) == TOKEN_URI
    assert tok.headers["content-type"] == "application/x-www-form-urlencoded"
    claims = fake.claims[0]
    assert claims["iss"] == EMAIL and claims["aud"] == GOOGLE_AUD
    assert claims["scope"] == "https://www.googleapis.com/auth/spreadsheets"


async def test_token_refreshed_ahead_of_expiry(dest: GoogleSheetsDestination,
                                               fake: FakeGoogle) -> None:
    await dest.send_batch([delivery(order())])
    assert dest._tokens is not None
    # google-auth keeps naive UTC expiry; one minute left is inside its refresh threshold
    dest._tokens.credentials.expiry = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=1)
    await dest.send_batch([delivery(order())])
    assert len(fake.token_requests) == 2
    assert fake.append_requests[1].headers["authorization"] == "Bearer ya29.secret-token-2"


async def test_a_burst_fetches_one_token(dest: GoogleSheetsDestination, fake: FakeGoogle) -> None:
    results = await asyncio.gather(*(dest.send_batch([delivery(order())]) for _ in range(5)))
    assert all(isinstance(r[0], Sent) for r in results)
    assert len(fake.token_requests) == 1 and len(fake.append_requests) == 5


async def test_401_refreshes_once_and_resends(dest: GoogleSheetsDestination,
                                              fake: FakeGoogle) -> None:
    fake.append_queue.append(httpx.Response(401, json={"error": {
        "code": 401, "message": "Request had invalid authentication credentials.",
        "status": "UNAUTHENTICATED"}}))
    outcomes = await dest.send_batch([delivery(order()), delivery(order(), 2)])
    assert [type(o) for o in outcomes] == [Sent, Sent]
    assert len(fake.token_requests) == 2 and len(fake.append_requests) == 2
    assert [r.headers["authorization"] for r in fake.append_requests] == [
        "Bearer ya29.secret-token-1", "Bearer ya29.secret-token-2"]
    assert fake.append_requests[0].content == fake.append_requests[1].content


async def test_second_401_is_permanent(dest: GoogleSheetsDestination, fake: FakeGoogle,
                                       rsa_pem: tuple[str, str]) -> None:
    unauth = {"error": {"code": 401, "message": "Invalid Credentials", "status": "UNAUTHENTICATED"}}
    fake.append_queue += [httpx.Response(401, json=unauth), httpx.Response(401, json=unauth)]
    with pytest.raises(PermanentError) as info:
        await dest.send_batch([delivery(order())])
    assert info.value.code == 401 and "UNAUTHENTICATED" in str(info.value)
    assert len(fake.token_requests) == 2 and len(fake.append_requests) == 2
    assert_no_secret(info.value, fake, rsa_pem[0])


def _gerr(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


@pytest.mark.parametrize(("response", "kind", "retry_after", "ambiguous", "needle"), [
    (httpx.Response(400, json=_gerr(400, "INVALID_ARGUMENT", "Unable to parse range: Nope!A:G")),
     PermanentError, None, False, "400 INVALID_ARGUMENT: Unable to parse range"),
    (httpx.Response(403, json=_gerr(403, "PERMISSION_DENIED", "The caller does not have "
                                    "permission")),
     PermanentError, None, False, "403 PERMISSION_DENIED: The caller does not have permission"),
    (httpx.Response(404, json=_gerr(404, "NOT_FOUND", "Requested entity was not found.")),
     PermanentError, None, False, "404 NOT_FOUND: Requested entity was not found."),
    (httpx.Response(409, json=_gerr(409, "ABORTED", "Conflict")),
     PermanentError, None, False, "409 ABORTED"),
    (httpx.Response(429, headers={"Retry-After": "17"},
                    json=_gerr(429, "RESOURCE_EXHAUSTED", "Quota exceeded")),
     RetryableError, 17.0, False, "429 RESOURCE_EXHAUSTED: Quota exceeded"),
    (httpx.Response(500, json=_gerr(500, "INTERNAL", "Internal error encountered.")),
     RetryableError, None, True, "500 INTERNAL"),
    (httpx.Response(503, text="<html>Service Unavailable</html>", headers={"Retry-After": "5"}),
     RetryableError, 5.0, True, "503"),
])
async def test_status_mapping(dest: GoogleSheetsDestination, fake: FakeGoogle,
                              rsa_pem: tuple[str, str], response: httpx.Response,
                              kind: type[DeliveryError], retry_after: float | None,
                              ambiguous: bool, needle: str) -> None:
    fake.append_queue.append(response)
    with pytest.raises(kind) as info:
        await dest.send_batch([delivery(order()), delivery(order(), 2)])
    err = info.value
    assert type(err) is kind
    assert err.code == response.status_code and err.ambiguous is ambiguous
    assert getattr(err, "retry_after", None) == retry_after
    assert getattr(err, "throttled", False) is (response.status_code == 429)
    assert needle in str(err)
    assert len(fake.append_requests) == 1  # never retried here
    assert_no_secret(err, fake, rsa_pem[0])


async def test_retry_after_http_date(dest: GoogleSheetsDestination, fake: FakeGoogle) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    fake.append_queue.append(httpx.Response(429, headers={"Retry-After": when}))
    with pytest.raises(RetryableError) as info:
        await dest.send_batch([delivery(order())])
    assert info.value.retry_after is not None and 100 < info.value.retry_after <= 120


@pytest.mark.parametrize(("exc", "ambiguous"), [
    (httpx.ReadTimeout("timed out"), True),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
    (httpx.ReadError("connection reset"), True),
    (httpx.ConnectError("connection refused"), False),
    (httpx.ConnectTimeout("connect timed out"), False),
])
async def test_transport_errors(dest: GoogleSheetsDestination, fake: FakeGoogle,
                                rsa_pem: tuple[str, str], exc: Exception, ambiguous: bool) -> None:
    fake.append_queue.append(exc)
    with pytest.raises(RetryableError) as info:
        await dest.send_batch([delivery(order())])
    assert info.value.ambiguous is ambiguous
    assert info.value.__cause__ is exc
    assert_no_secret(info.value, fake, rsa_pem[0])


# -- the token endpoint failing ----------------------------------------------------------

@pytest.mark.parametrize(("failure", "kind", "retry_after", "needle"), [
    (httpx.Response(400, json={"error": "invalid_grant", "error_description":
                               "Invalid JWT Signature."}),
     PermanentError, None, "invalid_grant: Invalid JWT Signature."),
    (httpx.Response(503, headers={"Retry-After": "30"}, json={"error": "unavailable"}),
     RetryableError, 30.0, "token endpoint answered HTTP 503"),
    (httpx.Response(400, json={"error": "temporarily_unavailable"}),
     RetryableError, None, "HTTP 400"),
    (httpx.ConnectError("connection refused"), RetryableError, None, "ConnectError"),
])
async def test_token_failures(dest: GoogleSheetsDestination, fake: FakeGoogle,
                              rsa_pem: tuple[str, str], failure: httpx.Response | Exception,
                              kind: type[DeliveryError], retry_after: float | None,
                              needle: str) -> None:
    fake.token_queue.append(failure)
    with pytest.raises(kind) as info:
        await dest.send_batch([delivery(order())])
    assert type(info.value) is kind
    assert needle in str(info.value) and EMAIL in str(info.value)
    assert getattr(info.value, "retry_after", None) == retry_after
    assert info.value.ambiguous is False
    # exactly one token request: google-auth's own retry-with-sleep loop is cut short
    assert len(fake.token_requests) == 1 and fake.append_requests == []
    assert_no_secret(info.value, fake, rsa_pem[0])


async def test_refresh_failure_after_401_is_translated(
        dest: GoogleSheetsDestination, fake: FakeGoogle) -> None:
    fake.append_queue.append(httpx.Response(401))
    fake.token_queue += [None, httpx.Response(400, json={
        "error": "invalid_grant", "error_description": "account disabled"})]
    with pytest.raises(PermanentError, match="invalid_grant: account disabled"):
        await dest.send_batch([delivery(order())])
    assert len(fake.token_requests) == 2 and len(fake.append_requests) == 1


# -- the bridge itself -------------------------------------------------------------------

async def test_bridge_refuses_to_run_on_the_loop_thread() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as h:
        request = AsyncClientRequest(h, asyncio.get_running_loop())
        with pytest.raises(UsageError):
            request(TOKEN_URI, method="POST", body=b"")


async def test_bridge_returns_status_headers_data_from_a_thread() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"x-a": "1"}, content=b"payload")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as h:
        request = AsyncClientRequest(h, asyncio.get_running_loop())
        response = await asyncio.to_thread(request, TOKEN_URI, "POST", b"x", {"h": "v"})
    assert (response.status, response.headers["x-a"], response.data) == (200, "1", b"payload")


async def test_send_before_start_is_a_usage_error(tmp_path: Path,
                                                  rsa_pem: tuple[str, str]) -> None:
    with pytest.raises(UsageError):
        await make_dest(write_key(tmp_path, rsa_pem[0])).send_batch([delivery(order())])
    assert await make_dest("k.json").send_batch([]) == []


# -- against the emulator (token endpoint + Sheets), in-process through ASGITransport -------

async def test_against_the_emulator(tmp_path: Path) -> None:
    base = "http://emulator.test"
    app = create_app(EmulatorSettings())
    state = app.state.emulator
    state.add_spreadsheet("audit-sheet", ["My Orders"])
    key = tmp_path / "sa.json"
    state.write_credentials(key, base)
    d = make_dest(key, api_base=base, spreadsheet_id="audit-sheet")
    d.check()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        await d.start(http)
        msgs = [order(order_id="A-1"), order(order_id="A-2", amount=Decimal("300.00"))]
        outcomes = await d.send_batch([delivery(m, i) for i, m in enumerate(msgs)])
        assert outcomes == [Sent(remote_id="'My Orders'!A1:G2", detail="'My Orders'!A1:G1"),
                            Sent(remote_id="'My Orders'!A1:G2", detail="'My Orders'!A2:G2")]
        rows = state.spreadsheets["audit-sheet"].sheet("My Orders").rows
        assert [(r[1], r[2], r[3], r[4], r[6]) for r in rows] == [
            (msgs[0].id, "A-1", "Ada Lovelace", 349.99, True),
            (msgs[1].id, "A-2", "Ada Lovelace", 300.0, True)]
        assert state.tokens_issued == 1

        # every token revoked: the 401 leads to one refresh and one re-send
        assert (await http.post(f"{base}/_emulator/tokens/revoke")).is_success
        [again] = await d.send_batch([delivery(order(order_id="A-3"))])
        assert again == Sent(remote_id="'My Orders'!A3:G3", detail="'My Orders'!A3:G3")
        assert state.tokens_issued == 2 and len(rows) == 3

        # an injected 503 with Retry-After reaches the engine as a retryable error
        fault = {"api": "sheets", "status": 503, "retry_after": 4}
        assert (await http.post(f"{base}/_emulator/faults", json=fault)).is_success
        with pytest.raises(RetryableError) as info:
            await d.send_batch([delivery(order(order_id="A-4"))])
        assert (info.value.code, info.value.retry_after, info.value.ambiguous) == (503, 4.0, True)
        assert len(rows) == 3


# -- read-back after an ambiguous failure ---------------------------------------------------

COLUMN_B = quote("'My Orders'!B:B", safe="")


async def test_no_read_back_when_nothing_is_ambiguous(dest: GoogleSheetsDestination,
                                                      fake: FakeGoogle) -> None:
    fake.column = ["message_id", "whatever"]
    outcomes = await dest.send_batch([delivery(order()), delivery(order(), 2)])
    assert [r.method for r in fake.sheet_requests] == ["POST"]  # exactly one request
    assert fake.get_requests == [] and all(isinstance(o, Sent) for o in outcomes)


async def test_read_back_then_append_only_the_missing(dest: GoogleSheetsDestination,
                                                      fake: FakeGoogle) -> None:
    m1, m2, m3 = order(order_id="A-1"), order(order_id="A-2"), order(order_id="A-3")
    fake.column = ["message_id", m1.id, "", m3.id, "someone-else"]
    outcomes = await dest.send_batch([delivery(m1, 1, ambiguous=True), delivery(m2, 2),
                                      delivery(m3, 3)])

    assert [r.method for r in fake.sheet_requests] == ["GET", "POST"]
    get, post = fake.sheet_requests
    assert get.url.raw_path.decode().split("?")[0] == (
        f"/v4/spreadsheets/{SHEET_ID}/values/{COLUMN_B}")
    assert COLUMN_B == "%27My%20Orders%27%21B%3AB"
    assert dict(get.url.params) == {"majorDimension": "ROWS",
                                    "valueRenderOption": "UNFORMATTED_VALUE"}
    assert get.headers["authorization"] == "Bearer ya29.secret-token-1"
    assert [row[1] for row in jsoncodec.loads(post.content)["values"]] == [m2.id]
    assert outcomes == [
        Sent(remote_id="'My Orders'!A2:G2", detail=READ_BACK_DETAIL),
        Sent(remote_id="'My Orders'!A2:G2", detail="'My Orders'!A2:G2"),  # the fake's answer
        Sent(remote_id="'My Orders'!A4:G4", detail=READ_BACK_DETAIL)]


async def test_read_back_all_found_appends_nothing(dest: GoogleSheetsDestination,
                                                   fake: FakeGoogle) -> None:
    m1, m2 = order(), order()
    fake.column = [m2.id, m1.id]
    outcomes = await dest.send_batch([delivery(m1, ambiguous=True), delivery(m2, 2,
                                                                             ambiguous=True)])
    assert [r.method for r in fake.sheet_requests] == ["GET"]
    assert outcomes == [Sent(remote_id="'My Orders'!A2:G2", detail=READ_BACK_DETAIL),
                        Sent(remote_id="'My Orders'!A1:G1", detail=READ_BACK_DETAIL)]


async def test_read_back_understands_a_columns_answer_and_an_offset_range(
        tmp_path: Path, rsa_pem: tuple[str, str], fake: FakeGoogle) -> None:
    m = order()
    fake.get_queue.append(httpx.Response(200, json={
        "range": "Log!D5:D1000", "majorDimension": "COLUMNS", "values": [["x", "", m.id]]}))
    d = make_dest(write_key(tmp_path, rsa_pem[0]), range="Log!C5:E",
                  columns=["amount", "message_id", "order_id"])
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        await d.start(http)
        [outcome] = await d.send_batch([delivery(m, ambiguous=True)])
    assert fake.get_requests[0].url.raw_path.decode().split("?")[0].endswith(
        "/values/" + quote("Log!D5:D", safe=""))
    assert outcome == Sent(remote_id="Log!C7:E7", detail=READ_BACK_DETAIL)
    assert fake.append_requests == []


@pytest.mark.parametrize(("range_", "columns", "expected"), [
    ("Orders!A:G", None, "Orders!B:B"),
    ("Orders", None, "Orders!B:B"),
    ("'My Orders'", None, "'My Orders'!B:B"),
    ("'My Orders'!A:G", None, "'My Orders'!B:B"),
    ("'It''s!here'!C5:I", None, "'It''s!here'!D5:D"),
    ("Orders!A1:G1000", ["message_id"], "Orders!A1:A"),
    ("A:G", None, "B:B"),
    ("A2:G", None, "B2:B"),
    ("Log", None, "Log!B:B"),  # a bare word is a sheet name, not column LOG
    ("Orders!Y:AE", ["a", "b", "message_id"], "Orders!AA:AA"),
    ("Orders!3:100", None, "Orders!B3:B"),
])
def test_message_id_column_range(range_: str, columns: list[str] | None, expected: str) -> None:
    extra = {"columns": columns} if columns else {}
    column = make_dest("k.json", range=range_, **extra).id_column()
    assert column is not None and column.a1 == expected


@pytest.mark.parametrize("range_", ["'Unclosed!A:G", "'Sheet'A:G", "Orders!?", "Orders!:"])
def test_unreadable_range_is_a_config_error(tmp_path: Path, rsa_pem: tuple[str, str],
                                            range_: str) -> None:
    with pytest.raises(ConfigError, match="cannot understand range"):
        make_dest(write_key(tmp_path, rsa_pem[0]), range=range_).check()


async def test_without_a_message_id_column_it_just_appends(
        tmp_path: Path, rsa_pem: tuple[str, str], fake: FakeGoogle) -> None:
    d = make_dest(write_key(tmp_path, rsa_pem[0]), columns=["order_id", "amount"])
    assert d.id_column() is None
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        await d.start(http)
        [outcome] = await d.send_batch([delivery(order(), ambiguous=True)])
    assert [r.method for r in fake.sheet_requests] == ["POST"] and isinstance(outcome, Sent)


@pytest.mark.parametrize(("failure", "kind", "code", "retry_after"), [
    (httpx.Response(429, headers={"Retry-After": "9"},
                    json=_gerr(429, "RESOURCE_EXHAUSTED", "Read quota")), RetryableError, 429, 9.0),
    (httpx.Response(503, json=_gerr(503, "UNAVAILABLE", "later")), RetryableError, 503, None),
    (httpx.Response(403, json=_gerr(403, "PERMISSION_DENIED", "no")), PermanentError, 403, None),
    (httpx.Response(400, json=_gerr(400, "INVALID_ARGUMENT", "Unable to parse range")),
     PermanentError, 400, None),
    (httpx.ConnectError("refused"), RetryableError, None, None),
])
async def test_failed_read_back_fails_the_batch_and_stays_ambiguous(
        dest: GoogleSheetsDestination, fake: FakeGoogle, rsa_pem: tuple[str, str],
        failure: httpx.Response | Exception, kind: type[DeliveryError], code: int | None,
        retry_after: float | None) -> None:
    fake.get_queue.append(failure)
    with pytest.raises(kind) as info:
        await dest.send_batch([delivery(order()), delivery(order(), 2, ambiguous=True)])
    assert type(info.value) is kind and info.value.code == code
    assert getattr(info.value, "retry_after", None) == retry_after
    # still unresolved: the next attempt must read back again (the engine keeps the last flag)
    assert info.value.ambiguous is True
    assert fake.append_requests == [] and len(fake.get_requests) == 1
    assert_no_secret(info.value, fake, rsa_pem[0])


async def test_read_back_401_refreshes_once(dest: GoogleSheetsDestination,
                                            fake: FakeGoogle) -> None:
    m = order()
    fake.get_queue.append(httpx.Response(401, json=_gerr(401, "UNAUTHENTICATED", "expired")))
    [outcome] = await dest.send_batch([delivery(m, ambiguous=True)])
    assert [r.method for r in fake.sheet_requests] == ["GET", "GET", "POST"]
    assert [r.headers["authorization"] for r in fake.sheet_requests] == [
        "Bearer ya29.secret-token-1", "Bearer ya29.secret-token-2", "Bearer ya29.secret-token-2"]
    assert isinstance(outcome, Sent) and outcome.detail != READ_BACK_DETAIL


async def test_append_error_after_read_back_stays_ambiguous(dest: GoogleSheetsDestination,
                                                            fake: FakeGoogle) -> None:
    fake.append_queue.append(httpx.Response(429, json=_gerr(429, "RESOURCE_EXHAUSTED", "q")))
    with pytest.raises(RetryableError) as info:
        await dest.send_batch([delivery(order(), ambiguous=True)])
    assert info.value.code == 429 and info.value.ambiguous is True
    assert [r.method for r in fake.sheet_requests] == ["GET", "POST"]


async def test_read_back_against_the_emulator(tmp_path: Path) -> None:
    base = "http://emulator.test"
    app = create_app(EmulatorSettings())
    state = app.state.emulator
    state.add_spreadsheet("audit-sheet", ["My Orders"])
    key = tmp_path / "sa.json"
    state.write_credentials(key, base)
    d = make_dest(key, api_base=base, spreadsheet_id="audit-sheet")
    d.check()
    m1, m2, m3 = (order(order_id=f"A-{i}") for i in (1, 2, 3))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        await d.start(http)
        await d.send_batch([delivery(m1, 1), delivery(m2, 2)])
        rows = state.spreadsheets["audit-sheet"].sheet("My Orders").rows
        assert len(rows) == 2

        outcomes = await d.send_batch([delivery(m1, 1, ambiguous=True), delivery(m2, 2),
                                       delivery(m3, 3)])
        assert [r[1] for r in rows] == [m1.id, m2.id, m3.id]  # one new row only
        assert outcomes == [
            Sent(remote_id="'My Orders'!A1:G1", detail=READ_BACK_DETAIL),
            Sent(remote_id="'My Orders'!A2:G2", detail=READ_BACK_DETAIL),
            Sent(remote_id="'My Orders'!A3:G3", detail="'My Orders'!A3:G3")]
        assert state.calls["sheets"]["spreadsheets.values.get"] == 1
        assert state.calls["sheets"]["spreadsheets.values.append"] == 2


async def test_append_that_took_effect_is_not_repeated_against_the_emulator(
        tmp_path: Path) -> None:
    base = "http://emulator.test"
    app = create_app(EmulatorSettings())
    state = app.state.emulator
    state.add_spreadsheet("audit-sheet", ["My Orders"])
    key = tmp_path / "sa.json"
    state.write_credentials(key, base)
    d = make_dest(key, api_base=base, spreadsheet_id="audit-sheet")
    m = order()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        await d.start(http)
        fault = {"api": "sheets", "status": 503, "after_effect": True,
                 "method": "spreadsheets.values.append"}
        assert (await http.post(f"{base}/_emulator/faults", json=fault)).is_success
        with pytest.raises(RetryableError) as info:
            await d.send_batch([delivery(m)])
        assert info.value.ambiguous
        # the engine re-sends with the flag it recorded
        [again] = await d.send_batch([delivery(m, ambiguous=info.value.ambiguous)])
        assert again == Sent(remote_id="'My Orders'!A1:G1", detail=READ_BACK_DETAIL)
        assert [r[1] for r in state.spreadsheets["audit-sheet"].sheet("My Orders").rows] == [m.id]


async def test_read_back_hits_are_logged_for_the_fault_suite(
        dest: GoogleSheetsDestination, fake: FakeGoogle, caplog: pytest.LogCaptureFixture) -> None:
    m = order()
    fake.column = [m.id]
    with caplog.at_level("INFO", logger="alertpipe.destinations.google_sheets"):
        await dest.send_batch([delivery(m, ambiguous=True), delivery(order(), 2)])
    # tests/reliability counts events that start with "read-back found"
    assert [r.getMessage() for r in caplog.records] == [
        f"read-back found 1 of 2 rows already in {RANGE}"]
