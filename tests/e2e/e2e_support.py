"""The engine as a real process (``python -m alertpipe run``) beside the emulator, over sockets."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

import engine_process
from alertpipe.emulators import EmulatorSettings, EmulatorState, running_emulator
from alertpipe.emulators.server import EmulatorHandle

REPO = Path(__file__).resolve().parents[2]
SHEET = "e2e-orders"
FROM = "+15017122661"
ON_CALL = ["+15558675310", "+15558675311"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """An emulator in this process and the environment an engine process needs to use it."""

    def __init__(self, emu: EmulatorHandle, workdir: Path, account_sid: str, token: str) -> None:
        self.emu = emu
        self.workdir = workdir
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SHEETS_"))},
            "ALERTPIPE_STORE": f"sqlite:///{workdir / 'alertpipe.db'}",
            "ALERTPIPE_HOST": "127.0.0.1", "ALERTPIPE_PORT": str(self.port),
            "ALERTPIPE_LEASE_SECONDS": "3",
            "SHEETS_SPREADSHEET_ID": SHEET, "SHEETS_RANGE": "Orders!A:G",
            "GOOGLE_APPLICATION_CREDENTIALS": str(workdir / "sa.json"),
            "SHEETS_API_BASE": emu.url, "TWILIO_API_BASE": emu.url,
            "SHEETS_TIMEOUT_SECONDS": "1", "ALERTPIPE_AMBIGUOUS_DELAY": "3",
            "TWILIO_MAX_PER_MINUTE": "1200",
            "TWILIO_ACCOUNT_SID": account_sid, "TWILIO_AUTH_TOKEN": token,
            "TWILIO_FROM_NUMBER": FROM, "ALERT_SMS_TO": ",".join(ON_CALL),
        }
        emu.write_credentials(self.env["GOOGLE_APPLICATION_CREDENTIALS"])

    def rows(self) -> list[list[Any]]:
        r = httpx.get(f"{self.emu.url}/_emulator/sheets/{SHEET}", params={"sheet": "Orders"})
        return list(r.json().get("values", []))

    def sms(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.emu.url}/_emulator/sms").json())

    def arrived(self, order_ids: set[str],
                texts: int) -> Callable[[EmulatorState], bool]:
        """A condition for ``emu.state.wait_until``: every order has its row in the Sheet and
        at least ``texts`` SMS arrived."""
        def check(state: EmulatorState) -> bool:
            rows = state.spreadsheets[SHEET].sheet("Orders").rows
            return (len(state.sms_log) >= texts
                    and order_ids <= {str(r[2]) for r in rows if len(r) > 2})
        return check

    def fault(self, **spec: Any) -> None:
        httpx.post(f"{self.emu.url}/_emulator/faults", json=spec).raise_for_status()


@contextmanager
def stack(tmp_path: Path) -> Iterator[Stack]:
    sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    settings = EmulatorSettings(twilio_account_sid=sid, twilio_auth_token=token,
                                twilio_from_numbers=[FROM], spreadsheets={SHEET: ["Orders"]})
    with running_emulator(settings) as emu:
        yield Stack(emu, tmp_path, sid, token)


class EngineProcess(engine_process.EngineProcess):
    """``alertpipe run`` with the shipped config, on this stack's environment."""

    def __init__(self, st: Stack, config: Path = REPO / "alertpipe.yaml") -> None:
        super().__init__(config, st.env)
