"""The engine's logs at INFO: one JSON object per line; every line about a message names it; no
secret and no order field (customer name, phone, free text) ever appears.

The shipped alertpipe.yaml runs in-process over the memory store, with the real sources and
destinations against the emulators (httpx.ASGITransport): accepted, duplicate, replayed,
refused, retried, dead-lettered and split orders, and an alert that fires and resolves."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from alertpipe.auth import hash_key
from alertpipe.config import load_config
from alertpipe.config.model import ApiKeySettings
from alertpipe.emulators import EmulatorSettings, create_app
from alertpipe.engine import Engine
from alertpipe.logs import setup_logging
from alertpipe.message import utcnow
from alertpipe.store import MemoryStore
from alertpipe.web import create_app as engine_app

REPO = Path(__file__).resolve().parents[3]
BASE = "http://emulator"
SID = "AC" + "7" * 32
TOKEN = "tok-LOGSECRET-0123456789abcdef"
API_KEY = "ap_LOGSECRET-ingest-key-0123456789"
FROM = "+15017122661"
ON_CALL = "+15558675310"
CUSTOMER = "Grace Quietname"
PHONE = "+15559990001"
NOTE = "leave-with-neighbour-7731"
# Lines about messages must name them: these events, and every line of a destination.
MESSAGE_EVENTS = ("accepted", "duplicate", "idempotent replay", "delivered", "retry scheduled",
                  "dead-lettered", "batch refused", "destination raised", "alert sent",
                  "alert not sent")
MESSAGE_LOGGERS = ("alertpipe.destinations.",)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """alertpipe's own log set-up (JSON lines at INFO) into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {name: logging.getLogger(name).level
                                            for name in ("httpx", "httpcore")})
    stream = io.StringIO()
    setup_logging("INFO", stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


def order(order_id: str, amount: str, **extra: Any) -> dict[str, Any]:
    return {"order_id": order_id, "amount": amount, "customer_name": CUSTOMER,
            "customer_phone": PHONE, "note": NOTE, **extra}


async def test_info_logs_are_json_name_the_message_and_hold_no_secret(
        tmp_path: Path, json_log: io.StringIO) -> None:
    emulator = create_app(EmulatorSettings(twilio_account_sid=SID, twilio_auth_token=TOKEN,
                                           twilio_from_numbers=[FROM],
                                           spreadsheets={"log-sheet": ["Orders"]}))
    key_file = tmp_path / "sa.json"
    emulator.state.emulator.write_credentials(key_file, BASE)
    env = {"SHEETS_SPREADSHEET_ID": "log-sheet", "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
           "SHEETS_API_BASE": BASE, "TWILIO_API_BASE": BASE, "TWILIO_ACCOUNT_SID": SID,
           "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_FROM_NUMBER": FROM, "ALERT_SMS_TO": ON_CALL,
           "ALERTPIPE_AMBIGUOUS_DELAY": "0", "ALERTPIPE_ALERTS": "true",
           "ALERTPIPE_ALERT_INTERVAL": "3600"}
    cfg = load_config(REPO / "alertpipe.yaml", environ=env)
    cfg.engine.api_keys = [ApiKeySettings(id="shop", sha256=hash_key(API_KEY),
                                          rights=["ingest", "read"])]
    emu = httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url=BASE)
    eng = Engine(cfg, store=MemoryStore(), http=emu)
    assert eng.monitor is not None
    await eng.start()
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=engine_app(eng)),
                            base_url="http://engine", headers={"X-API-Key": API_KEY})
    accepted: list[str] = []
    try:
        for fault in ({"api": "twilio", "status": 400, "count": -1, "match": "L-POISON"},
                      {"api": "sheets", "status": 400, "count": -1, "match": "L-POISON"},
                      # the effect happens, the answer is lost: found by lookup / read-back
                      {"api": "twilio", "status": 500, "count": 1, "match": "L-RETRY",
                       "after_effect": True},
                      {"api": "sheets", "status": 503, "count": 1, "match": "L-2",
                       "after_effect": True}):
            (await emu.post("/_emulator/faults", json=fault)).raise_for_status()
        wait = {"Prefer": "wait=20"}
        orders = [order("L-1", "349.99"), order("L-2", "12.00"), order("L-RETRY", "500"),
                  order("L-POISON", "999")]
        answers = await asyncio.gather(*(api.post("/orders", json=o, headers=wait)
                                         for o in orders))
        assert [r.status_code for r in answers] == [200] * 4, [r.text for r in answers]
        assert [r.json()["status"] for r in answers] == ["delivered"] * 3 + ["failed"]
        accepted = [r.json()["message_id"] for r in answers]
        again = await api.post("/orders", json=order("L-1", "349.99"))
        assert again.json()["status"] == "duplicate"
        idem = {"Idempotency-Key": "log-idem-1"}
        first = await api.post("/orders", json=order("L-3", "5"), headers={**idem, **wait})
        replay = await api.post("/orders", json=order("L-3", "5"), headers=idem)
        assert replay.headers["Idempotent-Replayed"] == "true"
        accepted.append(first.json()["message_id"])
        assert (await api.post("/orders", json=order("", "-1"))).status_code == 422
        assert (await api.post("/orders", json=order("L-9", "1"),
                               headers={"X-API-Key": "wrong"})).status_code == 401
        # an alert: the orders-silence rule fires (no order for 240 min) and resolves
        monitor = eng.monitor
        monitor.clock = lambda: utcnow()
        await monitor.evaluate()
        later = utcnow()
        monitor.clock = lambda: later.replace(year=later.year + 1)
        await monitor.evaluate()
        monitor.clock = lambda: utcnow()
        await monitor.evaluate()
        alerts = [m["Body"] for m in emulator.state.emulator.sms_log
                  if m["Body"].startswith("[alertpipe]")]
        assert [a.split()[1] for a in alerts] == ["FIRING", "RESOLVED"]
        metrics = await api.get("/metrics")
        assert metrics.status_code == 200
    finally:
        await api.aclose()
        await eng.stop()
        await emu.aclose()

    text = json_log.getvalue()
    lines = text.splitlines()
    assert len(lines) >= 15
    events: list[dict[str, Any]] = []
    for line in lines:
        event = json.loads(line)  # one JSON object per line, nothing else
        assert isinstance(event, dict) and {"ts", "level", "logger", "event"} <= set(event)
        events.append(event)
    names = {e["event"] for e in events}
    assert {"retry scheduled", "dead-lettered", "delivered", "duplicate", "idempotent replay",
            "alert sent"} <= names, names
    for prefix in ("batch refused", "read-back found", "twilio message"):
        assert any(e["event"].startswith(prefix) for e in events), prefix

    def ids(event: dict[str, Any]) -> set[str]:
        return ({event["message_id"]} if "message_id" in event else set()) | set(
            event.get("message_ids", ()))

    for e in events:
        about_a_message = (e["logger"].startswith(MESSAGE_LOGGERS)
                           or e["event"].startswith(MESSAGE_EVENTS))
        if about_a_message:
            assert ids(e), e
    delivered = set().union(*(ids(e) for e in events if e["event"] == "delivered"))
    assert set(accepted[:3] + accepted[4:]) <= delivered
    dead = set().union(*(ids(e) for e in events if e["event"] == "dead-lettered"))
    assert accepted[3] in dead

    private_key = json.loads(key_file.read_text())["private_key"]
    key_body = private_key.split("-----")[2].replace("\n", "")
    secrets = [TOKEN, API_KEY, key_body[:40], key_body[-40:], CUSTOMER, PHONE, NOTE,
               "Quietname"]
    for secret in secrets:
        assert secret not in text, secret
    assert all(e["level"] in ("info", "warning", "error") for e in events)
