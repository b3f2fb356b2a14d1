"""Local emulators of Google OAuth, Google Sheets API v4 and the Twilio Messages API.

Same wire format, auth, errors and quotas as the real services, plus ``/_emulator`` routes to
inspect what arrived and to inject faults. Public API::

    settings = EmulatorSettings.from_env()
    app = create_app(settings)                       # in-process, via httpx.ASGITransport
    with running_emulator(settings) as emulator:     # real socket, background thread
        emulator.write_credentials("sa.json")        # key file with token_uri → emulator
        ...emulator.url, emulator.state...
    write_credentials(path, base_url)                # key file only (reuses an emulator key)
"""

from __future__ import annotations

from alertpipe.emulators.accounts import ServiceAccount, write_credentials
from alertpipe.emulators.app import create_app
from alertpipe.emulators.server import EmulatorHandle, running_emulator
from alertpipe.emulators.settings import EmulatorSettings
from alertpipe.emulators.state import EmulatorState

__all__ = [
    "EmulatorHandle",
    "EmulatorSettings",
    "EmulatorState",
    "ServiceAccount",
    "create_app",
    "running_emulator",
    "write_credentials",
]
