"""The dashboard in a real browser: the engine as a process (the shipped alertpipe.yaml plus
dashboard users and demo mode) beside the emulators, and Debian's chromium driven by Playwright.

Chromium is Debian's package (``make browser`` installs it), never Playwright's own download:
``ALERTPIPE_CHROMIUM`` names the binary, else ``chromium`` on the PATH.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import engine_process
from alertpipe.emulators import EmulatorSettings, running_emulator
from alertpipe.emulators.server import EmulatorHandle
from alertpipe.web.passwords import hash_password

REPO = Path(__file__).resolve().parents[2]
SHEET = "browser-orders"
FROM = "+15017122661"
ON_CALL = ["+15558675310", "+15558675311"]
USERS = {"vera": ("viewer", "viewer-pass-1"), "otto": ("operator", "operator-pass-1"),
         "ada": ("admin", "admin-pass-1")}
ORDERS = [
    {"order_id": "A-1001", "customer_name": "Ada L.", "amount": "349.99",
     "customer_phone": "+14155550101", "items": [{"sku": "KB-01", "qty": 1, "price": "349.99"}]},
    {"order_id": "A-1002", "customer_name": "Grace H.", "amount": "42.50"},
    {"order_id": "A-1003", "customer_name": "Alan T.", "amount": "1250"},
]


def chromium_path() -> str:
    path = os.environ.get("ALERTPIPE_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("chromium is not installed: run `make browser` (apt-get install chromium)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Site:
    """The emulator (in this process), the engine (a process) and what was posted to it."""

    def __init__(self, emu: EmulatorHandle, workdir: Path, sid: str, token: str) -> None:
        self.emu = emu
        self.token = token
        self.workdir = workdir
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("TWILIO_", "SHEETS_", "ALERTPIPE_"))},
            "ALERTPIPE_STORE": f"sqlite:///{workdir / 'alertpipe.db'}",
            "ALERTPIPE_HOST": "127.0.0.1", "ALERTPIPE_PORT": str(port),
            "SHEETS_SPREADSHEET_ID": SHEET, "SHEETS_RANGE": "Orders!A:G",
            "GOOGLE_APPLICATION_CREDENTIALS": str(workdir / "sa.json"),
            "SHEETS_API_BASE": emu.url, "TWILIO_API_BASE": emu.url,
            "TWILIO_MAX_PER_MINUTE": "1200", "TWILIO_ACCOUNT_SID": sid,
            "TWILIO_AUTH_TOKEN": token, "TWILIO_FROM_NUMBER": FROM,
            "ALERT_SMS_TO": ",".join(ON_CALL),
        }
        emu.write_credentials(self.env["GOOGLE_APPLICATION_CREDENTIALS"])
        self.session_secret = secrets.token_hex(32)
        self.config = workdir / "alertpipe.yaml"
        self.config.write_text(yaml.safe_dump(self._config(), sort_keys=False))
        self.engine = engine_process.EngineProcess(self.config, self.env)
        self.message_ids: dict[str, str] = {}

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = yaml.safe_load((REPO / "alertpipe.yaml").read_text())
        config["engine"].update(
            users=[{"name": name, "role": role, "password_hash": hash_password(pw, n=2**12)}
                   for name, (role, pw) in USERS.items()],
            session_secret=self.session_secret, demo_emulator_url=self.emu.url)
        return config

    def post_orders(self) -> None:
        for order in ORDERS:
            r = httpx.post(f"{self.url}/orders", json=order, headers={"Prefer": "wait=10"},
                           timeout=30)
            assert r.status_code == 200 and r.json()["status"] == "delivered", r.text
            self.message_ids[str(order["order_id"])] = r.json()["message_id"]

    def sms_count(self) -> int:
        with self.emu.state.lock:
            return len(self.emu.state.sms_log)


@contextmanager
def site(workdir: Path) -> Iterator[Site]:
    sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    settings = EmulatorSettings(twilio_account_sid=sid, twilio_auth_token=token,
                                twilio_from_numbers=[FROM], spreadsheets={SHEET: ["Orders"]})
    with running_emulator(settings) as emu:
        s = Site(emu, workdir, sid, token)
        try:
            s.post_orders()
            yield s
        finally:
            s.engine.kill()
