"""End to end: GET /metrics of the real engine process (shipped config, SQLite, emulators), with
the shipped alert rules switched on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_support import EngineProcess, Stack, stack
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e


@pytest.fixture
def st(tmp_path: Path) -> Iterator[Stack]:
    with stack(tmp_path) as s:
        s.env = {**s.env, "ALERTPIPE_ALERTS": "true"}
        yield s


def test_metrics_count_intake_and_deliveries_and_read_the_queues(st: Stack) -> None:
    engine = EngineProcess(st)
    try:
        for i, amount in enumerate(("10", "20", "450")):
            r = httpx.post(f"{st.url}/orders", json={"order_id": f"P-{i}", "amount": amount},
                           headers={"Prefer": "wait=15"}, timeout=30)
            assert r.status_code == 200 and r.json()["status"] == "delivered", r.text
        assert httpx.post(f"{st.url}/orders", json={"order_id": "P-bad", "amount": "-1"},
                          timeout=30).status_code == 422
        assert httpx.post(f"{st.url}/orders", json={"order_id": "P-0", "amount": "10"},
                          timeout=30).json()["status"] == "duplicate"
        r = httpx.get(f"{st.url}/metrics", timeout=30)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    finally:
        engine.kill()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(r.text) for s in f.samples}

    def get(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    received = "alertpipe_messages_received_total"
    assert get(received, channel="orders", outcome="accepted", reason="") == 3
    assert get(received, channel="orders", outcome="rejected", reason="validation_failed") == 1
    assert get(received, channel="orders", outcome="duplicate", reason="dedupe") == 1
    sheet = {"channel": "orders", "destination": "audit_sheet"}
    sms = {"channel": "orders", "destination": "oncall_sms"}
    assert get("alertpipe_deliveries_total", **sheet, outcome="delivered") == 3
    assert get("alertpipe_deliveries_total", **sms, outcome="delivered") == 2  # two on call
    assert get("alertpipe_delivery_latency_seconds_count", **sms) == 2
    for labels in (sheet, sms):
        assert get("alertpipe_queue_depth", **labels, state="pending") == 0
        assert get("alertpipe_oldest_pending_age_seconds", **labels) == 0
    circuits = {k: v for k, v in samples.items() if k[0] == "alertpipe_circuit_state"}
    assert len(circuits) == 2 and set(circuits.values()) == {0}
    assert {dict(k[1])["rule"]: v for k, v in samples.items()
            if k[0] == "alertpipe_alert_firing"} == {
        "orders-delivery-errors": 0, "orders-backlog": 0, "orders-silence": 0}
