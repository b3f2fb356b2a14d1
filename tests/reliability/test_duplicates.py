"""Scenario 4: the same order delivered several times, one after another and at the same
instant, with and without the same ``Idempotency-Key``, and (when the Shopify source exists) as
a signed Shopify webhook redelivered with the same ``X-Shopify-Event-Id``. Exactly one row per
order; the first request is answered 202, every repeat 200 ``duplicate`` (or 202 with
``Idempotent-Replayed: true``), all naming the same message."""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import hashlib
import hmac
import importlib.util
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from reliability_support import (
    HIGH,
    LOW,
    EngineProcess,
    Row,
    Stack,
    derived_config,
    finish,
    measure,
    order,
    scaled,
    stack,
)

pytestmark = pytest.mark.e2e

SHOPIFY_SECRET = "reliability-shopify-secret"
SHOPIFY_PATH = "/webhooks/shopify"
HAS_SHOPIFY = importlib.util.find_spec("alertpipe.sources.shopify") is not None
CONCURRENT = 6


class Answer:
    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.body: dict[str, Any] = response.json() if response.content else {}
        self.replayed = response.headers.get("idempotent-replayed", "").lower() == "true"

    def first(self) -> bool:
        return self.status == 202 and not self.replayed

    def repeat(self) -> bool:
        return ((self.status == 200 and self.body.get("status") == "duplicate")
                or (self.status == 202 and self.replayed))

    def __repr__(self) -> str:
        return f"{self.status}{' replayed' if self.replayed else ''} {self.body}"


class Deliverer:
    """Sends one request several times, sequentially and at once; keeps every answer."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Answer]] = collections.defaultdict(list)
        self.posts = 0
        self.lock = threading.Lock()

    def send(self, oid: str, url: str, content: bytes, headers: dict[str, str],
             sequential: int, concurrent: int) -> None:
        headers = {"Content-Type": "application/json", **headers}

        def one(client: httpx.Client, barrier: threading.Barrier | None = None) -> None:
            if barrier is not None:
                barrier.wait(10)
            answer = Answer(client.post(url, content=content, headers=headers))
            with self.lock:
                self.posts += 1
                self.answers[oid].append(answer)

        with httpx.Client(timeout=30) as client:
            for _ in range(sequential):
                one(client)
        if concurrent:
            barrier = threading.Barrier(concurrent)
            clients = [httpx.Client(timeout=30) for _ in range(concurrent)]
            try:
                with concurrent_pool(concurrent) as pool:
                    for f in [pool.submit(one, c, barrier) for c in clients]:
                        f.result(30)
            finally:
                for c in clients:
                    c.close()

    def check(self, row: Row, oids: list[str], what: str) -> dict[str, str]:
        """Exactly one first answer per order, every other a repeat of the same message."""
        acked: dict[str, str] = {}
        bad = []
        for oid in oids:
            answers = self.answers[oid]
            firsts = [a for a in answers if a.first()]
            ids = {a.body.get("message_id") for a in answers}
            if (len(firsts) != 1 or not all(a.first() or a.repeat() for a in answers)
                    or len(ids) != 1):
                bad.append(f"{oid}: {answers}")
            elif firsts:
                acked[oid] = str(firsts[0].body["message_id"])
        row.require(not bad, f"{what}: one 202 then repeats of the same message, got "
                    + "; ".join(bad[:3]))
        return acked


def concurrent_pool(n: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(n)


def shopify_payload(i: int) -> dict[str, Any]:
    price = HIGH if i % 2 == 0 else LOW
    return {"id": 820982911946154508 + i, "name": f"#{1000 + i}", "order_number": 1000 + i,
            "total_price": price, "currency": "USD", "financial_status": "paid",
            "created_at": "2026-01-05T10:00:00-05:00",
            "customer": {"first_name": "Shop", "last_name": f"Customer{i}"},
            "line_items": [{"id": 466157049 + i, "sku": f"SKU-{i}", "quantity": 1,
                            "price": price, "title": "Widget"}]}


def shopify_headers(raw: bytes, event_id: str) -> dict[str, str]:
    digest = hmac.new(SHOPIFY_SECRET.encode(), raw, hashlib.sha256).digest()
    return {"X-Shopify-Topic": "orders/create", "X-Shopify-Event-Id": event_id,
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Shop-Domain": "reliability.myshopify.com",
            "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode()}


def start_engine(st: Stack) -> EngineProcess:
    if not HAS_SHOPIFY:
        return EngineProcess(st)
    st.env["SHOPIFY_WEBHOOK_SECRET"] = SHOPIFY_SECRET
    config = derived_config(st.workdir, {"shopify_orders": {
        "type": "shopify", "path": SHOPIFY_PATH, "secret": "${SHOPIFY_WEBHOOK_SECRET}"}},
        name="alertpipe-shopify.yaml")
    return EngineProcess(st, config)


def test_duplicate_deliveries_give_one_row(tmp_path: Path) -> None:
    n = scaled(6)
    plain = [order("DUPS", i, high=i % 2 == 0) for i in range(n)]
    keyed = [order("IDEM", i, high=i % 2 == 1) for i in range(n)]
    shopify = [shopify_payload(i) for i in range(n)] if HAS_SHOPIFY else []
    row = Row("4 duplicate deliveries")
    d = Deliverer()
    with stack(tmp_path) as st:
        engine = start_engine(st)
        try:
            url = f"{st.url}/orders"
            with concurrent_pool(4) as pool:
                jobs = []
                for o in plain:  # three times in a row, then six at the same instant
                    jobs.append(pool.submit(d.send, o["order_id"], url, json.dumps(o).encode(),
                                            {}, 3, CONCURRENT))
                for o in keyed:  # the same Idempotency-Key and body, repeated
                    key = {"Idempotency-Key": f"key-{o['order_id']}"}
                    jobs.append(pool.submit(d.send, o["order_id"], url, json.dumps(o).encode(),
                                            key, 2, CONCURRENT))
                for p in shopify:  # a webhook redelivered with the same event id
                    raw = json.dumps(p).encode()
                    jobs.append(pool.submit(d.send, str(p["id"]), st.url + SHOPIFY_PATH, raw,
                                            shopify_headers(raw, str(uuid.uuid4())), 2,
                                            CONCURRENT))
                for job in jobs:
                    job.result(120)
            acked = d.check(row, [o["order_id"] for o in plain], "same order_id")
            acked |= d.check(row, [o["order_id"] for o in keyed], "same Idempotency-Key")
            acked |= d.check(row, [str(p["id"]) for p in shopify], "same X-Shopify-Event-Id")
            st.drain()
            high = ({o["order_id"] for o in plain + keyed if o["amount"] == HIGH}
                    | {str(p["id"]) for p in shopify if p["total_price"] == HIGH})
            sent = {o["order_id"] for o in plain + keyed} | {str(p["id"]) for p in shopify}
            measured = measure(st, row.scenario, sent=sent, acked=acked, high=high,
                               posts=d.posts)
        finally:
            engine.kill()
    measured.failures += row.failures
    kinds = collections.Counter(f"{a.status}{' replayed' if a.replayed else ''} "
                                f"{a.body.get('status')}"
                                for answers in d.answers.values() for a in answers)
    measured.notes.append(f"answers {dict(kinds)}")
    if not HAS_SHOPIFY:
        measured.notes.append("alertpipe.sources.shopify is missing: Shopify part skipped")
    else:
        measured.notes.append(f"incl. {len(shopify)} signed Shopify webhooks x "
                              f"{2 + CONCURRENT} deliveries")
    measured.require(measured.delivered == len(sent) and measured.lost == 0
                     and measured.dead == 0, "every order delivered")
    measured.require(measured.dup_rows == 0, "exactly one row per order")
    measured.require(measured.sms_missing == 0 and measured.dup_sms == 0,
                     "exactly one text per high-value order and number")
    finish(measured)
