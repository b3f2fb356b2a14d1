"""TwilioSmsDestination against a fake Twilio Messages API in httpx.MockTransport."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import ValidationError

from alertpipe.destinations import REGISTRY, load_builtins
from alertpipe.destinations.base import Delivery, DestinationConfig, Sent
from alertpipe.destinations.twilio_sms import (
    FOUND_BY_LOOKUP,
    LOOKUP_MAX_PAGES,
    RecipientWindow,
    TwilioSmsDestination,
)
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

SID = "AC" + "a1" * 16
TOKEN = "tok-SECRET-0123456789abcdef"
API_KEY = "SK" + "b2" * 16
API_SECRET = "apisecret-SECRET-fedcba"
SERVICE = "MG" + "c3" * 16
API = "https://twilio.fake.test"
SECRETS = (TOKEN, API_SECRET)


def config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"type": "twilio_sms", "account_sid": SID, "auth_token": TOKEN,
                           "from_number": "+15550000001", "to": "+15551112222, +15553334444",
                           "api_base": API}
    cfg.update(overrides)
    return cfg


def make_dest(**overrides: Any) -> TwilioSmsDestination:
    cfg = TwilioSmsDestination.Config.model_validate(config(**overrides))
    return TwilioSmsDestination("oncall", cfg)


def order(**extra: Any) -> Message:
    body: dict[str, Any] = {"order_id": "A-1001", "customer_name": "Ada Lovelace",
                            "customer_phone": "+15551234567", "amount": Decimal("349.99"),
                            "currency": "USD", "high_value": True}
    body.update(extra)
    return Message.new("orders", body)


def delivery(target: str = "+15551112222", message: Message | None = None, *,
             ambiguous: bool = False) -> Delivery:
    return Delivery(id=1, message=message or order(), destination="oncall", target=target,
                    attempts=0, ambiguous=ambiguous)


def page(messages: list[dict[str, Any]], next_page_uri: str | None = None) -> dict[str, Any]:
    return {"messages": messages, "next_page_uri": next_page_uri, "page": 0, "page_size": 50}


class FakeTwilio:
    """Records requests; answers from a queue (responses or exceptions), else 201 queued for a
    POST and a one-page list of ``listing`` for a GET."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.queue: list[httpx.Response | Exception] = []
        self.listing: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.queue:
            item = self.queue.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        if request.method == "GET":
            return httpx.Response(200, json=page(self.listing))
        n = len(self.requests)
        return httpx.Response(201, json={"sid": f"SM{n:032x}", "status": "queued"})

    def form(self, i: int = -1) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.requests[i].content.decode()).items()}


@pytest.fixture
def fake() -> FakeTwilio:
    return FakeTwilio()


async def started(d: TwilioSmsDestination, fake: FakeTwilio,
                  client: httpx.AsyncClient) -> TwilioSmsDestination:
    d.check()
    await d.start(client)
    return d


@pytest.fixture
async def http(fake: FakeTwilio) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
        yield client


def assert_no_secret(exc: BaseException) -> None:
    for text in (str(exc), repr(exc)):
        for secret in SECRETS:
            assert secret not in text


# -- config and check ----------------------------------------------------------------------

def test_config_parsing_and_registration() -> None:
    load_builtins()
    assert REGISTRY["twilio_sms"] is TwilioSmsDestination
    d = make_dest(to=" +15551112222,+15553334444 ,+15551112222,")
    assert d.targets(order()) == ["+15551112222", "+15553334444"]
    assert make_dest(to=["+15559990000"]).targets(order()) == ["+15559990000"]
    assert (d.batch_size, d.concurrency, d.max_requests_per_minute) == (1, 2, 60)
    assert d.rate_key() == "twilio_sms:+15550000001"
    assert make_dest(from_number="", messaging_service_sid=SERVICE).rate_key() == (
        f"twilio_sms:{SERVICE}")
    assert d.describe(delivery("+15553334444")) == "SMS to +15553334444"
    assert TOKEN not in repr(d.config) and TOKEN not in str(d.config)


@pytest.mark.parametrize("bad", [
    {"account_sid": "AC123"}, {"api_key": "SKnope"}, {"messaging_service_sid": "MGxyz"},
    {"from_number": "5551234"}, {"to": "+15551112222,555-1234"}, {"extra_key": 1},
    {"concurrency": 0},
])
def test_config_rejects(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TwilioSmsDestination.Config.model_validate(config(**bad))


@pytest.mark.parametrize("secret", [{"auth_token": 98765432101234}, {"api_secret": 98765432101234}])
def test_config_errors_never_echo_a_secret(secret: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="quote it in YAML") as info:
        TwilioSmsDestination.Config.model_validate(config(**secret, api_key=API_KEY))
    assert "98765432101234" not in str(info.value) and "98765432101234" not in repr(info.value)


def test_wrong_config_class_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        TwilioSmsDestination("oncall", DestinationConfig(type="twilio_sms"))


@pytest.mark.parametrize(("overrides", "kind", "needle"), [
    ({"account_sid": ""}, CredentialsError, "account_sid is missing (set TWILIO_ACCOUNT_SID)"),
    ({"auth_token": ""}, CredentialsError, "auth_token is missing (set TWILIO_AUTH_TOKEN"),
    ({"auth_token": None, "api_key": API_KEY, "api_secret": ""}, CredentialsError,
     "api_secret is missing (set TWILIO_API_SECRET)"),
    ({"api_secret": API_SECRET}, CredentialsError, "api_key is missing (set TWILIO_API_KEY)"),
    ({"from_number": ""}, ConfigError, "from_number or messaging_service_sid is required"),
    ({"to": ""}, ConfigError, "set ALERT_SMS_TO"),
])
def test_check_names_what_is_missing(overrides: dict[str, Any], kind: type[ConfigError],
                                     needle: str) -> None:
    with pytest.raises(kind) as info:
        make_dest(**overrides).check()
    assert type(info.value) is kind
    assert needle in str(info.value)
    assert_no_secret(info.value)


def test_check_accepts_either_credential_pair() -> None:
    make_dest().check()
    make_dest(auth_token="", api_key=API_KEY, api_secret=API_SECRET).check()
    make_dest(from_number=None, messaging_service_sid=SERVICE).check()


@pytest.mark.parametrize("template", ["{0}", "{order_id", "{amount:.q}", "{customer.name}"])
def test_bad_template_is_a_config_error_at_construction(template: str) -> None:
    with pytest.raises(ConfigError, match="template"):
        make_dest(template=template)


def test_render() -> None:
    d = make_dest()
    assert d.render(order()) == "High-value order A-1001: $349.99 USD from Ada Lovelace"
    msg = order(customer_name=None, billing={"phone": "+15550009999"})
    d2 = make_dest(template="{order_id} {message_id} {channel} [{nothing}] {amount:>8} "
                   "[{customer_name}] [{absent:>5}] [{absent[x].y!r}] {billing[phone]}")
    assert d2.render(msg) == f"A-1001 {msg.id} orders []   349.99 [] [] [] +15550009999"
    assert len(make_dest(template="{note}").render(order(note="x" * 5000))) == 1600


# -- sending ---------------------------------------------------------------------------

async def test_send_request_shape(fake: FakeTwilio, http: httpx.AsyncClient) -> None:
    d = await started(make_dest(), fake, http)
    sent = await d.send(delivery("+15553334444"))
    assert sent == Sent(remote_id=f"SM{1:032x}", detail="queued")
    assert len(fake.requests) == 1
    req = fake.requests[0]
    assert req.method == "POST"
    assert str(req.url) == f"{API}/2010-04-01/Accounts/{SID}/Messages.json"
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert fake.form() == {"To": "+15553334444", "From": "+15550000001",
                           "Body": "High-value order A-1001: $349.99 USD from Ada Lovelace"}
    scheme, _, creds = req.headers["authorization"].partition(" ")
    assert scheme == "Basic" and base64.b64decode(creds).decode() == f"{SID}:{TOKEN}"


async def test_send_with_api_key_and_messaging_service(fake: FakeTwilio,
                                                       http: httpx.AsyncClient) -> None:
    d = await started(make_dest(auth_token=None, api_key=API_KEY, api_secret=API_SECRET,
                                from_number=None, messaging_service_sid=SERVICE), fake, http)
    await d.send(delivery())
    form = fake.form()
    assert form["MessagingServiceSid"] == SERVICE and "From" not in form
    creds = fake.requests[0].headers["authorization"].split()[1]
    assert base64.b64decode(creds).decode() == f"{API_KEY}:{API_SECRET}"
    assert f"/Accounts/{SID}/" in fake.requests[0].url.path


async def test_one_failure_does_not_touch_other_recipients(fake: FakeTwilio,
                                                           http: httpx.AsyncClient) -> None:
    d = await started(make_dest(), fake, http)
    fake.queue.append(httpx.Response(400, json={"code": 21211, "message": "Invalid 'To'",
                                                "status": 400}))
    outcomes = await d.send_batch([delivery("+15551112222")])
    outcomes += await d.send_batch([delivery("+15553334444")])
    assert isinstance(outcomes[0], PermanentError) and isinstance(outcomes[1], Sent)
    assert [fake.form(i)["To"] for i in range(2)] == ["+15551112222", "+15553334444"]


def _tw(status: int, code: int | None, message: str = "boom") -> dict[str, Any]:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/"
            f"{code}", "status": status}


@pytest.mark.parametrize(("response", "kind", "code", "retry_after", "ambiguous", "needle"), [
    *[(httpx.Response(400, json=_tw(400, c, "number problem")), PermanentError, c, None, False,
       f"Twilio {c}: number problem")
      for c in (21211, 21408, 21606, 21608, 21610, 21612, 21614)],
    (httpx.Response(429, headers={"Retry-After": "3"}, json=_tw(429, 20429, "Too Many Requests")),
     RetryableError, 20429, 3.0, False, "Twilio 20429"),
    (httpx.Response(429, headers={"Retry-After": "7"}, text="slow down"),
     RetryableError, 429, 7.0, False, "429"),
    (httpx.Response(400, json=_tw(400, 20429, "Too Many Requests")),
     RetryableError, 20429, None, False, "Twilio 20429"),
    (httpx.Response(500, json=_tw(500, 20500, "Internal Server Error")),
     RetryableError, 20500, None, True, "Twilio 20500"),
    (httpx.Response(503, text="<html>down</html>"), RetryableError, 503, None, True, "HTTP 503"),
    (httpx.Response(401, json=_tw(401, 20003, "Authenticate")),
     PermanentError, 20003, None, False, "authentication failed"),
    (httpx.Response(401, text=""), PermanentError, 401, None, False, "authentication failed"),
    (httpx.Response(400, json=_tw(400, 21602, "Message body is required.")),
     PermanentError, 21602, None, False, "Twilio 21602: Message body is required."),
    (httpx.Response(404, json=_tw(404, 20404, "Not found")),
     PermanentError, 20404, None, False, "Twilio 20404"),
    (httpx.Response(403, text="nope"), PermanentError, 403, None, False, "HTTP 403"),
    # a code known to be permanent stays permanent, whatever status it arrives with
    (httpx.Response(502, json=_tw(502, 21610, "unsubscribed")), PermanentError, 21610, None,
     False, "Twilio 21610: unsubscribed"),
])
async def test_status_mapping(fake: FakeTwilio, http: httpx.AsyncClient,
                              response: httpx.Response, kind: type[DeliveryError], code: int,
                              retry_after: float | None, ambiguous: bool, needle: str) -> None:
    d = await started(make_dest(), fake, http)
    fake.queue.append(response)
    with pytest.raises(kind) as info:
        await d.send(delivery())
    err = info.value
    assert type(err) is kind
    assert (err.code, err.ambiguous) == (code, ambiguous)
    assert getattr(err, "throttled", False) is (code == 20429 or response.status_code == 429)
    assert getattr(err, "retry_after", None) == retry_after
    assert needle in str(err)
    assert len(fake.requests) == 1  # never retried here, not even after a 500
    assert_no_secret(err)


@pytest.mark.parametrize(("exc", "ambiguous"), [
    (httpx.ReadTimeout("timed out"), True),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
    (httpx.WriteError("broken pipe"), True),
    (httpx.ConnectError("connection refused"), False),
    (httpx.ConnectTimeout("connect timed out"), False),
    (httpx.PoolTimeout("no connection free"), False),
])
async def test_transport_errors(fake: FakeTwilio, http: httpx.AsyncClient, exc: Exception,
                                ambiguous: bool) -> None:
    d = await started(make_dest(api_key=API_KEY, api_secret=API_SECRET), fake, http)
    fake.queue.append(exc)
    with pytest.raises(RetryableError) as info:
        await d.send(delivery())
    assert info.value.ambiguous is ambiguous and info.value.__cause__ is exc
    assert len(fake.requests) == 1
    assert_no_secret(info.value)


async def test_send_guards(fake: FakeTwilio, http: httpx.AsyncClient) -> None:
    with pytest.raises(UsageError):
        await make_dest().send(delivery())
    d = await started(make_dest(), fake, http)
    with pytest.raises(PermanentError, match="no recipient"):
        await d.send(Delivery(id=1, message=order(), destination="oncall", target=None,
                              attempts=0))
    assert fake.requests == []


# -- against the emulator, in-process through ASGITransport --------------------------------

async def test_against_the_emulator() -> None:
    base = "http://emulator.test"
    app = create_app(EmulatorSettings(twilio_account_sid=SID, twilio_auth_token=TOKEN,
                                      twilio_from_numbers=["+15550000001"]))
    state = app.state.emulator
    d = make_dest(api_base=base, to="+15551112222,+15005550001")  # the second: Twilio's 21211
    d.check()
    msg = order()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        await d.start(http)
        sent, refused = await d.send_batch([delivery(str(t), msg) for t in d.targets(msg)])
        assert isinstance(sent, Sent) and sent.remote_id and sent.remote_id.startswith("SM")
        assert isinstance(refused, PermanentError) and refused.code == 21211
        assert str(refused).startswith("Twilio 21211: ")
        assert [(m["To"], m["From"], m["Body"], m["sid"]) for m in state.sms_log] == [
            ("+15551112222", "+15550000001", d.render(msg), sent.remote_id)]

        fault = {"api": "twilio", "status": 500}
        assert (await http.post(f"{base}/_emulator/faults", json=fault)).is_success
        with pytest.raises(RetryableError) as info:
            await d.send(delivery())
        assert info.value.ambiguous and info.value.code == 20500
        assert state.calls["twilio"]["messages.create"] == 3  # no silent re-send

        wrong = make_dest(api_base=base, auth_token="not-the-token")
        await wrong.start(http)
        with pytest.raises(PermanentError) as denied:
            await wrong.send(delivery())
        assert denied.value.code == 20003 and "not-the-token" not in str(denied.value)


# -- lookup before an ambiguous re-send -----------------------------------------------------

TEXT = "High-value order A-1001: $349.99 USD from Ada Lovelace"
#: 00:30 at UTC+2 is the previous day in UTC: 2024-04-30, so the lookup starts at 2024-04-29.
RECEIVED = datetime(2024, 5, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))


def fixed_order() -> Message:
    return replace(order(), received_at=RECEIVED)


def listed(sid: str, *, to: str = "+15551112222", body: str = TEXT,
           frm: str | None = "+15550000001", service: str | None = None) -> dict[str, Any]:
    return {"sid": sid, "to": to, "from": frm, "body": body, "status": "delivered",
            "messaging_service_sid": service, "date_sent": "Tue, 30 Apr 2024 22:31:00 +0000"}


async def test_no_lookup_when_not_ambiguous(fake: FakeTwilio, http: httpx.AsyncClient) -> None:
    d = await started(make_dest(), fake, http)
    fake.listing = [listed("SMold")]
    sent = await d.send(delivery())
    assert [r.method for r in fake.requests] == ["POST"] and sent.detail == "queued"


async def test_ambiguous_resend_found_by_lookup(fake: FakeTwilio, http: httpx.AsyncClient) -> None:
    d = await started(make_dest(), fake, http)
    fake.listing = [listed("SMother", body=TEXT + "!"), listed("SMfound")]
    sent = await d.send(delivery(message=fixed_order(), ambiguous=True))
    assert sent == Sent(remote_id="SMfound", detail=FOUND_BY_LOOKUP)
    assert len(fake.requests) == 1  # no POST
    req = fake.requests[0]
    assert req.method == "GET"
    assert str(req.url).split("?")[0] == f"{API}/2010-04-01/Accounts/{SID}/Messages.json"
    assert dict(req.url.params) == {"To": "+15551112222", "From": "+15550000001",
                                    "DateSent>": "2024-04-29", "PageSize": "50"}
    assert "DateSent%3E=2024-04-29" in req.url.query.decode()
    scheme, _, creds = req.headers["authorization"].partition(" ")
    assert scheme == "Basic" and base64.b64decode(creds).decode() == f"{SID}:{TOKEN}"


@pytest.mark.parametrize("near_miss", [
    listed("SMx", body=TEXT + " "), listed("SMx", to="+15553334444"),
    listed("SMx", frm="+15550000009"), {"to": "+15551112222", "body": TEXT, "sid": None},
])
async def test_ambiguous_resend_not_found_posts(fake: FakeTwilio, http: httpx.AsyncClient,
                                                near_miss: dict[str, Any]) -> None:
    d = await started(make_dest(), fake, http)
    fake.listing = [near_miss]
    sent = await d.send(delivery(ambiguous=True))
    assert [r.method for r in fake.requests] == ["GET", "POST"]
    assert sent == Sent(remote_id=f"SM{2:032x}", detail="queued")
    assert fake.form()["Body"] == TEXT


async def test_lookup_with_a_messaging_service_filters_by_to_only(
        fake: FakeTwilio, http: httpx.AsyncClient) -> None:
    d = await started(make_dest(from_number=None, messaging_service_sid=SERVICE), fake, http)
    fake.listing = [listed("SMwrong", frm="+15550000009", service="MG" + "d4" * 16),
                    listed("SMright", frm="+15550000009", service=SERVICE)]
    sent = await d.send(delivery(message=fixed_order(), ambiguous=True))
    assert sent == Sent(remote_id="SMright", detail=FOUND_BY_LOOKUP)
    assert dict(fake.requests[0].url.params) == {"To": "+15551112222", "DateSent>": "2024-04-29",
                                                 "PageSize": "50"}


async def test_lookup_follows_next_page_uri(fake: FakeTwilio, http: httpx.AsyncClient) -> None:
    d = await started(make_dest(), fake, http)
    nxt = f"/2010-04-01/Accounts/{SID}/Messages.json?To=%2B15551112222&PageSize=50&Page=1"
    fake.queue += [httpx.Response(200, json=page([listed("SMa", body="other")], nxt)),
                   httpx.Response(200, json=page([listed("SMb")]))]
    sent = await d.send(delivery(ambiguous=True))
    assert sent == Sent(remote_id="SMb", detail=FOUND_BY_LOOKUP)
    assert [r.method for r in fake.requests] == ["GET", "GET"]
    assert str(fake.requests[1].url) == API + nxt


async def test_lookup_reads_a_bounded_number_of_pages(fake: FakeTwilio,
                                                      http: httpx.AsyncClient) -> None:
    d = await started(make_dest(), fake, http)
    nxt = f"/2010-04-01/Accounts/{SID}/Messages.json?Page=1"
    fake.queue += [httpx.Response(200, json=page([], nxt)) for _ in range(LOOKUP_MAX_PAGES)]
    await d.send(delivery(ambiguous=True))
    assert [r.method for r in fake.requests] == ["GET"] * LOOKUP_MAX_PAGES + ["POST"]


@pytest.mark.parametrize(("failure", "kind", "code", "retry_after"), [
    (httpx.Response(429, headers={"Retry-After": "4"}, json=_tw(429, 20429, "Too Many")),
     RetryableError, 20429, 4.0),
    (httpx.Response(503, text="down"), RetryableError, 503, None),
    (httpx.Response(401, json=_tw(401, 20003, "Authenticate")), PermanentError, 20003, None),
    (httpx.ConnectError("refused"), RetryableError, None, None),
    (httpx.ReadTimeout("slow"), RetryableError, None, None),
])
async def test_lookup_failure_sends_nothing_and_stays_ambiguous(
        fake: FakeTwilio, http: httpx.AsyncClient, failure: httpx.Response | Exception,
        kind: type[DeliveryError], code: int | None, retry_after: float | None) -> None:
    d = await started(make_dest(), fake, http)
    fake.queue.append(failure)
    with pytest.raises(kind) as info:
        await d.send(delivery(ambiguous=True))
    err = info.value
    assert type(err) is kind and err.code == code
    assert getattr(err, "retry_after", None) == retry_after
    assert err.ambiguous is True  # the next attempt must look up again
    assert [r.method for r in fake.requests] == ["GET"]
    assert_no_secret(err)
    assert d.recipient_window.count("+15551112222") == 0


async def test_unambiguous_post_failure_after_lookup_stays_ambiguous(
        fake: FakeTwilio, http: httpx.AsyncClient) -> None:
    d = await started(make_dest(), fake, http)
    fake.queue += [httpx.Response(200, json=page([])), httpx.ConnectError("refused")]
    with pytest.raises(RetryableError) as info:
        await d.send(delivery(ambiguous=True))
    assert info.value.ambiguous is True
    assert [r.method for r in fake.requests] == ["GET", "POST"]


async def test_lookup_against_the_emulator() -> None:
    base = "http://emulator.test"
    app = create_app(EmulatorSettings(twilio_account_sid=SID, twilio_auth_token=TOKEN,
                                      twilio_from_numbers=["+15550000001"]))
    state = app.state.emulator
    d = make_dest(api_base=base)
    d.check()
    msg = order()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        await d.start(http)
        first = await d.send(delivery(message=msg))
        again = await d.send(delivery(message=msg, ambiguous=True))
        assert first.remote_id and again == Sent(remote_id=first.remote_id,
                                                 detail=FOUND_BY_LOOKUP)
        assert list(state.messages) == [first.remote_id]
        assert state.calls["twilio"]["messages.create"] == 1
        assert state.calls["twilio"]["messages.list"] == 1

        # another order's text is not mistaken for this one
        other = await d.send(delivery(message=order(order_id="A-2"), ambiguous=True))
        assert other.detail == "queued" and len(state.messages) == 2


async def test_create_that_took_effect_is_not_repeated_against_the_emulator() -> None:
    base = "http://emulator.test"
    app = create_app(EmulatorSettings(twilio_account_sid=SID, twilio_auth_token=TOKEN,
                                      twilio_from_numbers=["+15550000001"]))
    state = app.state.emulator
    d = make_dest(api_base=base)
    msg = order()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        await d.start(http)
        fault = {"api": "twilio", "status": 500, "after_effect": True,
                 "method": "messages.create"}
        assert (await http.post(f"{base}/_emulator/faults", json=fault)).is_success
        with pytest.raises(RetryableError) as info:
            await d.send(delivery(message=msg))
        assert info.value.ambiguous
        again = await d.send(delivery(message=msg, ambiguous=info.value.ambiguous))
        assert again.detail == FOUND_BY_LOOKUP
        assert [m["sid"] for m in state.sms_log] == [again.remote_id]


# -- the per-recipient cap ------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cap_config() -> None:
    assert make_dest().config.max_per_recipient_per_hour == 30
    assert make_dest().recipient_window.cap == 30
    with pytest.raises(ValidationError):
        make_dest(max_per_recipient_per_hour=-1)


async def test_cap_reached_raises_without_calling_twilio(fake: FakeTwilio,
                                                         http: httpx.AsyncClient) -> None:
    d = await started(make_dest(max_per_recipient_per_hour=2), fake, http)
    clock = Clock()
    d.recipient_window.clock = clock
    await d.send(delivery())
    clock.now += 600
    await d.send(delivery())
    clock.now += 60
    with pytest.raises(RetryableError) as info:
        await d.send(delivery())
    err = info.value
    assert err.code == "recipient_cap" and err.ambiguous is False and err.throttled is True
    assert err.retry_after == pytest.approx(3600 - 660)
    assert "recipient cap of 2 per hour reached" in str(err)
    assert len(fake.requests) == 2
    await d.send(delivery("+15553334444"))  # another recipient has its own window
    clock.now += 3600 - 660  # the first send leaves the window
    await d.send(delivery())
    assert len(fake.requests) == 4
    with pytest.raises(RetryableError) as info:
        await d.send(delivery())
    assert info.value.retry_after == pytest.approx(600)


async def test_ready_in_waits_only_once_every_recipient_is_capped(
        fake: FakeTwilio, http: httpx.AsyncClient) -> None:
    d = await started(make_dest(max_per_recipient_per_hour=1), fake, http)
    clock = Clock()
    d.recipient_window.clock = clock
    assert d.ready_in() == 0
    await d.send(delivery("+15551112222"))
    assert d.ready_in() == 0  # the other recipient still has room
    clock.now += 100
    await d.send(delivery("+15553334444"))
    assert d.ready_in() == pytest.approx(3600 - 100)  # until the first send leaves the window
    clock.now += 3600 - 100
    assert d.ready_in() == 0
    assert make_dest(max_per_recipient_per_hour=0).ready_in() == 0  # no cap


async def test_only_successful_sends_count(fake: FakeTwilio, http: httpx.AsyncClient) -> None:
    d = await started(make_dest(max_per_recipient_per_hour=1), fake, http)
    fake.queue += [httpx.Response(400, json=_tw(400, 21610, "unsubscribed")),
                   httpx.ReadTimeout("slow")]
    for kind in (PermanentError, RetryableError):
        with pytest.raises(kind):
            await d.send(delivery())
    assert d.recipient_window.count("+15551112222") == 0
    await d.send(delivery())
    with pytest.raises(RetryableError, match="recipient cap"):
        await d.send(delivery())
    assert len(fake.requests) == 3


async def test_cap_keeps_an_ambiguous_delivery_ambiguous_and_counts_lookups(
        fake: FakeTwilio, http: httpx.AsyncClient) -> None:
    d = await started(make_dest(max_per_recipient_per_hour=1), fake, http)
    fake.listing = [listed("SMfound")]
    assert (await d.send(delivery(ambiguous=True))).remote_id == "SMfound"
    with pytest.raises(RetryableError) as info:
        await d.send(delivery(ambiguous=True))
    assert info.value.code == "recipient_cap" and info.value.ambiguous is True
    assert [r.method for r in fake.requests] == ["GET"]


async def test_zero_means_no_cap(fake: FakeTwilio, http: httpx.AsyncClient) -> None:
    d = await started(make_dest(max_per_recipient_per_hour=0), fake, http)
    for _ in range(40):
        await d.send(delivery())
    assert len(fake.requests) == 40 and d.recipient_window.count("+15551112222") == 0


async def test_concurrent_sends_cannot_overshoot_the_cap() -> None:
    release = asyncio.Event()
    requests: list[httpx.Request] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        await release.wait()
        return httpx.Response(201, json={"sid": f"SM{len(requests):032x}", "status": "queued"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        d = make_dest(max_per_recipient_per_hour=2, concurrency=5)
        await d.start(client)
        tasks = [asyncio.create_task(d.send(delivery())) for _ in range(3)]
        # the third fails at once while two are in flight (bounded: a missing cap must fail)
        done, _ = await asyncio.wait(tasks, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        release.set()
        assert len(done) == 1
        [capped] = done
        assert isinstance(capped.exception(), RetryableError)
        await asyncio.gather(*(t for t in tasks if t is not capped))
    assert len(requests) == 2


def test_window_release_of_an_unknown_stamp_is_harmless() -> None:
    window = RecipientWindow(1, clock=lambda: 5.0)
    window.release("+1555", 5.0)
    stamp = window.reserve("+1555")
    window.release("+1555", (stamp or 0) + 1)
    assert window.count("+1555") == 1
    window.release("+1555", stamp)
    assert window.count("+1555") == 0


async def test_lookup_hits_are_logged(fake: FakeTwilio, http: httpx.AsyncClient,
                                      caplog: pytest.LogCaptureFixture) -> None:
    d = await started(make_dest(), fake, http)
    fake.listing = [listed("SMfound")]
    with caplog.at_level("INFO", logger="alertpipe.destinations.twilio_sms"):
        await d.send(delivery(ambiguous=True))
    assert [r.getMessage() for r in caplog.records] == [
        "twilio message SMfound to +15551112222 found by lookup; not sent again"]
