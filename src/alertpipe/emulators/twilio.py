"""The emulated Twilio Messages API (``/2010-04-01/Accounts/{AccountSid}/Messages...``).

HTTP Basic auth with the account SID and auth token, or an API key SID and secret. Validation and
error codes follow Twilio (21604, 21602, 21617, 21211, 21603, 21606 and the test "magic" To
numbers), errors in Twilio's ``{code, message, more_info, status}`` shape. A created message is
answered ``queued`` (``accepted`` via a messaging service) and is then considered sent at once:
fetches and lists show ``sent`` with ``date_sent`` set.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alertpipe.emulators.faults import guarded
from alertpipe.emulators.forms import read_form
from alertpipe.emulators.sms import MAX_BODY, list_messages, segments
from alertpipe.emulators.state import EmulatorState

__all__ = ["create_message", "fetch_message", "list_route", "twilio_error", "twilio_fault"]

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
MESSAGING_SERVICE = re.compile(r"^MG[0-9a-f]{32}$")
MAGIC_TO = {
    "+15005550001": (21211, "The 'To' number {to} is not a valid phone number."),
    "+15005550002": (21612, "The 'To' phone number: {to}, is not currently reachable using the "
                            "'From' phone number: {frm} via SMS."),
    "+15005550003": (21408, "Permission to send an SMS has not been enabled for the region "
                            "indicated by the 'To' number: {to}."),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}


def twilio_error(status: int, code: int, message: str,
                 headers: dict[str, str] | None = None) -> JSONResponse:
    """Twilio's error body: ``{"code", "message", "more_info", "status"}``."""
    return JSONResponse({"code": code, "message": message,
                         "more_info": f"https://www.twilio.com/docs/errors/{code}",
                         "status": status}, status_code=status, headers=headers)


def twilio_fault(status: int) -> Response:
    """Twilio's answer for an injected fault status (code 20429, 20500, 20503, ...)."""
    return twilio_error(status, 20000 + status, HTTPStatus(status).phrase)


def _authenticate(request: Request) -> Response | None:
    """None when the Basic credentials and URL account are right, else Twilio's 401."""
    settings = request.app.state.emulator.settings
    user, password = "", ""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user = ""
    pairs = [(settings.twilio_account_sid, settings.twilio_auth_token)]
    if settings.twilio_api_key and settings.twilio_api_secret:
        pairs.append((settings.twilio_api_key, settings.twilio_api_secret))
    ok = any(hmac.compare_digest(user.encode(), sid.encode())
             & hmac.compare_digest(password.encode(), secret.encode()) for sid, secret in pairs)
    if ok and request.path_params["account_sid"] == settings.twilio_account_sid:
        return None
    return twilio_error(401, 20003, "Authenticate",
                        headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True).replace(" GMT", " +0000")


def _validate(state: EmulatorState, form: dict[str, str]) -> tuple[int, str] | None:
    to, frm = form.get("To", ""), form.get("From", "")
    service, body = form.get("MessagingServiceSid", ""), form.get("Body", "")
    owned = state.settings.twilio_from_numbers
    checks: list[tuple[bool, int, str]] = [
        (not to, 21604, "A 'To' phone number is required."),
        (bool(to) and not E164.match(to), 21211, f"The 'To' number {to} is not a valid phone "
                                                 "number."),
        (not frm and not service, 21603, "A 'From' phone number is required."),
        (bool(service) and not MESSAGING_SERVICE.match(service), 21701,
         f"The Messaging Service Sid {service} is invalid."),
        (not body and not form.get("MediaUrl"), 21602, "Message body is required."),
        (len(body) > MAX_BODY, 21617, "The concatenated message body exceeds the 1600 "
                                      "character limit."),
        (bool(frm) and bool(owned) and frm not in owned, 21606,
         f"The From phone number {frm} is not a valid, SMS-capable inbound phone number or "
         "short code for your account."),
    ]
    for failed, code, message in checks:
        if failed:
            return code, message
    if to in MAGIC_TO:
        code, template = MAGIC_TO[to]
        return code, template.format(to=to, frm=frm)
    return None


async def create_message(request: Request) -> Response:
    """``POST .../Messages.json``: validate, record and answer 201 with the Message resource."""
    state: EmulatorState = request.app.state.emulator

    async def handle() -> Response:
        refused = _authenticate(request)
        if refused is not None:
            return refused
        form = await read_form(request)
        problem = _validate(state, form)
        if problem is not None:
            return twilio_error(400, *problem)
        account = state.settings.twilio_account_sid
        sid = "SM" + secrets.token_hex(16)
        now = datetime.now(UTC).replace(microsecond=0)
        uri = f"/{API_VERSION}/Accounts/{account}/Messages/{sid}.json"
        service = form.get("MessagingServiceSid") or None
        message: dict[str, Any] = {
            "account_sid": account, "api_version": API_VERSION, "body": form.get("Body", ""),
            "date_created": _rfc2822(now), "date_sent": None, "date_updated": _rfc2822(now),
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": form.get("From") or None, "messaging_service_sid": service,
            "num_media": "0", "num_segments": str(segments(form.get("Body", ""))),
            "price": None, "price_unit": "USD", "sid": sid,
            "status": "accepted" if service and not form.get("From") else "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": form["To"], "uri": uri,
        }
        with state.lock:
            state.messages[sid] = dict(message, status="sent", date_sent=_rfc2822(now),
                                       _sent_at=now)
            state.sms_log.append(dict(form, sid=sid, received_at=now.isoformat()))
        state.notify()
        return JSONResponse(message, status_code=201)

    return await guarded(request, "twilio", "messages.create", twilio_fault, handle)


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in message.items() if not key.startswith("_")}


async def fetch_message(request: Request) -> Response:
    """``GET .../Messages/{Sid}.json``: one message, or 404 with code 20404."""
    state: EmulatorState = request.app.state.emulator

    async def handle() -> Response:
        refused = _authenticate(request)
        if refused is not None:
            return refused
        with state.lock:
            message = state.messages.get(request.path_params["sid"])
            found = _public(message) if message else None
        if found is None:
            return twilio_error(404, 20404, f"The requested resource {request.url.path} was "
                                            "not found")
        return JSONResponse(found)

    return await guarded(request, "twilio", "messages.fetch", twilio_fault, handle)


async def list_route(request: Request) -> Response:
    """``GET .../Messages.json``: filtered, newest first, Twilio's page shape."""
    state: EmulatorState = request.app.state.emulator

    async def handle() -> Response:
        refused = _authenticate(request)
        if refused is not None:
            return refused
        with state.lock:
            messages = list(state.messages.values())
        try:
            page = list_messages(messages, request.url.path, request.query_params)
        except ValueError as exc:
            return twilio_error(400, 20001, str(exc))
        page["messages"] = [_public(m) for m in page["messages"]]
        return JSONResponse(page)

    return await guarded(request, "twilio", "messages.list", twilio_fault, handle)
