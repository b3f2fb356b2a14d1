"""The load generator: wrk (Debian package) with ``bench/orders.lua``.

``run_wrk`` returns wrk's own figures (from the script's ``done()`` hook: counts, latency
percentiles in µs after wrk's coordinated-omission correction) plus the CPU wrk itself used,
taken from the kernel's rusage of the reaped process (``os.wait4``), so the load generator can be
shown not to be the bottleneck.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs import BenchError, taskset

LUA = Path(__file__).resolve().parent / "orders.lua"

__all__ = ["WrkResult", "run_wrk"]


@dataclass
class WrkResult:
    """One wrk run. Latencies in milliseconds; ``cpu_s`` is wrk's user+system CPU."""

    label: str
    wall_s: float
    cpu_s: float
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return float(self.raw["duration_us"]) / 1e6

    @property
    def accepted(self) -> int:
        return int(self.raw["accepted"])

    @property
    def rps(self) -> float:
        return self.accepted / self.duration_s

    def ms(self, key: str) -> float:
        return float(self.raw[key]) / 1000.0

    @property
    def failures(self) -> int:
        r = self.raw
        return int(r["bad"] + r["other2xx"] + r["err_connect"] + r["err_read"] + r["err_write"]
                   + r["err_timeout"])

    @property
    def cpu_util(self) -> float:
        """wrk's CPU use in cores (1.0 = one core fully busy) over its wall time."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {"label": self.label, "rps": round(self.rps, 1), "accepted": self.accepted,
                "duration_s": round(self.duration_s, 3), "p50_ms": self.ms("p50_us"),
                "p90_ms": self.ms("p90_us"), "p99_ms": self.ms("p99_us"),
                "p999_ms": self.ms("p999_us"), "max_ms": self.ms("lat_max_us"),
                "mean_ms": round(self.ms("lat_mean_us"), 3), "failures": self.failures,
                "non_2xx": int(self.raw["bad"]), "first_bad_status": int(
                    self.raw["first_bad_status"]),
                "socket_errors": {k: int(self.raw[f"err_{k}"])
                                  for k in ("connect", "read", "write", "timeout")},
                "late_sends": int(self.raw["late"]),
                "late_max_ms": round(float(self.raw["late_max_ms"]), 2),
                "wrk_cpu_s": round(self.cpu_s, 3),
                "wrk_cpu_cores": round(self.cpu_util, 3)}


def _read(stream: Any, lines: list[str], done: list[int]) -> None:
    for raw in stream:
        line = raw.decode("utf-8", "replace")
        lines.append(line)
        if line.startswith("BENCH-THREAD-DONE"):
            done.append(1)


def run_wrk(url: str, *, label: str, seconds: float, connections: int, prefix: str,
            threads: int = 1, limit: int = 0, rate: float = 0.0, high_every: int = 20,
            cpus: str | None = None, log: Path | None = None,
            require_clean: bool = True) -> WrkResult:
    """Run wrk against ``url``; with ``limit`` it stops once every thread posted its share.

    ``rate`` is the total target rate (requests/s) shared by the threads (0: closed loop).
    Raises :class:`BenchError` on any non-2xx answer or socket error when ``require_clean``.
    """
    per_thread_limit = -(-limit // threads) if limit else 0
    argv = [*taskset(cpus), "wrk", f"-t{threads}", f"-c{connections}",
            f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(LUA), url, "--",
            prefix, str(per_thread_limit), f"{rate / threads:.3f}", str(high_every)]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    lines: list[str] = []
    done: list[int] = []
    reader = threading.Thread(target=_read, args=(proc.stdout, lines, done), daemon=True)
    reader.start()
    deadline = t0 + seconds + 30
    interrupted = False
    rusage = None
    try:
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                rusage = ru
                break
            if limit and not interrupted and len(done) >= threads:
                os.kill(proc.pid, signal.SIGINT)  # wrk sleeps for -d; SIGINT ends it now
                interrupted = True
            if time.monotonic() > deadline:
                raise BenchError(f"wrk ({label}) did not finish within {seconds + 30:.0f} s")
            time.sleep(0.02)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    wall = time.monotonic() - t0
    reader.join(5)
    text = "".join(lines)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(" ".join(argv) + "\n\n" + text)
    payload = next((ln.split(" ", 1)[1] for ln in lines if ln.startswith("BENCH-JSON ")), None)
    if proc.returncode != 0 or payload is None or rusage is None:
        raise BenchError(f"wrk ({label}) failed (exit code {proc.returncode}):\n{text[-2000:]}")
    result = WrkResult(label, wall, rusage.ru_utime + rusage.ru_stime, json.loads(payload))
    if limit and result.accepted < limit:
        raise BenchError(f"wrk ({label}): only {result.accepted} of {limit} orders were "
                         f"accepted:\n{text[-2000:]}")
    if require_clean and (result.failures or result.raw["err_status"]):
        raise BenchError(
            f"wrk ({label}) saw failures: {result.raw['bad']} non-2xx answers (first status "
            f"{int(result.raw['first_bad_status'])}), {int(result.raw['other2xx'])} other 2xx, "
            f"socket errors {result.summary()['socket_errors']}:\n{text[-2000:]}")
    return result
