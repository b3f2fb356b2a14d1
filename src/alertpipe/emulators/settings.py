"""Settings of the local Google and Twilio emulators.

``EmulatorSettings.from_env()`` reads the same environment variables the engine reads, so an
emulator started next to the engine accepts exactly the credentials the engine will send. When a
variable is unset a fixed, documented demo value is used (see the ``DEMO_*`` constants); none of
them is a real credential.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from alertpipe.errors import ConfigError

__all__ = [
    "DEMO_ACCOUNT_SID",
    "DEMO_AUTH_TOKEN",
    "DEMO_SPREADSHEET_ID",
    "EmulatorSettings",
]

#: Account SID used when ``TWILIO_ACCOUNT_SID`` is unset ("AC" + 32 hex digits, all zero).
DEMO_ACCOUNT_SID = "AC" + "0" * 32
#: Auth token used when ``TWILIO_AUTH_TOKEN`` is unset (32 hex digits, like a real one).
DEMO_AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
#: The spreadsheet every emulator knows unless told otherwise.
DEMO_SPREADSHEET_ID = "demo-spreadsheet"
#: Sheet titles of a spreadsheet named only by id (``SHEETS_SPREADSHEET_ID``, ``--spreadsheet``).
DEFAULT_SHEET_TITLES = ("Sheet1", "Orders")

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_API_KEY_SID = re.compile(r"^SK[0-9a-zA-Z]{32}$")


def _default_spreadsheets() -> dict[str, list[str]]:
    return {DEMO_SPREADSHEET_ID: list(DEFAULT_SHEET_TITLES)}


@dataclass(slots=True)
class EmulatorSettings:
    """What the emulators accept and how strict they are.

    ``twilio_from_numbers`` lists the numbers the emulated account owns; an empty list accepts any
    E.164 ``From``. ``spreadsheets`` maps a spreadsheet id to its sheet titles. ``public_base_url``
    is the URL clients use to reach the emulator (it becomes the credentials' ``token_uri``); when
    ``None`` the URL the server is bound to is used. ``service_account_files`` are service-account
    JSON files whose keys the token endpoint accepts in addition to its own.
    """

    twilio_account_sid: str = DEMO_ACCOUNT_SID
    twilio_auth_token: str = field(default=DEMO_AUTH_TOKEN, repr=False)
    twilio_api_key: str | None = None
    twilio_api_secret: str | None = field(default=None, repr=False)
    twilio_from_numbers: list[str] = field(default_factory=list)
    spreadsheets: dict[str, list[str]] = field(default_factory=_default_spreadsheets)
    sheets_write_quota_per_minute: int = 60
    public_base_url: str | None = None
    service_account_files: list[str] = field(default_factory=list)
    token_lifetime_seconds: int = 3599
    jwt_clock_skew_seconds: int = 60

    def __post_init__(self) -> None:
        if not _ACCOUNT_SID.match(self.twilio_account_sid):
            raise ConfigError("Twilio account SID must be 'AC' followed by 32 hex digits",
                              key="twilio_account_sid")
        if not self.twilio_auth_token:
            raise ConfigError("Twilio auth token must not be empty", key="twilio_auth_token")
        if (self.twilio_api_key is None) != (self.twilio_api_secret is None):
            raise ConfigError("Twilio API key and secret must be given together",
                              key="twilio_api_key")
        if self.twilio_api_key is not None and not _API_KEY_SID.match(self.twilio_api_key):
            raise ConfigError("Twilio API key SID must be 'SK' followed by 32 characters",
                              key="twilio_api_key")
        if self.sheets_write_quota_per_minute < 1:
            raise ConfigError("write quota must be at least 1 per minute",
                              key="sheets_write_quota_per_minute")
        for spreadsheet_id, titles in self.spreadsheets.items():
            if not titles:
                raise ConfigError(f"spreadsheet {spreadsheet_id!r} needs at least one sheet",
                                  key="spreadsheets")
        if self.public_base_url is not None:
            self.public_base_url = self.public_base_url.rstrip("/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmulatorSettings:
        """Build settings from the engine's environment variables, with demo defaults.

        Reads ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``, ``TWILIO_API_KEY``,
        ``TWILIO_API_SECRET``, ``TWILIO_FROM_NUMBER`` (comma-separated numbers allowed; unset
        means any From is accepted), ``SHEETS_SPREADSHEET_ID`` (added with sheets Sheet1 and
        Orders, next to ``demo-spreadsheet``), ``GOOGLE_APPLICATION_CREDENTIALS`` (a key file the
        token endpoint should also accept, if it exists) and ``ALERTPIPE_EMULATOR_URL``
        (``public_base_url``).
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        spreadsheets = _default_spreadsheets()
        sheet_id = get("SHEETS_SPREADSHEET_ID")
        if sheet_id:
            spreadsheets.setdefault(sheet_id, list(DEFAULT_SHEET_TITLES))
        from_numbers = [n.strip() for n in (get("TWILIO_FROM_NUMBER") or "").split(",")
                        if n.strip()]
        key_file = get("GOOGLE_APPLICATION_CREDENTIALS")
        return cls(
            twilio_account_sid=get("TWILIO_ACCOUNT_SID") or DEMO_ACCOUNT_SID,
            twilio_auth_token=get("TWILIO_AUTH_TOKEN") or DEMO_AUTH_TOKEN,
            twilio_api_key=get("TWILIO_API_KEY"),
            twilio_api_secret=get("TWILIO_API_SECRET"),
            twilio_from_numbers=from_numbers,
            spreadsheets=spreadsheets,
            public_base_url=get("ALERTPIPE_EMULATOR_URL"),
            service_account_files=[key_file] if key_file and os.path.isfile(key_file) else [],
        )

    def add_spreadsheet(self, spreadsheet_id: str,
                        titles: tuple[str, ...] = DEFAULT_SHEET_TITLES) -> None:
        """Make ``spreadsheet_id`` exist (with ``titles``) unless it already does."""
        self.spreadsheets.setdefault(spreadsheet_id, list(titles))
