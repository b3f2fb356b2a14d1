"""The engine as a real process (``python -m alertpipe run``) beside the emulator, over sockets."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from alertpipe.emulators import EmulatorSettings, running_emulator
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

    def fault(self, **spec: Any) -> None:
        httpx.post(f"{self.emu.url}/_emulator/faults", json=spec).raise_for_status()


@contextmanager
def stack(tmp_path: Path) -> Iterator[Stack]:
    sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    settings = EmulatorSettings(twilio_account_sid=sid, twilio_auth_token=token,
                                twilio_from_numbers=[FROM], spreadsheets={SHEET: ["Orders"]})
    with running_emulator(settings) as emu:
        yield Stack(emu, tmp_path, sid, token)


class EngineProcess:
    """``alertpipe run`` in a subprocess; ready once it logs ``listening``."""

    def __init__(self, st: Stack, config: Path = REPO / "alertpipe.yaml") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alertpipe", "run", "-c", str(config)], env=st.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self.listening = False
        self._reader.start()
        self._ready.wait(30)
        if not self.listening:
            self.kill()
            raise RuntimeError("engine did not start:\n" + "".join(self.lines[-20:]))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if '"event": "listening"' in line:
                self.listening = True
                self._ready.set()
        self._ready.set()  # the process ended: wake the waiter, which then sees no url

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def _close(self) -> None:
        self._reader.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._close()
        return code


def wait_until_drained(st: Stack, timeout: float = 60.0) -> dict[str, Any]:
    """Wait for the engine's queues to hold nothing pending or in flight (a condition, polled)."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = httpx.get(f"{st.url}/api/queues", timeout=5).json()
        if all(q["pending"] == 0 and q["in_flight"] == 0 for q in last["queues"]):
            return last
        time.sleep(0.1)
    raise AssertionError(f"queues did not drain: {last}")
