"""alertpipe benchmark: the engine next to its ceiling, under one load generator, in one run.

    .venv/bin/python bench/run.py            # what `make bench` runs (about 5 minutes)
    .venv/bin/python bench/run.py --quick    # a smoke run: short phases, no extra checks

Phases, all against ONE emulator process (``alertpipe emulate``, Sheets quota 60/min) and ONE
load generator (wrk + bench/orders.lua, every order with a unique order_id, 5 % over $300):

1. ceiling on uvicorn (uvloop + httptools) and on granian (--loop uvloop): bench/ceiling.py,
   parse + validate, no store; closed loop at --connections for --seconds after a warm-up;
2. alertpipe at its maximum rate: ``python -m alertpipe run -c alertpipe.yaml`` (SQLite
   synchronous=FULL, group commit, log level INFO), same load;
3. alertpipe at half that rate (open-loop schedule in the Lua script): p50/p99/p99.9;
4. end to end: N orders as fast as the engine takes them, then the time until every row is in
   the emulated Sheet and every high-value SMS reached the emulated Twilio; accept->delivery
   latency from the engine's SQLite file; Sheets calls per 1,000 orders; quota violations;
5. where the time goes: py-spy samples the engine at its maximum rate (--no-profile skips);
6. pinning check: ceiling and engine again with the other CPU layout (--no-pinning-check).

Each alertpipe phase starts a fresh engine on a fresh SQLite file, so one phase's backlog does
not load the next. Results: bench/results/latest.{json,md,png}, bench/results/<UTC>.md, a row in
bench/README.md's history; scratch (logs, databases, profiles) in bench/results/tmp/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import secrets
import shutil
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import procs
from loadgen import WrkResult, run_wrk
from procs import BenchError, Service, get_json

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
PY = sys.executable
SHEET_ID = "bench-orders"
SMS_TO = "+15558675310"
TWILIO_MAX_PER_MINUTE = 100_000
# A max-rate phase (25 s at ~5,000 req/s) accepts ~125,000 orders while Sheets' quota drains
# ~416 rows/s: the shipped backlog bound (100,000 undelivered rows) would answer 503, as
# designed, before the phase ends. The benchmark measures intake, so it lifts the bound.
MAX_PENDING = 1_000_000

# CPU layouts: where the server under test, wrk and the emulator may run.
LAYOUTS: dict[str, dict[str, str | None]] = {
    "shared": {"server": None, "loadgen": None, "emulator": None},
    "split": {"server": "0", "loadgen": "1", "emulator": "1"},
}


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


class Bench:
    """One benchmark run: its settings, scratch directory, emulator and results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.tmp = RESULTS / "tmp" / self.stamp
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.layout = LAYOUTS[args.layout]
        self.sid = "AC" + secrets.token_hex(16)
        self.token = secrets.token_hex(16)
        self.creds = self.tmp / "service-account.json"
        self.emulator: Service | None = None
        self.results: dict[str, Any] = {}
        self.engine_seq = 0

    # -- environment ---------------------------------------------------------------------
    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ALERTPIPE_", "TWILIO_", "SHEETS_", "GOOGLE_"))}
        env.update({
            "PYTHONUNBUFFERED": "1",
            "TWILIO_ACCOUNT_SID": self.sid, "TWILIO_AUTH_TOKEN": self.token,
            "TWILIO_FROM_NUMBER": "+15017122661", "ALERT_SMS_TO": SMS_TO,
            "SHEETS_SPREADSHEET_ID": SHEET_ID, "SHEETS_RANGE": "Orders!A:G",
            "GOOGLE_APPLICATION_CREDENTIALS": str(self.creds),
        })
        return env

    def engine_env(self, store: Path) -> dict[str, str]:
        assert self.emulator is not None
        env = self.base_env()
        env.update({
            "ALERTPIPE_STORE": f"sqlite:///{store}",
            "SHEETS_API_BASE": self.emulator.url, "TWILIO_API_BASE": self.emulator.url,
            # a messaging service / short code sends far more than a long code's 1 SMS/s
            "TWILIO_MAX_PER_MINUTE": str(TWILIO_MAX_PER_MINUTE),
            "ALERTPIPE_MAX_PENDING": str(MAX_PENDING),
        })
        # production settings otherwise: log level INFO as shipped, synchronous=FULL
        return env

    # -- services ------------------------------------------------------------------------
    def start_emulator(self) -> None:
        self.emulator = procs.start(
            "emulator", [PY, "-m", "alertpipe", "emulate", "--port", "0",
                         "--write-credentials", str(self.creds), "--spreadsheet", SHEET_ID,
                         "--quota", "60"],
            env=self.base_env(), log_dir=self.tmp, cpus=self.layout["emulator"],
            ready_line=r"alertpipe emulator listening on (http://\S+)", cwd=REPO)
        log(f"emulator at {self.emulator.url} (pid {self.emulator.pid})")

    def emu(self, path: str, method: str = "GET") -> Any:
        assert self.emulator is not None
        return get_json(self.emulator.url + path, method=method)

    def start_engine(self, tag: str, cpus: str | None,
                     extra_env: dict[str, str] | None = None) -> tuple[Service, Path]:
        self.engine_seq += 1
        store = self.tmp / f"alertpipe-{self.engine_seq}-{tag}.db"
        svc = procs.start(
            f"alertpipe-{self.engine_seq}-{tag}",
            [PY, "-m", "alertpipe", "run", "-c", str(REPO / "alertpipe.yaml"),
             "--host", "127.0.0.1", "--port", "0"],
            env={**self.engine_env(store), **(extra_env or {})}, log_dir=self.tmp, cpus=cpus,
            ready_line=r"alertpipe listening on (http://\S+)", cwd=REPO)
        return svc, store

    def start_ceiling(self, server: str, cpus: str | None) -> Service:
        env = self.base_env()
        if server == "uvicorn":
            return procs.start(f"ceiling-uvicorn-{cpus or 'any'}",
                               [PY, str(BENCH / "ceiling.py"), "--port", "0"], env=env,
                               log_dir=self.tmp, cpus=cpus,
                               ready_line=r"ceiling listening on (http://\S+)", cwd=REPO)
        port = procs.free_port()
        granian = str(Path(PY).with_name("granian"))
        return procs.start(
            f"ceiling-granian-{cpus or 'any'}",
            [granian, "--interface", "asgi", "--loop", "uvloop", "--http", "1", "--no-ws",
             "--workers", "1", "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
             "--log-level", "warning", "--working-dir", str(BENCH), "ceiling:app"],
            env=env, log_dir=self.tmp, cpus=cpus,
            ready_url=f"http://127.0.0.1:{port}/healthz", cwd=REPO)

    # -- measurements --------------------------------------------------------------------
    def wrk(self, svc: Service, label: str, *, seconds: float, rate: float = 0.0,
            limit: int = 0, loadgen_cpus: str | None = None) -> WrkResult:
        prefix = f"{label}-{secrets.token_hex(3)}"
        return run_wrk(svc.url + "/orders", label=label, seconds=seconds,
                       connections=self.args.connections, prefix=prefix, limit=limit, rate=rate,
                       high_every=self.args.high_every, cpus=loadgen_cpus,
                       log=self.tmp / f"wrk-{label}.txt")

    def measured(self, svc: Service, label: str, *, rate: float = 0.0,
                 layout: dict[str, str | None] | None = None,
                 seconds: float | None = None) -> dict[str, Any]:
        """Warm-up, then one measured wrk run with the server's CPU and RSS around it."""
        layout = layout or self.layout
        seconds = seconds or self.args.seconds
        if self.args.warmup > 0:
            self.wrk(svc, f"{label}-warmup", seconds=self.args.warmup, rate=rate,
                     loadgen_cpus=layout["loadgen"])
        cpu0, main0 = svc.cpu_seconds(), svc.main_thread_cpu_seconds()
        res = self.wrk(svc, label, seconds=seconds, rate=rate, loadgen_cpus=layout["loadgen"])
        cpu, main = svc.cpu_seconds() - cpu0, svc.main_thread_cpu_seconds() - main0
        out = res.summary()
        out["server_cpu_s"] = round(cpu, 3)
        out["server_cpu_cores"] = round(cpu / res.duration_s, 3)
        out["cpu_us_per_msg"] = round(cpu * 1e6 / max(1, res.accepted), 1)
        if len(svc.tree()) == 1:  # one process: its main thread (the event loop) apart from
            # its other threads (the engine's commit and reader threads)
            out["main_thread_us_per_msg"] = round(main * 1e6 / max(1, res.accepted), 1)
        out["peak_rss_mb"] = round(svc.peak_rss_mb(), 1)
        if rate:
            out["target_rps"] = round(rate, 1)
        log(f"  {label}: {out['rps']:,.0f} req/s, p50 {out['p50_ms']:.2f} ms, p99 "
            f"{out['p99_ms']:.2f} ms, p99.9 {out['p999_ms']:.2f} ms, "
            f"{out['cpu_us_per_msg']:.0f} µs CPU/msg, RSS {out['peak_rss_mb']:.0f} MB, "
            f"wrk {out['wrk_cpu_cores']:.2f} cores")
        return out

    def ceiling(self, server: str, layout: dict[str, str | None],
                seconds: float | None = None, rate: float = 0.0) -> dict[str, Any]:
        """The bare app on ``server``: at its maximum rate, or at a fixed ``rate``."""
        log(f"ceiling on {server}" + (f" at {rate:,.0f} req/s" if rate else ""))
        svc = self.start_ceiling(server, layout["server"])
        label = f"ceiling-{server}" + ("-half" if rate else "")
        try:
            return self.measured(svc, label, layout=layout, seconds=seconds, rate=rate)
        finally:
            svc.stop()

    def paired_max(self) -> dict[str, Any]:
        """The uvicorn ceiling and alertpipe at their maximum rates, in alternation, round after
        round, each on a fresh server. This machine's speed drifts by up to a third within
        minutes (the ceiling alone measured 7,800-9,300 req/s in one hour), so the ratio of two
        phases run minutes apart says as much about the drift as about the engine: each round
        measures the pair back to back, the round with the median ratio is the one reported,
        and every round is listed."""
        n = self.args.rounds
        secs = max(5.0, self.args.seconds / n)
        rounds = []
        for i in range(n):
            log(f"round {i + 1} of {n}: ceiling and alertpipe, back to back")
            c = self.ceiling("uvicorn", self.layout, seconds=secs)
            a = self.alertpipe_max(self.layout, tag=f"max-{i + 1}", seconds=secs)
            rounds.append({"ceiling": c, "alertpipe": a,
                           "ratio": round(a["rps"] / c["rps"], 4) if c["rps"] else 0.0})
        order = sorted(range(n), key=lambda i: rounds[i]["ratio"])
        return {"rounds": rounds, "median_round": order[n // 2], "seconds": secs}

    def alertpipe_max(self, layout: dict[str, str | None], tag: str = "max",
                      seconds: float | None = None) -> dict[str, Any]:
        log(f"alertpipe at its maximum rate ({tag})")
        svc, store = self.start_engine(tag, layout["server"])
        try:
            out = self.measured(svc, f"alertpipe-{tag}", layout=layout, seconds=seconds)
        finally:
            svc.stop()
        out["store_bytes"] = _db_size(store)
        return out

    def alertpipe_half(self, max_rps: float) -> dict[str, Any]:
        rate = max_rps / 2
        log(f"alertpipe at half its maximum rate: {rate:,.0f} req/s")
        svc, _ = self.start_engine("half", self.layout["server"])
        try:
            return self.measured(svc, "alertpipe-half", rate=rate)
        finally:
            svc.stop()

    def end_to_end(self) -> dict[str, Any]:
        n = self.args.orders
        log(f"end to end: {n:,} orders as fast as they are taken")
        self.emu("/_emulator/reset", method="POST")
        # The shipped per-recipient SMS cap (30/hour, an SMS-pumping guard) would hold 470 of the
        # 500 alerts of the burst for an hour, by design; this run measures the pipeline, so it
        # lifts the cap (and the results say so).
        svc, store = self.start_engine("e2e", self.layout["server"],
                                       extra_env={"ALERT_SMS_MAX_PER_HOUR": "0"})
        try:
            t0 = time.monotonic()
            res = self.wrk(svc, "alertpipe-e2e", seconds=self.args.e2e_timeout, limit=n,
                           loadgen_cpus=self.layout["loadgen"])
            posted = time.monotonic()
            high = int(res.raw["high"])
            want_sms = high  # one on-call number
            delivered_at = None
            stats: dict[str, Any] = {}
            deadline = t0 + self.args.e2e_timeout
            while time.monotonic() < deadline:
                stats = self.emu("/_emulator/stats")
                if stats["rows"].get(SHEET_ID, 0) >= n and stats["messages"] >= want_sms:
                    delivered_at = time.monotonic()
                    break
                time.sleep(0.1)
            peak_rss = svc.peak_rss_mb()
            cpu = svc.cpu_seconds()
        finally:
            svc.stop()
        values = self.emu(f"/_emulator/sheets/{SHEET_ID}?sheet=Orders")["values"]
        ids = [row[2] for row in values if len(row) > 2]
        appends = stats.get("calls", {}).get("sheets", {}).get("spreadsheets.values.append", 0)
        out: dict[str, Any] = {
            "orders": n, "high_value": high, "accepted": res.accepted,
            "post_seconds": round(float(res.raw["last_answer_ms"] - res.raw["first_post_ms"])
                                  / 1000, 3),
            "post_rps": round(res.accepted * 1000 / max(1.0, float(
                res.raw["last_answer_ms"] - res.raw["first_post_ms"])), 1),
            "ingest_p99_ms": res.ms("p99_us"),
            "complete": delivered_at is not None,
            "e2e_seconds": round(delivered_at - t0, 3) if delivered_at else None,
            "drain_seconds_after_last_ack": round(delivered_at - posted, 3)
            if delivered_at else None,
            "sheet_rows": len(values), "distinct_order_ids": len(set(ids)),
            "sms": stats.get("messages", 0),
            "sheets_append_calls": appends,
            "sheets_calls_per_1k": round(appends * 1000 / n, 2),
            "quota_violations": stats.get("quota_violations", 0),
            "emulator_calls": stats.get("calls", {}),
            "engine_cpu_s": round(cpu, 2),
            "peak_rss_mb": round(peak_rss, 1),
            "wrk_cpu_cores": round(res.cpu_util, 3),
        }
        out.update(delivery_latency(store))
        if delivered_at is None:
            log(f"  NOT COMPLETE after {self.args.e2e_timeout:.0f} s: "
                f"{stats.get('rows', {}).get(SHEET_ID, 0)} rows, {stats.get('messages')} SMS")
        else:
            log(f"  {n:,} orders delivered {out['e2e_seconds']:.1f} s after the first post "
                f"(posting took {out['post_seconds']:.1f} s); accept->delivery p99 "
                f"{out.get('delivery_p99_ms', 0) / 1000:.1f} s; {appends} append calls; "
                f"quota violations {out['quota_violations']}")
        return out

    def profile(self) -> dict[str, Any]:
        """py-spy samples the engine while wrk drives it at its maximum rate."""
        pyspy = shutil.which("py-spy", path=str(Path(PY).parent)) or shutil.which("py-spy")
        if pyspy is None:
            return {"skipped": "py-spy is not installed"}
        log("profile: py-spy on the engine at its maximum rate")
        svc, _ = self.start_engine("profile", self.layout["server"])
        folded = self.tmp / "profile.folded"
        try:
            self.wrk(svc, "alertpipe-profile-warmup", seconds=self.args.warmup or 1,
                     loadgen_cpus=self.layout["loadgen"])
            spy = procs.start("py-spy", [pyspy, "record", "--pid", str(svc.pid), "--rate", "200",
                                         "--nonblocking", "--threads", "--format", "raw",
                                         "--duration", str(self.args.profile_seconds),
                                         "--output", str(folded)],
                              env=dict(os.environ), log_dir=self.tmp, cpus=None)
            res = self.wrk(svc, "alertpipe-profile", seconds=self.args.profile_seconds,
                           loadgen_cpus=self.layout["loadgen"])
            try:
                spy.proc.wait(30)
            finally:
                spy.stop()
        finally:
            svc.stop()
        if not folded.exists():
            return {"skipped": f"py-spy wrote nothing; see {spy.err_log}"}
        from profile_summary import summarize

        out = summarize(folded)
        out["rps_while_profiled"] = round(res.rps, 1)
        out["folded_file"] = str(folded.relative_to(REPO))
        return out

    # -- the whole run -------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        a = self.args
        r = self.results
        r["settings"] = {
            "connections": a.connections, "seconds": a.seconds, "warmup_seconds": a.warmup,
            "wrk_threads": 1, "layout": a.layout, "layout_cpus": self.layout,
            "orders_e2e": a.orders, "high_value_share": 1 / a.high_every,
            "sheets_quota_per_minute": 60, "twilio_max_per_minute": TWILIO_MAX_PER_MINUTE,
            "max_pending": MAX_PENDING, "rounds": a.rounds,
            "engine": "python -m alertpipe run -c alertpipe.yaml (SQLite synchronous=FULL, "
                      "group commit, log level INFO, uvicorn + uvloop + httptools)",
        }
        self.start_emulator()
        paired = self.paired_max()
        median = paired["rounds"][paired["median_round"]]
        r["rounds"] = {
            "seconds": paired["seconds"], "median_round": paired["median_round"],
            "rounds": [{"ceiling_rps": x["ceiling"]["rps"], "alertpipe_rps": x["alertpipe"]["rps"],
                        "ratio": x["ratio"], "ceiling_cpu_us": x["ceiling"]["cpu_us_per_msg"],
                        "alertpipe_cpu_us": x["alertpipe"]["cpu_us_per_msg"],
                        "alertpipe_cores": x["alertpipe"]["server_cpu_cores"]}
                       for x in paired["rounds"]],
        }
        r["ceiling"] = {"uvicorn": median["ceiling"],
                        "granian": self.ceiling("granian", self.layout)}
        # the HTTP layer alone when requests arrive paced (the engine's half-rate row is read
        # against it): the ceiling at half its own maximum, on the same kind of fixed schedule
        r["ceiling"]["uvicorn_half"] = self.ceiling("uvicorn", self.layout,
                                                    rate=r["ceiling"]["uvicorn"]["rps"] / 2)
        r["alertpipe"] = {"max": median["alertpipe"]}
        r["alertpipe"]["half_rate"] = self.alertpipe_half(r["alertpipe"]["max"]["rps"])
        r["alertpipe"]["e2e"] = self.end_to_end()
        if a.search_messages:
            r["search"] = self.search()
        if a.postgres:  # the scale-out rows: PostgreSQL, two instances (bench/scaleout.py)
            import scaleout

            r["scale_out"] = scaleout.run(self)
        if a.profile:
            r["alertpipe"]["profile"] = self.profile()
        if a.pinning_check:
            other = "split" if a.layout == "shared" else "shared"
            lay = LAYOUTS[other]
            secs = min(a.seconds, 10)
            r["pinning"] = {
                "layout": other, "cpus": lay, "seconds": secs,
                "ceiling_uvicorn": self.ceiling("uvicorn", lay, seconds=secs),
                "alertpipe_max": self.alertpipe_max(lay, tag=f"max-{other}", seconds=secs),
            }
        return r


def _search(self: Bench) -> dict[str, Any]:
    """Message-log search over a large store (bench/search.py; built once, then reused)."""
    import search

    n = self.args.search_messages
    log(f"search: {n:,} stored messages (built once under bench/results/tmp/search-cache)")
    out = search.run(n)
    for q in out["queries"]:
        log(f"  {q['query']}: median {q['median_ms']:.1f} ms, max {q['max_ms']:.1f} ms")
    return out


Bench.search = _search  # type: ignore[attr-defined]


def _db_size(store: Path) -> int:
    return sum(p.stat().st_size for p in store.parent.glob(store.name + "*") if p.exists())


def _pct(values: list[int], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    k = min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))  # nearest rank
    return float(values[k])


def delivery_latency(store: Path) -> dict[str, Any]:
    """Accept -> delivery from the engine's SQLite file (integer µs): per destination and per
    message (the last of its destinations), with the timeline for the chart."""
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT d.message_id, d.destination, m.received_at, MIN(a.finished_at) "
            "FROM attempts a JOIN deliveries d ON d.id = a.delivery_id "
            "JOIN messages m ON m.id = d.message_id WHERE a.outcome = 'delivered' "
            "GROUP BY d.id").fetchall()
        received = [r[0] for r in con.execute("SELECT received_at FROM messages")]
        statuses = dict(con.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
                        .fetchall())
        attempts = con.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
    finally:
        con.close()
    if not rows:
        return {"delivery_rows": 0, "delivery_statuses": statuses}
    per_dest: dict[str, list[int]] = {}
    per_msg: dict[str, int] = {}
    start = min(received)
    for mid, dest, recv, fin in rows:
        lat = fin - recv
        per_dest.setdefault(dest, []).append(lat)
        per_msg[mid] = max(per_msg.get(mid, 0), lat)
    msg_lat = list(per_msg.values())
    out: dict[str, Any] = {
        "delivery_rows": len(rows), "delivery_statuses": statuses, "attempts": attempts,
        "delivery_p50_ms": round(_pct(msg_lat, 50) / 1000, 1),
        "delivery_p99_ms": round(_pct(msg_lat, 99) / 1000, 1),
        "delivery_max_ms": round(max(msg_lat) / 1000, 1),
        "per_destination": {d: {"deliveries": len(v), "p50_ms": round(_pct(v, 50) / 1000, 1),
                                "p99_ms": round(_pct(v, 99) / 1000, 1),
                                "max_ms": round(max(v) / 1000, 1)}
                            for d, v in per_dest.items()},
    }
    # cumulative curves (seconds since the first accept), at most ~200 points each
    def curve(times: list[int]) -> list[list[float]]:
        times = sorted(times)
        step = max(1, len(times) // 200)
        pts = [[round((t - start) / 1e6, 3), i + 1] for i, t in enumerate(times)
               if i % step == 0 or i == len(times) - 1]
        return pts
    out["timeline"] = {"accepted": curve(received)}
    for dest in per_dest:
        out["timeline"][dest] = curve([r[3] for r in rows if r[1] == dest])
    return out


def machine_facts(store_dir: Path) -> dict[str, Any]:
    import importlib.metadata as md
    import platform
    import subprocess

    def sh(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for pkg in ("uvicorn", "uvloop", "httptools", "granian", "starlette", "pydantic", "httpx"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[pkg] = md.version(pkg)
    wrk_v = sh("sh", "-c", "wrk -v 2>&1 | head -1")
    return {
        "cpu_model": model, "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(), "kernel": platform.release(),
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": sh("git", "rev-parse", "HEAD"),
        "git_dirty": bool(sh("git", "status", "--porcelain", "--untracked-files=no")),
        "store_filesystem": sh("findmnt", "-n", "-o", "FSTYPE", "--target", str(store_dir)),
        "wrk": wrk_v, "packages": versions,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=20, help="each measured run")
    ap.add_argument("--warmup", type=float, default=5, help="warm-up before each measured run")
    ap.add_argument("--orders", type=int, default=10_000, help="end-to-end orders")
    ap.add_argument("--high-every", type=int, default=20, help="every Nth order is > $300")
    ap.add_argument("--e2e-timeout", type=float, default=180,
                    help="bound on posting + delivery in the end-to-end phase")
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default="split",
                    help="CPU pinning: shared (no pinning) or split (server on CPU 0, "
                         "wrk + emulator on CPU 1)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="alternating rounds of ceiling (uvicorn) and alertpipe at their maximum "
                         "rates, --seconds split between them; the median-ratio round is "
                         "reported (odd numbers give a true median)")
    ap.add_argument("--profile-seconds", type=int, default=10)
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument("--no-pinning-check", dest="pinning_check", action="store_false")
    ap.add_argument("--no-history", dest="history", action="store_false",
                    help="do not append a row to bench/README.md")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 5 s phases, 2,000 orders, no profile, no pinning check, "
                         "no history row")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--database-url", default=os.environ.get("ALERTPIPE_BENCH_DATABASE_URL")
                    or os.environ.get("ALERTPIPE_TEST_DATABASE_URL")
                    or "postgresql://postgres@127.0.0.1:5432/test",
                    help="PostgreSQL server of the scale-out rows (a fresh schema per phase)")
    ap.add_argument("--no-postgres", dest="postgres", action="store_false",
                    help="skip the scale-out rows (PostgreSQL, two instances)")
    ap.add_argument("--search-messages", type=int, default=1_000_000,
                    help="messages in the search phase's store (0: skip the phase)")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.orders, args.rounds = 5, 1, 2000, 1
        args.search_messages = min(args.search_messages, 100_000)
        args.profile = args.pinning_check = args.history = False
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(f"bench: stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    _prune_tmp(keep=2)
    bench = Bench(args)
    started = time.monotonic()
    try:
        results = bench.run()
    except BenchError as exc:
        print(f"\nbench: INVALID RUN: {exc}\n(logs in {bench.tmp})", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    results["machine"] = machine_facts(bench.tmp)
    results["machine"]["bench_seconds"] = round(time.monotonic() - started, 1)
    results["stamp"] = bench.stamp
    from report import write_all

    ok = write_all(results, RESULTS, BENCH / "README.md", history=args.history)
    log(f"done in {results['machine']['bench_seconds']:.0f} s: "
        f"{(RESULTS / 'latest.md').relative_to(REPO)}")
    print((RESULTS / "latest.md").read_text())
    return 1 if (args.strict and not ok) else 0


def _prune_tmp(keep: int) -> None:
    tmp = RESULTS / "tmp"
    if not tmp.is_dir():
        return
    runs = sorted(p for p in tmp.iterdir() if p.is_dir() and p.name != "search-cache")
    for old in runs[:-keep] if keep else runs:
        shutil.rmtree(old, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
