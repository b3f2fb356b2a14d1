"""The emulated Google OAuth 2.0 token endpoint (``POST /token``) and Google's error shapes.

Accepts exactly what ``google.oauth2.service_account.Credentials`` sends: a form with
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and an RS256 ``assertion`` whose
``aud`` is Google's constant token URL (google-auth sends it whatever ``token_uri`` says). Errors
are Google's: HTTP 400 ``{"error": "invalid_grant", "error_description": ...}``.
"""

from __future__ import annotations

import base64
import json
from http import HTTPStatus
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alertpipe.emulators.faults import guarded
from alertpipe.emulators.forms import read_form
from alertpipe.emulators.state import EmulatorState

__all__ = ["google_error", "oauth_error", "token_endpoint"]

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Audiences Google's token endpoint accepts in a JWT-bearer assertion.
TOKEN_AUDIENCES = frozenset({
    "https://oauth2.googleapis.com/token",
    "https://www.googleapis.com/oauth2/v4/token",
    "https://accounts.google.com/o/oauth2/token",
})
SCOPE_PREFIX = "https://www.googleapis.com/auth/"
MAX_ASSERTION_LIFETIME = 3600
BAD_TIMEFRAME = ("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                 "timeframe. Check your iat and exp values in the JWT claim.")

_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                  404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                  501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_GOOGLE_MESSAGE = {500: "Internal error encountered.", 503: "The service is currently unavailable.",
                   504: "The request deadline was exceeded."}


def google_error(code: int, message: str | None = None, status: str | None = None,
                 details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> JSONResponse:
    """A Google API error: ``{"error": {"code", "message", "status"[, "details"]}}``."""
    error: dict[str, Any] = {
        "code": code,
        "message": message or _GOOGLE_MESSAGE.get(code) or HTTPStatus(code).phrase,
        "status": status or _GOOGLE_STATUS.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=code, headers=headers)


def oauth_error(error: str, description: str, status_code: int = 400) -> JSONResponse:
    """An OAuth token-endpoint error: ``{"error", "error_description"}``."""
    return JSONResponse({"error": error, "error_description": description},
                        status_code=status_code)


def token_fault(status: int) -> Response:
    """The token endpoint's answer for an injected fault status."""
    errors = {429: ("rate_limit_exceeded", "Rate limit exceeded."),
              500: ("internal_failure", "Internal failure."),
              503: ("temporarily_unavailable", "The service is temporarily unavailable.")}
    error, description = errors.get(status, ("invalid_request", HTTPStatus(status).phrase))
    return oauth_error(error, description, status)


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class _Rejected(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _verify_assertion(state: EmulatorState, assertion: str) -> tuple[str, frozenset[str]]:
    """Check the JWT; return (client_email, scopes) or raise ``_Rejected``."""
    try:
        header_b64, payload_b64, signature_b64 = assertion.split(".")
        header = json.loads(_b64decode(header_b64))
        claims = json.loads(_b64decode(payload_b64))
        signature = _b64decode(signature_b64)
    except ValueError as exc:
        raise _Rejected("invalid_grant", "Invalid JWT: malformed assertion.") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _Rejected("invalid_grant", "Invalid JWT: malformed assertion.")
    if header.get("alg") != "RS256":
        raise _Rejected("invalid_grant", "Invalid JWT Signature.")
    account = state.accounts.get(str(claims.get("iss")))
    if account is None:
        raise _Rejected("invalid_grant", "Invalid grant: account not found")
    kid = header.get("kid")
    if kid is not None and kid != account.private_key_id:
        raise _Rejected("invalid_grant", "Invalid JWT Signature.")
    try:
        account.private_key.public_key().verify(
            signature, f"{header_b64}.{payload_b64}".encode("ascii"),
            padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError) as exc:
        raise _Rejected("invalid_grant", "Invalid JWT Signature.") from exc
    if claims.get("aud") not in TOKEN_AUDIENCES:
        raise _Rejected("invalid_grant", "Invalid JWT: Failed audience check. The right "
                        "audience is https://oauth2.googleapis.com/token")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        raise _Rejected("invalid_grant", BAD_TIMEFRAME)
    now, skew = state.clock(), state.settings.jwt_clock_skew_seconds
    if exp <= iat or exp - iat > MAX_ASSERTION_LIFETIME or iat > now + skew or exp < now - skew:
        raise _Rejected("invalid_grant", BAD_TIMEFRAME)
    scopes = frozenset(str(claims.get("scope") or "").split())
    if not scopes or any(not s.startswith(SCOPE_PREFIX) for s in scopes):
        raise _Rejected("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    return account.client_email, scopes


async def token_endpoint(request: Request) -> Response:
    """``POST /token``: exchange a signed JWT assertion for an access token."""
    state: EmulatorState = request.app.state.emulator

    async def handle() -> Response:
        form = await read_form(request)
        grant_type = form.get("grant_type")
        if grant_type != JWT_GRANT:
            return oauth_error("unsupported_grant_type",
                               f"Invalid grant_type: {grant_type or ''}".rstrip())
        assertion = form.get("assertion")
        if not isinstance(assertion, str) or not assertion:
            return oauth_error("invalid_request", "Missing required parameter: assertion")
        try:
            email, scopes = _verify_assertion(state, assertion)
        except _Rejected as rejected:
            return oauth_error(rejected.error, rejected.description)
        token = state.issue_token(email, scopes)
        state.notify()
        return JSONResponse({"access_token": token,
                             "expires_in": state.settings.token_lifetime_seconds,
                             "token_type": "Bearer"},
                            headers={"Cache-Control": "no-cache, no-store, max-age=0"})

    return await guarded(request, "token", "token", token_fault, handle)
