"""The engine as a real process (``python -m alertpipe run -c CONFIG``) for end-to-end tests.

Ready once it logs its ``listening`` event (its socket is bound and listening by then); its JSON
log lines are kept for assertions.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class EngineProcess:
    def __init__(self, config: Path, env: Mapping[str, str], start_timeout: float = 30) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alertpipe", "run", "-c", str(config)], env=dict(env),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.listening = False
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._ready.wait(start_timeout)
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
        self._ready.set()  # the process ended: wake the waiter, which then sees it never listened

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log events so far, all of them or those called ``name``."""
        out = []
        for line in list(self.lines):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if name is None or event.get("event") == name:
                out.append(event)
        return out

    def _reap(self) -> None:
        self._reader.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def kill(self) -> None:
        """SIGKILL (no shutdown code runs), then reap."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._reap()

    def terminate(self) -> int:
        """SIGTERM (a graceful stop); returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._reap()
        return code
