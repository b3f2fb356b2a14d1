"""The emulated Twilio Messages API: auth, validation, the Message resource, list filters."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import pytest

from alertpipe.emulators import EmulatorSettings
from alertpipe.emulators.sms import segments
from alertpipe.emulators.state import EmulatorState

TO = "+14155550100"


@pytest.fixture
def auth(settings: EmulatorSettings) -> tuple[str, str]:
    return settings.twilio_account_sid, settings.twilio_auth_token


@pytest.fixture
def messages_url(settings: EmulatorSettings) -> str:
    return f"/2010-04-01/Accounts/{settings.twilio_account_sid}/Messages.json"


@pytest.fixture
def sender(settings: EmulatorSettings) -> str:
    return settings.twilio_from_numbers[0]


async def test_create_answers_201_with_the_message_resource(
        client: httpx.AsyncClient, auth: tuple[str, str], messages_url: str, sender: str,
        settings: EmulatorSettings, state: EmulatorState) -> None:
    response = await client.post(messages_url, auth=auth, data={
        "To": TO, "From": sender, "Body": "Order o-1: $450.00",
        "StatusCallback": "https://example.com/cb"})
    assert response.status_code == 201, response.text
    msg = response.json()
    assert re.fullmatch(r"SM[0-9a-f]{32}", msg["sid"])
    account = settings.twilio_account_sid
    assert msg | {"sid": "", "date_created": "", "date_updated": ""} == {
        "account_sid": account, "api_version": "2010-04-01", "body": "Order o-1: $450.00",
        "date_created": "", "date_sent": None, "date_updated": "", "direction": "outbound-api",
        "error_code": None, "error_message": None, "from": sender,
        "messaging_service_sid": None, "num_media": "0", "num_segments": "1", "price": None,
        "price_unit": "USD", "sid": "", "status": "queued",
        "subresource_uris": {
            "media": f"/2010-04-01/Accounts/{account}/Messages/{msg['sid']}/Media.json"},
        "to": TO, "uri": f"/2010-04-01/Accounts/{account}/Messages/{msg['sid']}.json"}
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000",
                        msg["date_created"])
    created = parsedate_to_datetime(msg["date_created"])
    assert abs(created - datetime.now(UTC)) < timedelta(minutes=1)

    fetched = await client.get(msg["uri"], auth=auth)
    assert fetched.status_code == 200
    assert fetched.json()["status"] == "sent" and fetched.json()["date_sent"]

    log = (await client.get("/_emulator/sms")).json()
    assert len(log) == 1
    assert log[0]["To"] == TO and log[0]["Body"] == "Order o-1: $450.00"
    assert log[0]["sid"] == msg["sid"] and "received_at" in log[0]


async def test_api_key_auth_and_messaging_service(
        client: httpx.AsyncClient, settings: EmulatorSettings, messages_url: str) -> None:
    assert settings.twilio_api_key and settings.twilio_api_secret
    response = await client.post(
        messages_url, auth=(settings.twilio_api_key, settings.twilio_api_secret),
        data={"To": TO, "MessagingServiceSid": "MG" + "a" * 32, "Body": "hi"})
    assert response.status_code == 201
    assert response.json()["status"] == "accepted"
    assert response.json()["from"] is None


@pytest.mark.parametrize("credentials", [
    ("AC" + "1" * 32, "wrong"), ("AC" + "9" * 32, "s3cr3t-auth-token-0000000000000"),
    ("SK" + "2" * 32, "s3cr3t-auth-token-0000000000000"), None])
async def test_bad_auth_is_20003(client: httpx.AsyncClient, messages_url: str, sender: str,
                                 credentials: tuple[str, str] | None,
                                 state: EmulatorState) -> None:
    response = await client.post(messages_url, auth=credentials or ("", ""),
                                 data={"To": TO, "From": sender, "Body": "x"})
    assert response.status_code == 401
    assert response.json() == {"code": 20003, "message": "Authenticate",
                               "more_info": "https://www.twilio.com/docs/errors/20003",
                               "status": 401}
    assert state.sms_log == []


async def test_url_account_must_be_the_configured_one(
        client: httpx.AsyncClient, auth: tuple[str, str], sender: str) -> None:
    other = "/2010-04-01/Accounts/AC" + "f" * 32 + "/Messages.json"
    response = await client.post(other, auth=auth, data={"To": TO, "From": sender, "Body": "x"})
    assert response.status_code == 401 and response.json()["code"] == 20003


@pytest.mark.parametrize(("fields", "code"), [
    ({"From": "+15017122661", "Body": "x"}, 21604),
    ({"To": TO, "From": "+15017122661"}, 21602),
    ({"To": TO, "From": "+15017122661", "Body": "x" * 1601}, 21617),
    ({"To": "4155550100", "From": "+15017122661", "Body": "x"}, 21211),
    ({"To": TO, "From": "+15550000000", "Body": "x"}, 21606),
    ({"To": TO, "Body": "x"}, 21603),
    ({"To": "+15005550001", "From": "+15017122661", "Body": "x"}, 21211),
    ({"To": "+15005550002", "From": "+15017122661", "Body": "x"}, 21612),
    ({"To": "+15005550003", "From": "+15017122661", "Body": "x"}, 21408),
    ({"To": "+15005550004", "From": "+15017122661", "Body": "x"}, 21610),
    ({"To": "+15005550009", "From": "+15017122661", "Body": "x"}, 21614),
])
async def test_validation_errors(client: httpx.AsyncClient, auth: tuple[str, str],
                                 messages_url: str, fields: dict[str, str], code: int,
                                 state: EmulatorState) -> None:
    response = await client.post(messages_url, auth=auth, data=fields)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code and body["status"] == 400
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    if code == 21211:
        assert body["message"] == f"The 'To' number {fields['To']} is not a valid phone number."
    assert state.sms_log == []


async def test_any_from_is_accepted_when_no_numbers_are_configured(
        settings: EmulatorSettings) -> None:
    from alertpipe.emulators import create_app

    settings.twilio_from_numbers = []
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://e") as http:
        response = await http.post(
            f"/2010-04-01/Accounts/{settings.twilio_account_sid}/Messages.json",
            auth=(settings.twilio_account_sid, settings.twilio_auth_token),
            data={"To": TO, "From": "+15550000000", "Body": "x"})
    assert response.status_code == 201


async def test_fetch_unknown_is_20404(client: httpx.AsyncClient, auth: tuple[str, str],
                                      settings: EmulatorSettings) -> None:
    url = f"/2010-04-01/Accounts/{settings.twilio_account_sid}/Messages/SM{'0' * 32}.json"
    response = await client.get(url, auth=auth)
    assert response.status_code == 404 and response.json()["code"] == 20404


async def test_list_filters_by_to_and_date_sent(
        client: httpx.AsyncClient, auth: tuple[str, str], messages_url: str, sender: str,
        state: EmulatorState) -> None:
    sids = []
    for to in (TO, "+14155550101", TO):
        created = await client.post(messages_url, auth=auth,
                                    data={"To": to, "From": sender, "Body": to})
        sids.append(created.json()["sid"])
    yesterday = datetime.now(UTC) - timedelta(days=1)
    state.messages[sids[0]]["_sent_at"] = yesterday
    today = datetime.now(UTC).date().isoformat()

    by_to = (await client.get(messages_url, auth=auth, params={"To": TO})).json()
    assert [m["sid"] for m in by_to["messages"]] == [sids[2], sids[0]]
    assert by_to["page"] == 0 and by_to["page_size"] == 50 and by_to["next_page_uri"] is None
    assert by_to["start"] == 0 and by_to["end"] == 1
    assert all("_sent_at" not in m for m in by_to["messages"])

    on_day = (await client.get(messages_url, auth=auth,
                               params={"To": TO, "DateSent": today})).json()
    assert [m["sid"] for m in on_day["messages"]] == [sids[2]]
    before = (await client.get(messages_url, auth=auth,
                               params={"DateSent<": yesterday.date().isoformat()})).json()
    assert [m["sid"] for m in before["messages"]] == [sids[0]]
    after = (await client.get(messages_url, auth=auth, params={"DateSent>": today})).json()
    assert {m["sid"] for m in after["messages"]} == {sids[1], sids[2]}

    paged = (await client.get(messages_url, auth=auth, params={"PageSize": "2"})).json()
    assert len(paged["messages"]) == 2 and paged["next_page_uri"]
    second = (await client.get(paged["next_page_uri"], auth=auth)).json()
    assert [m["sid"] for m in second["messages"]] == [sids[0]]
    assert second["start"] == 2 and second["previous_page_uri"]


def test_segments() -> None:
    assert segments("") == 1
    assert segments("x" * 160) == 1
    assert segments("x" * 161) == 2
    assert segments("x" * 306) == 2 and segments("x" * 307) == 3
    assert segments("€" * 80) == 1 and segments("€" * 81) == 2
    assert segments("é" * 160) == 1
    assert segments("ü😀" + "a" * 67) == 1 and segments("ü😀" + "a" * 68) == 2
    assert segments("😀" * 36) == 2
