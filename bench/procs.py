"""Child processes of the benchmark: start, wait until ready, measure, always stop.

Every service runs in its own session (process group), so stopping it stops whatever it
spawned too (granian's workers). ``stop_all`` is called from ``finally`` and from ``atexit``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

__all__ = ["BenchError", "Service", "free_port", "get_json", "start", "stop_all", "taskset"]

_LIVE: list[Service] = []


class BenchError(RuntimeError):
    """A benchmark run that cannot give valid figures; the message says why and where to look."""


def taskset(cpus: str | None) -> list[str]:
    """The argv prefix that pins a command to ``cpus`` ("0", "1", "0,1"), or nothing."""
    return ["taskset", "-c", cpus] if cpus else []


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for servers that cannot bind port 0 themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout: float = 10.0, method: str = "GET") -> object:
    import json

    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class Service:
    """A started child process and where its output goes."""

    name: str
    proc: subprocess.Popen[bytes]
    out_log: Path
    err_log: Path
    url: str = ""
    _err_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """user + system CPU of the process and its live descendants (all their threads)."""
        total = 0.0
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def main_thread_cpu_seconds(self) -> float:
        """user + system CPU of the root process's main thread alone (for the engine: the
        event loop; its other threads are the commit thread and the reader)."""
        try:
            for t in psutil.Process(self.pid).threads():
                if t.id == self.pid:
                    return float(t.user_time + t.system_time)
        except psutil.Error:
            pass
        return 0.0

    def peak_rss_mb(self) -> float:
        """VmHWM (peak resident set) summed over the process tree, in MiB."""
        total_kb = 0
        for p in self.tree():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total_kb += int(line.split()[1])
        return total_kb / 1024

    def tail(self, n: int = 15) -> str:
        lines: list[str] = []
        for path in (self.out_log, self.err_log):
            with contextlib.suppress(OSError):
                lines += path.read_text(errors="replace").splitlines()[-n:]
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM to the process group, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        # anything the leader left behind in its group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self._err_file is not None:
            self._err_file.close()
            self._err_file = None
        if self in _LIVE:
            _LIVE.remove(self)
        return self.proc.returncode


def stop_all() -> None:
    for svc in list(reversed(_LIVE)):
        with contextlib.suppress(Exception):
            svc.stop(timeout=10)


atexit.register(stop_all)


def _pump(stream: IO[bytes], log: Path, pattern: re.Pattern[str] | None,
          found: list[str], ready: threading.Event) -> None:
    with log.open("w", encoding="utf-8") as out:
        for raw in stream:
            line = raw.decode("utf-8", "replace")
            out.write(line)
            out.flush()
            if pattern is not None and not ready.is_set():
                m = pattern.search(line)
                if m:
                    found.append(m.group(1) if m.groups() else line.strip())
                    ready.set()
    ready.set()  # EOF: the process is gone; the caller sees it


def start(name: str, argv: list[str], *, env: dict[str, str], log_dir: Path,
          cpus: str | None = None, ready_line: str | None = None,
          ready_url: str | None = None, timeout: float = 60.0,
          cwd: Path | None = None) -> Service:
    """Start ``argv`` (pinned to ``cpus``) and wait until it is ready: a stdout line matching
    ``ready_line`` (its first group becomes ``url``), or ``ready_url`` answering 200."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_log, err_log = log_dir / f"{name}.out.log", log_dir / f"{name}.err.log"
    err_file = err_log.open("wb")
    proc = subprocess.Popen([*taskset(cpus), *argv], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=err_file, stdin=subprocess.DEVNULL, start_new_session=True)
    svc = Service(name, proc, out_log, err_log, _err_file=err_file)
    _LIVE.append(svc)
    pattern = re.compile(ready_line) if ready_line else None
    found: list[str] = []
    ready = threading.Event()
    assert proc.stdout is not None
    threading.Thread(target=_pump, args=(proc.stdout, out_log, pattern, found, ready),
                     name=f"pump-{name}", daemon=True).start()
    deadline = time.monotonic() + timeout
    try:
        if pattern is not None:
            if not ready.wait(timeout) or not found:
                raise BenchError(f"{name} did not announce itself within {timeout:.0f} s "
                                 f"(exit code {proc.poll()}); last output:\n{svc.tail()}")
            svc.url = found[0]
        if ready_url is not None:
            svc.url = svc.url or ready_url.rsplit("/", 1)[0]
            while True:
                if proc.poll() is not None:
                    raise BenchError(f"{name} exited with {proc.returncode} while starting; "
                                     f"last output:\n{svc.tail()}")
                try:
                    with urllib.request.urlopen(ready_url, timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise BenchError(f"{name} did not answer {ready_url} within {timeout:.0f} s;"
                                     f" last output:\n{svc.tail()}")
                time.sleep(0.1)
    except BaseException:
        svc.stop(timeout=5)
        raise
    return svc
