"""Burst benchmark: N orders posted at once to a real engine process; how many Sheets API calls
does the audit trail cost, and how many orders per second does the engine accept?

    .venv/bin/python bench/burst.py --orders 1000 --concurrency 32 --wrk-seconds 10

Phase 1 posts the burst from Python and waits for every row to reach the emulated Sheet.
Phase 2 measures sustained intake with wrk (Debian package), because a Python client is slower
than the engine and would measure itself.

The engine runs as ``alertpipe run`` with the shipped alertpipe.yaml (SQLite, synchronous=FULL,
group commit) against the emulators, which enforce Google's 60 writes/minute/user quota.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from alertpipe.emulators import EmulatorSettings, running_emulator

REPO = Path(__file__).resolve().parents[1]
SHEET = "bench-orders"


def start_engine(env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "alertpipe", "run", "-c",
                             str(REPO / "alertpipe.yaml")], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    ready = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("alertpipe listening on"):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(30) or proc.poll() is not None:
        raise SystemExit("the engine did not start:\n" + "".join(lines[-10:]))
    return proc


async def fire(url: str, n: int, concurrency: int, high_every: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                amount = "450.00" if high_every and i % high_every == 0 else "25.00"
                body = json.dumps({"order_id": f"N-{i}", "amount": amount,
                                   "customer_name": "Bench"})
                t0 = time.perf_counter()
                r = await client.post(url, content=body,
                                      headers={"Content-Type": "application/json"})
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 202:
                    raise SystemExit(f"unexpected {r.status_code}: {r.text}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, latencies


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil,
    '{"order_id":"W-' .. n .. '","amount":"25.00","customer_name":"Bench"}')
end
"""


def run_wrk(url: str, seconds: int, connections: int, workdir: str) -> tuple[float, str]:
    """Sustained intake with wrk: (requests per second, wrk's latency line)."""
    script = Path(workdir) / "post.lua"
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True,
                         check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit("wrk saw non-2xx answers:\n" + out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    return rps, f"avg {lat.group(1) if lat else '?'}, p99 {p99.group(1) if p99 else '?'}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--orders", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--high-every", type=int, default=0,
                    help="every Nth order is high-value (0: none, so SMS pacing is not measured)")
    ap.add_argument("--wrk-seconds", type=int, default=10, help="0 skips the wrk phase")
    args = ap.parse_args()
    sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    settings = EmulatorSettings(twilio_account_sid=sid, twilio_auth_token=token,
                                spreadsheets={SHEET: ["Orders"]})
    with tempfile.TemporaryDirectory() as tmp, running_emulator(settings) as emu:
        port = 18000 + os.getpid() % 1000
        env = {**os.environ, "ALERTPIPE_STORE": f"sqlite:///{tmp}/bench.db",
               "ALERTPIPE_HOST": "127.0.0.1", "ALERTPIPE_PORT": str(port),
               "ALERTPIPE_LOG_LEVEL": "WARNING",
               "SHEETS_SPREADSHEET_ID": SHEET, "SHEETS_RANGE": "Orders!A:G",
               "GOOGLE_APPLICATION_CREDENTIALS": f"{tmp}/sa.json",
               "SHEETS_API_BASE": emu.url, "TWILIO_API_BASE": emu.url,
               "TWILIO_ACCOUNT_SID": sid, "TWILIO_AUTH_TOKEN": token,
               "TWILIO_FROM_NUMBER": "+15017122661", "ALERT_SMS_TO": "+15558675310"}
        emu.write_credentials(env["GOOGLE_APPLICATION_CREDENTIALS"])
        proc = start_engine(env)
        try:
            elapsed, lat = asyncio.run(fire(f"http://127.0.0.1:{port}/orders", args.orders,
                                            args.concurrency, args.high_every))
            t0 = time.perf_counter()
            try:
                ok = bool(emu.state.wait_until(
                    lambda st: len(st.spreadsheets[SHEET].sheet("Orders").rows) >= args.orders,
                    120))
            except TimeoutError:
                ok = False
            drained = time.perf_counter() - t0
            stats = httpx.get(f"{emu.url}/_emulator/stats").json()
            wrk = None
            if args.wrk_seconds and shutil.which("wrk"):
                wrk = run_wrk(f"http://127.0.0.1:{port}/orders", args.wrk_seconds,
                              args.concurrency, tmp)
        finally:
            proc.terminate()
            proc.wait(30)
    lat.sort()
    appends = stats["calls"].get("sheets", {}).get("spreadsheets.values.append", 0)
    print(f"orders                 {args.orders} (concurrency {args.concurrency})")
    print(f"burst accepted/s (py)  {args.orders / elapsed:,.0f} (bounded by the Python client)")
    print(f"burst latency p50/p99  {statistics.median(lat) * 1000:.1f} ms / "
          f"{lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms (as the Python client saw it)")
    print(f"all rows in the Sheet  {'yes' if ok else 'NO'}, {drained:.1f} s after the last ack")
    print(f"Sheets append calls    {appends} for {args.orders} orders "
          f"({appends * 1000 / args.orders:.1f} per 1,000)")
    print(f"quota violations       {stats.get('quota_violations', 0)}")
    if wrk is not None:
        print(f"sustained intake (wrk) {wrk[0]:,.0f} orders/s accepted over {args.wrk_seconds} s, "
              f"{args.concurrency} connections; latency {wrk[1]}")
    elif args.wrk_seconds:
        print("sustained intake (wrk) skipped: wrk is not installed (apt-get install wrk)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
