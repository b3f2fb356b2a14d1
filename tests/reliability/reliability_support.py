"""The fault suite's harness: the engine as a real process, the emulator in this process, a shop
that retries like a real one, and the measurement behind each row of the reliability table.

Every scenario builds a :class:`Stack` (emulator + environment + a config derived from the
shipped ``alertpipe.yaml``), starts :class:`EngineProcess` (``python -m alertpipe run -c ...``),
drives orders through a :class:`Shop`, waits for the engine to drain (:meth:`Stack.drain`) and
then calls :func:`measure`, which compares what was acknowledged with what reached the emulated
Sheet and Twilio. The resulting :class:`Row` is appended to ``RESULTS`` *before* the scenario
asserts anything, so a failing scenario still shows its counts in the table
(``conftest.pytest_terminal_summary`` prints it and writes ``bench/results/reliability.md``).

``ALERTPIPE_RELIABILITY_SCALE`` (default 1) multiplies message and kill counts;
``ALERTPIPE_RELIABILITY_SEED`` fixes the random kill points.
"""

from __future__ import annotations

import collections
import copy
import os
import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

import engine_process
from alertpipe.emulators import EmulatorSettings, running_emulator
from alertpipe.emulators.server import EmulatorHandle
from alertpipe.emulators.state import EmulatorState

REPO = Path(__file__).resolve().parents[2]
# `make reliability` (scale set explicitly) records its table; ordinary test runs write theirs to
# an ignored scratch file so that `make test` leaves the work tree clean.
RESULTS_FILE = REPO / "bench" / "results" / (
    "reliability.md" if os.environ.get("ALERTPIPE_RELIABILITY_SCALE") else "tmp/reliability.md")
SCALE = max(1, int(os.environ.get("ALERTPIPE_RELIABILITY_SCALE", "1") or "1"))
SEED = int(os.environ.get("ALERTPIPE_RELIABILITY_SEED", "0") or "0") or random.randrange(1, 10**6)
SHEET = "reliability-orders"
FROM = "+15017122661"
ON_CALL = ["+15558675320", "+15558675321"]
HIGH, LOW = "450.00", "25.00"
SHEET_DEST, SMS_DEST = "audit_sheet", "oncall_sms"
ORDER_ID_COLUMN = 2  # received_at, message_id, order_id, customer, amount, currency, high_value
DRAIN_TIMEOUT = 90.0 + 30.0 * SCALE
CIRCUIT_RESET = 3.0


def scaled(n: int) -> int:
    """``n`` times the scale."""
    return n * SCALE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def order(prefix: str, i: int, high: bool, **extra: Any) -> dict[str, Any]:
    """A valid order; ids are fixed-width so that one never contains another."""
    return {"order_id": f"{prefix}-{i:05d}", "amount": HIGH if high else LOW,
            "customer_name": f"Customer {i}", "currency": "USD", **extra}


# -- the table ---------------------------------------------------------------------------------
COLUMNS = [("scenario", 28), ("orders", 6), ("posts", 6), ("acked", 6), ("delivered", 9),
           ("lost", 5), ("dead", 5), ("dup rows", 8), ("SMS exp", 7), ("SMS sent", 8),
           ("dup SMS", 7), ("dup SMS amb", 11), ("result", 6)]


@dataclass
class Row:
    """One scenario's counts. ``lost`` = acknowledged, not in the Sheet and not dead-lettered;
    ``dead`` = acknowledged and dead-lettered at the Sheet (kept, visible, replayable)."""

    scenario: str
    orders: int = 0
    posts: int = 0
    acked: int = 0
    delivered: int = 0
    lost: int = 0
    dead: int = 0
    dup_rows: int = 0
    sms_expected: int = 0
    sms_sent: int = 0
    dup_sms: int = 0
    dup_sms_ambiguous: int = 0
    sms_missing: int = 0
    lost_ids: list[str] = field(default_factory=list)
    dead_ids: list[str] = field(default_factory=list)
    dup_row_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    checked: bool = False

    def cells(self) -> list[str]:
        result = "FAIL" if self.failures else ("PASS" if self.checked else "?")
        return [self.scenario, *(str(v) for v in (
            self.orders, self.posts, self.acked, self.delivered, self.lost, self.dead,
            self.dup_rows, self.sms_expected, self.sms_sent, self.dup_sms,
            self.dup_sms_ambiguous)), result]

    def require(self, ok: bool, criterion: str) -> None:
        """Record a pass criterion; a failed one is listed in the table's notes and asserted."""
        if not ok:
            self.failures.append(criterion)

    def line(self) -> str:
        return format_line(self.cells())

    def explain(self) -> str:
        parts = [header(), self.line()]
        parts += [f"FAILED: {f}" for f in self.failures]
        parts += [f"note: {n}" for n in self.notes]
        for name, ids in (("lost", self.lost_ids), ("dead", self.dead_ids),
                          ("duplicated rows", self.dup_row_ids)):
            if ids:
                parts.append(f"{name}: {', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}")
        return "\n".join(parts)


RESULTS: list[Row] = []


def format_line(cells: list[str]) -> str:
    out = []
    for (_, width), cell in zip(COLUMNS, cells, strict=True):
        out.append(cell.ljust(width) if width == COLUMNS[0][1] else cell.rjust(width))
    return " | ".join(out)


def header() -> str:
    names = format_line([name for name, _ in COLUMNS])
    return names + "\n" + "-+-".join("-" * width for _, width in COLUMNS)


def render_table(rows: Iterable[Row]) -> str:
    rows = sorted(rows, key=lambda r: r.scenario)
    lines = [header(), *(r.line() for r in rows)]
    notes = [f"- {r.scenario}: {n}" for r in rows for n in r.notes]
    notes += [f"- {r.scenario}: FAILED {f}" for r in rows for f in r.failures]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def finish(row: Row) -> None:
    """Close a scenario: print its row and fail with an explanation if a criterion failed."""
    row.checked = True
    print("\n" + row.explain(), flush=True)
    assert not row.failures, "\n" + row.explain()


def write_results(rows: list[Row], path: Path = RESULTS_FILE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).replace(microsecond=0).isoformat()
    path.write_text(
        "# alertpipe reliability (fault suite)\n\n"
        f"Run {stamp}, scale {SCALE}, seed {SEED}, {os.cpu_count()} CPUs. "
        "Produced by `make reliability` (scale 10) or `make test` (scale 1).\n\n"
        f"Config: {CONFIG_CHANGES}.\n\n"
        "Columns: orders = distinct orders sent; posts = HTTP requests (retries and repeats "
        "included); acked = distinct orders answered 202 or 200 duplicate; delivered = "
        "distinct order ids in the Sheet; lost = acked but neither in the Sheet nor "
        "dead-lettered; dead = acked and dead-lettered at the Sheet; dup rows = extra rows "
        "for one order id; SMS exp = high-value acked x on-call numbers; dup SMS = extra texts "
        "for one (number, order); dup SMS amb = of those, after an ambiguous failure recorded "
        "in the attempt history.\n\n"
        "```\n" + render_table(rows) + "\n```\n", encoding="utf-8")
    return path


# -- emulator, environment, config -------------------------------------------------------------
#: How the suite's config differs from the shipped one (printed with the table).
CONFIG_CHANGES = ("the shipped alertpipe.yaml with, where the engine has them, "
                  "oncall_sms.max_per_recipient_per_hour: 0 (the suite texts two numbers "
                  f"hundreds of times an hour) and circuit.reset_seconds: {CIRCUIT_RESET:g} "
                  "(default 30; CI time); env: lease 3 s, Twilio pace 1200/min, client "
                  "timeouts 5 s (1 s in scenario 6)")


def derived_config(workdir: Path, extra_sources: dict[str, dict[str, Any]] | None = None,
                   name: str = "alertpipe-reliability.yaml") -> Path:
    """The shipped ``alertpipe.yaml`` changed as ``CONFIG_CHANGES`` says; each of
    ``extra_sources`` (channel name -> source spec) adds a copy of the ``orders`` channel fed by
    that source. ``${VAR}`` references are kept for the engine to interpolate."""
    data = yaml.safe_load((REPO / "alertpipe.yaml").read_text(encoding="utf-8"))
    for channel_name, source in (extra_sources or {}).items():
        data["channels"][channel_name] = {**copy.deepcopy(data["channels"]["orders"]),
                                          "source": source}
    try:
        from alertpipe.destinations.twilio_sms import TwilioSmsConfig
        capped = "max_per_recipient_per_hour" in TwilioSmsConfig.model_fields
    except ImportError:  # pragma: no cover - depends on the destination's version
        capped = False
    from alertpipe.config.model import ChannelSettings
    if "circuit" in ChannelSettings.model_fields:
        for channel in data["channels"].values():
            channel.setdefault("circuit", {}).setdefault("reset_seconds", CIRCUIT_RESET)
    for channel in data["channels"].values():
        for dest in channel.get("destinations", {}).values():
            if dest.get("type") == "twilio_sms" and capped:
                dest["max_per_recipient_per_hour"] = 0
    path = workdir / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


class Stack:
    """An emulator in this process and what an engine process needs to use it."""

    def __init__(self, emu: EmulatorHandle, workdir: Path, account_sid: str, token: str,
                 env: dict[str, str]) -> None:
        self.emu = emu
        self.state: EmulatorState = emu.state
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("TWILIO_", "SHEETS_", "ALERTPIPE_", "SHOPIFY_"))},
            "ALERTPIPE_STORE": f"sqlite:///{workdir / 'alertpipe.db'}",
            "ALERTPIPE_HOST": "127.0.0.1", "ALERTPIPE_PORT": str(self.port),
            "ALERTPIPE_LEASE_SECONDS": "3",
            "SHEETS_SPREADSHEET_ID": SHEET, "SHEETS_RANGE": "Orders!A:G",
            "GOOGLE_APPLICATION_CREDENTIALS": str(workdir / "sa.json"),
            "SHEETS_API_BASE": emu.url, "TWILIO_API_BASE": emu.url,
            "SHEETS_TIMEOUT_SECONDS": "5", "TWILIO_TIMEOUT_SECONDS": "5",
            "TWILIO_MAX_PER_MINUTE": "1200", "ALERTPIPE_AMBIGUOUS_DELAY": "3",
            "TWILIO_ACCOUNT_SID": account_sid, "TWILIO_AUTH_TOKEN": token,
            "TWILIO_FROM_NUMBER": FROM, "ALERT_SMS_TO": ",".join(ON_CALL),
            **env,
        }
        emu.write_credentials(self.env["GOOGLE_APPLICATION_CREDENTIALS"])
        self.config = derived_config(workdir)
        self.http = httpx.Client(timeout=10)

    # emulator side
    def rows(self) -> list[list[Any]]:
        r = self.http.get(f"{self.emu.url}/_emulator/sheets/{SHEET}", params={"sheet": "Orders"})
        return list(r.json().get("values", []))

    def sms(self) -> list[dict[str, Any]]:
        return list(self.http.get(f"{self.emu.url}/_emulator/sms").json())

    def fault(self, **spec: Any) -> None:
        self.http.post(f"{self.emu.url}/_emulator/faults", json=spec).raise_for_status()

    def clear_faults(self) -> None:
        self.http.delete(f"{self.emu.url}/_emulator/faults").raise_for_status()

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get(f"{self.emu.url}/_emulator/stats").json())

    def wait_emulator(self, predicate: Callable[[EmulatorState], Any], timeout: float,
                      what: str) -> None:
        try:
            self.state.wait_until(predicate, timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"emulator: {what} not reached within {timeout:g}s; "
                                 f"stats={self.stats()}") from None

    # engine side
    def queues(self) -> list[dict[str, Any]]:
        return list(self.http.get(f"{self.url}/api/queues").json()["queues"])

    def queue(self, destination: str) -> dict[str, Any]:
        return next(q for q in self.queues() if q["destination"] == destination)

    def message(self, message_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"{self.url}/api/messages/{message_id}").json())

    def readyz(self) -> tuple[int, dict[str, Any]]:
        r = self.http.get(f"{self.url}/readyz")
        return r.status_code, dict(r.json())

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> list[dict[str, Any]]:
        """Wait until no delivery is pending or in flight (bounded polling of /api/queues) and
        no faulty call is still being processed by the emulator (a hang's late effect)."""
        deadline = time.monotonic() + timeout
        last: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                last = self.queues()
            except httpx.TransportError:
                last = []
            if last and all(q["pending"] == 0 and q["in_flight"] == 0 for q in last):
                self.wait_emulator(lambda s: s.faults.active == 0,
                                   max(1.0, deadline - time.monotonic()), "hung calls finished")
                return last
            time.sleep(0.1)  # bounded condition polling of /api/queues
        raise AssertionError(f"queues did not drain within {timeout:g}s: {last}; "
                             f"emulator stats={self.stats()}")


@contextmanager
def stack(tmp_path: Path, **env: str) -> Iterator[Stack]:
    sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    settings = EmulatorSettings(twilio_account_sid=sid, twilio_auth_token=token,
                                twilio_from_numbers=[FROM], spreadsheets={SHEET: ["Orders"]})
    with running_emulator(settings) as emu:
        st = Stack(emu, tmp_path, sid, token, env)
        try:
            yield st
        finally:
            st.http.close()


class EngineProcess(engine_process.EngineProcess):
    """The engine process on this stack's environment (the derived config by default)."""

    def __init__(self, st: Stack, config: Path | None = None) -> None:
        super().__init__(config or st.config, st.env)


@dataclass
class Scenario:
    """One running scenario: the emulator stack, a shop posting to it and the engine process."""

    st: Stack
    shop: Shop
    engine: EngineProcess

    def restart(self) -> None:
        """SIGKILL the engine and start it again on the same config and SQLite file."""
        self.engine.kill()
        self.engine = EngineProcess(self.st)

    def measure(self, name: str) -> Row:
        """:func:`measure` over what the shop sent and had acknowledged."""
        return measure(self.st, name, sent=self.shop.sent, acked=self.shop.acked,
                       high=self.shop.high, posts=self.shop.posts)


@contextmanager
def scenario(tmp_path: Path, engine_up: threading.Event | None = None,
             **env: str) -> Iterator[Scenario]:
    """:func:`stack` (with ``env``), a :class:`Shop` and a started :class:`EngineProcess`; the
    engine is SIGKILLed on the way out, before the shop and the stack close."""
    with stack(tmp_path, **env) as st, Shop(st.url, engine_up) as shop:
        run = Scenario(st, shop, EngineProcess(st))
        try:
            yield run
        finally:
            run.engine.kill()


# -- the shop ----------------------------------------------------------------------------------
class UnexpectedAnswer(AssertionError):
    pass


class Shop:
    """Posts orders and retries each until it is acknowledged, as a real shop would: after a
    dropped connection (waiting for ``engine_up``), a 5xx or a 503 with Retry-After. A retried
    order that had in fact been stored comes back ``200 duplicate`` and counts as acknowledged."""

    def __init__(self, url: str, engine_up: threading.Event | None = None,
                 deadline_seconds: float = 120.0) -> None:
        self.url = f"{url}/orders"
        self.engine_up = engine_up or threading.Event()
        if engine_up is None:
            self.engine_up.set()
        self.deadline_seconds = deadline_seconds
        self.acked: dict[str, str] = {}       # order_id -> message_id
        self.answers: collections.Counter[str] = collections.Counter()
        self.posts = 0
        self.sent: set[str] = set()
        self.high: set[str] = set()
        self.cond = threading.Condition()
        self._local = threading.local()
        self._clients: list[httpx.Client] = []

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=10)
            with self.cond:
                self._clients.append(client)
        return client

    def _drop_client(self) -> None:
        client: httpx.Client | None = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            client.close()

    def close(self) -> None:
        """Close every connection the client threads opened."""
        with self.cond:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def __enter__(self) -> Shop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
        """Post until acknowledged; returns the message id."""
        oid = str(body["order_id"])
        with self.cond:
            self.sent.add(oid)
            if body.get("amount") == HIGH:
                self.high.add(oid)
        deadline = time.monotonic() + self.deadline_seconds
        while time.monotonic() < deadline:
            with self.cond:
                self.posts += 1
            try:
                r = self._client().post(self.url, json=body, headers=headers)
            except httpx.TransportError:
                self.answers["transport error"] += 1
                self._drop_client()  # its connections died with the engine
                self.engine_up.wait(30)
                continue
            answer = _json(r)
            self.answers[f"{r.status_code} {answer.get('status', '')}".strip()] += 1
            if r.status_code == 202 or (r.status_code == 200
                                        and answer.get("status") == "duplicate"):
                with self.cond:
                    self.acked.setdefault(oid, str(answer["message_id"]))
                    self.cond.notify_all()
                return str(answer["message_id"])
            if r.status_code in (429, 500, 502, 503):
                # the server's own backoff instruction (Retry-After), bounded
                time.sleep(min(float(r.headers.get("retry-after", "0.2")), 2.0))
                continue
            raise UnexpectedAnswer(f"{oid}: unexpected answer {r.status_code} {r.text}")
        raise AssertionError(f"{oid} was never acknowledged within {self.deadline_seconds:g}s")

    def post_all(self, orders: list[dict[str, Any]], threads: int = 4) -> None:
        """Post ``orders`` from ``threads`` client threads; re-raise the first failure."""
        queue = list(reversed(orders))
        lock = threading.Lock()
        errors: list[BaseException] = []

        def work() -> None:
            while True:
                with lock:
                    if not queue or errors:
                        return
                    body = queue.pop()
                try:
                    self.post(body)
                except BaseException as exc:  # reported by the caller
                    with lock:
                        errors.append(exc)
                    return

        workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(self.deadline_seconds + 60)
        if errors:
            raise errors[0]

    def wait_acked(self, n: int, timeout: float = 60.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.acked) >= n, timeout):
                raise AssertionError(f"only {len(self.acked)} of {n} orders acknowledged "
                                     f"within {timeout:g}s; answers={dict(self.answers)}")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# -- measuring ---------------------------------------------------------------------------------
_TOKEN = re.compile(r"[\w-]+")


def sms_order(body: str, known: set[str]) -> str | None:
    """The order id a text is about (the first token of its body that is a known order id)."""
    return next((t for t in _TOKEN.findall(body) if t in known), None)


def measure(st: Stack, scenario: str, *, sent: set[str], acked: dict[str, str],
            high: set[str], posts: int) -> Row:
    """Compare what was acknowledged with the emulator's Sheet and texts; record the row."""
    row = Row(scenario, orders=len(sent), posts=posts, acked=len(acked))
    RESULTS.append(row)
    counts = collections.Counter(str(r[ORDER_ID_COLUMN]) for r in st.rows()
                                 if len(r) > ORDER_ID_COLUMN)
    row.delivered = len(counts)
    row.dup_row_ids = sorted(oid for oid, c in counts.items() if c > 1)
    row.dup_rows = sum(c - 1 for c in counts.values())
    for oid in sorted(set(acked) - set(counts)):
        detail = st.message(acked[oid])
        sheet = [d for d in detail.get("deliveries", []) if d["destination"] == SHEET_DEST]
        if sheet and all(d["status"] == "dead" for d in sheet):
            row.dead_ids.append(oid)
        else:
            row.lost_ids.append(oid)
    row.lost, row.dead = len(row.lost_ids), len(row.dead_ids)

    high_acked = high & set(acked)
    row.sms_expected = len(high_acked) * len(ON_CALL)
    texts = st.sms()
    row.sms_sent = len(texts)
    pairs = collections.Counter((t["To"], sms_order(t.get("Body", ""), set(sent)))
                                for t in texts)
    wanted = {(to, oid) for oid in high_acked for to in ON_CALL}
    row.sms_missing = len(wanted - set(pairs))
    stray = [p for p in pairs if p not in wanted]
    if stray:
        row.notes.append(f"texts for unexpected (number, order): {stray[:5]}")
    for (to, texted), c in pairs.items():
        if c < 2 or texted is None:
            continue
        row.dup_sms += c - 1
        detail = st.message(acked[texted])
        history = [h for d in detail.get("deliveries", [])
                   if d["destination"] == SMS_DEST and d["target"] == to
                   for h in d.get("history", [])]
        if any(h.get("ambiguous") for h in history):
            row.dup_sms_ambiguous += c - 1
    return row


def ambiguous_attempts(st: Stack, message_ids: Iterable[str]) -> collections.Counter[str]:
    """Attempts recorded as ambiguous, per destination, over ``message_ids``."""
    out: collections.Counter[str] = collections.Counter()
    for mid in message_ids:
        for d in st.message(mid).get("deliveries", []):
            out[d["destination"]] += sum(1 for h in d.get("history", []) if h.get("ambiguous"))
    return out


def circuit_state(ready: dict[str, Any], destination: str = SHEET_DEST) -> str | None:
    """The state of ``destination``'s circuit in a /readyz body, if it reports circuits."""
    circuits = ready.get("circuits")
    if not isinstance(circuits, dict):
        return None
    for key, value in circuits.items():
        if destination in str(key) or (isinstance(value, dict)
                                       and value.get("destination") == destination):
            if isinstance(value, dict):
                return str(value.get("state") or value.get("status"))
            return str(value)
    return None
