"""End to end: the shipped alertpipe.yaml, the engine in a subprocess, the emulators, sockets."""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from e2e_support import ON_CALL, EngineProcess, Stack, stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def st(tmp_path: Path) -> Iterator[Stack]:
    with stack(tmp_path) as s:
        yield s


def post(st: Stack, order: dict[str, object], wait: float | None = None) -> httpx.Response:
    headers = {"Prefer": f"wait={wait:g}"} if wait else {}
    return httpx.post(f"{st.url}/orders", json=order, headers=headers, timeout=30)


def test_boundary_amounts_rows_and_sms(st: Stack) -> None:
    engine = EngineProcess(st)
    try:
        results = {amount: post(st, {"order_id": f"B-{amount}", "amount": amount,
                                     "customer_name": "Ada L."}, wait=10)
                   for amount in ("300", "300.00", "300.01")}
        assert all(r.status_code == 200 for r in results.values()), results
        assert results["300.01"].json()["status"] == "delivered"
        rows = st.rows()
        assert [r[2] for r in rows] == ["B-300", "B-300.00", "B-300.01"]
        assert [r[6] for r in rows] == [False, False, True]
        assert [Decimal(str(r[4])) for r in rows] == [Decimal(300), Decimal(300),
                                                      Decimal("300.01")]
        texts = st.sms()
        assert sorted(t["To"] for t in texts) == ON_CALL
        assert texts[0]["Body"] == "High-value order B-300.01: $300.01 USD from Ada L."
        bad = post(st, {"order_id": "", "amount": "-1"})
        assert bad.status_code == 422
        assert {e["field"] for e in bad.json()["errors"]} == {"order_id", "amount"}
        assert engine.terminate() == 0
    finally:
        engine.kill()
    # Secrets never reach the logs or the store.
    logs = "".join(engine.lines)
    key = Path(st.env["GOOGLE_APPLICATION_CREDENTIALS"]).read_text()
    private = key.split("-----BEGIN PRIVATE KEY-----")[1][:64]
    store = b"".join(p.read_bytes() for p in st.workdir.glob("alertpipe.db*"))
    for secret in (st.token, private):
        assert secret not in logs
        assert secret.encode() not in store
    delivered = [e for e in engine.events() if e.get("event") == "delivered"]
    logged_ids = {e["message_id"] for e in delivered if "message_id" in e} | {
        i for e in delivered for i in e.get("message_ids", ())}
    assert {r.json()["message_id"] for r in results.values()} <= logged_ids


def test_sigkill_mid_stream_loses_nothing(st: Stack) -> None:
    engine = EngineProcess(st)
    acked: list[str] = []
    orders = [{"order_id": f"K-{i}", "amount": "350.00" if i % 10 == 0 else "20.00"}
              for i in range(300)]

    def send(order: dict[str, object]) -> str | None:
        try:
            r = post(st, order)
        except httpx.HTTPError:
            return None
        return str(order["order_id"]) if r.status_code == 202 else None

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(send, o) for o in orders]
        for n, fut in enumerate(concurrent.futures.as_completed(futures)):
            if (oid := fut.result()) is not None:
                acked.append(oid)
            if n == 120:
                engine.kill()  # SIGKILL while requests and deliveries are in flight
    assert len(acked) >= 100
    restarted = EngineProcess(st)
    try:
        # resend what was never acknowledged, as a client would; an order that was stored
        # but whose answer the kill cut off comes back as a duplicate of the stored one
        for o in orders:
            if o["order_id"] not in acked:
                r = post(st, o)
                assert r.status_code in (200, 202), r.text
                assert r.status_code == 202 or r.json()["status"] == "duplicate"
        high = {o["order_id"] for o in orders if o["amount"] == "350.00"}
        every_row_and_text = st.arrived(
            {str(o["order_id"]) for o in orders}, len(high) * len(ON_CALL))
        try:  # woken by the emulator at each row and text it receives
            st.emu.state.wait_until(every_row_and_text, timeout=60)
        except TimeoutError:
            pass  # the assertions below say what is missing
        counts = collections.Counter(r[2] for r in st.rows())
        lost = [o["order_id"] for o in orders if counts[o["order_id"]] == 0]
        assert lost == [], f"lost {len(lost)} acknowledged orders"
        sms_orders = collections.Counter(t["Body"].split()[2].rstrip(":") for t in st.sms())
        assert set(sms_orders) == high
        duplicates = sum(c - 1 for c in counts.values())
        print(f"acked={len(acked)} rows={sum(counts.values())} duplicate_rows={duplicates}")
    finally:
        restarted.kill()


def test_survives_429_500_and_a_hang(st: Stack) -> None:
    engine = EngineProcess(st)
    try:
        st.fault(api="sheets", status=429, count=2, retry_after=1)
        r = post(st, {"order_id": "F-1", "amount": "10"}, wait=20)
        assert r.status_code == 200 and r.json()["status"] == "delivered", r.text
        st.fault(api="twilio", status=500, count=1)
        r = post(st, {"order_id": "F-2", "amount": "999"}, wait=20)
        assert r.status_code == 200 and r.json()["status"] == "delivered", r.text
        st.fault(api="sheets", hang=2, count=1)  # longer than the 1 s client timeout
        r = post(st, {"order_id": "F-3", "amount": "10"}, wait=20)
        assert r.status_code == 200 and r.json()["status"] == "delivered", r.text
        detail = httpx.get(f"{st.url}/api/messages/{r.json()['message_id']}").json()
        history = detail["deliveries"][0]["history"]
        assert history[0]["outcome"] == "retry" and history[0]["ambiguous"] is True
        assert {row[2] for row in st.rows()} >= {"F-1", "F-2", "F-3"}
        retried = [e for e in engine.events() if e.get("event") == "retry scheduled"]
        assert len(retried) >= 4  # two 429s, one 500 (one of two SMS rows), one timeout
    finally:
        engine.kill()


def test_bad_credentials_fail_at_start_with_a_clear_error(st: Stack) -> None:
    env = dict(st.env)
    del env["TWILIO_ACCOUNT_SID"]
    st.env = env
    with pytest.raises(RuntimeError) as info:
        EngineProcess(st)
    assert "TWILIO_ACCOUNT_SID" in str(info.value)
