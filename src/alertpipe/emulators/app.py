"""``create_app``: one Starlette app serving the Google token endpoint, Sheets v4, Twilio
Messages and the ``/_emulator`` inspection routes, with its state at ``app.state.emulator``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertpipe.emulators import google, sheets, twilio
from alertpipe.emulators.admin import admin_routes
from alertpipe.emulators.settings import EmulatorSettings
from alertpipe.emulators.state import EmulatorState

__all__ = ["create_app"]

_TWILIO = "/2010-04-01/Accounts/{account_sid}"


async def _not_found(request: Request, exc: Exception) -> Response:
    """Unknown URLs answer in the shape of the API their prefix belongs to."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    path = request.url.path
    if path.startswith("/v4/"):
        return google.google_error(status)
    if path.startswith("/2010-04-01/"):
        return twilio.twilio_error(status, 20000 + status,
                                   f"The requested resource {path} was not found")
    return JSONResponse({"error": str(getattr(exc, "detail", "error"))}, status_code=status)


def create_app(settings: EmulatorSettings | None = None,
               state: EmulatorState | None = None) -> Starlette:
    """Build the emulator app; ``settings`` default to ``EmulatorSettings()`` (demo values)."""
    if state is None:
        state = EmulatorState(settings or EmulatorSettings())
    routes = [
        Route("/token", google.token_endpoint, methods=["POST"]),
        Route("/v4/spreadsheets/{spreadsheet_id}", sheets.spreadsheet_get, methods=["GET"]),
        Route("/v4/spreadsheets/{spreadsheet_id}/values/{rest:path}", sheets.values_route,
              methods=["GET", "POST"]),
        Route(_TWILIO + "/Messages.json", twilio.create_message, methods=["POST"]),
        Route(_TWILIO + "/Messages.json", twilio.list_route, methods=["GET"]),
        Route(_TWILIO + "/Messages/{sid}.json", twilio.fetch_message, methods=["GET"]),
    ]
    routes += [Route(path, endpoint, methods=methods) for path, endpoint, methods in admin_routes()]
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})
    app.state.emulator = state
    return app
