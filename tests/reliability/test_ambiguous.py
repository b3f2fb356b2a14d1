"""Scenario 6: ambiguous failures. Sheets and Twilio hang longer than the engine's client
timeout (1 s), so the engine cannot know whether the call took effect; it did (the emulator
completes a hung request), and the engine retries. Nothing may be lost, no row duplicated, and
a text may be duplicated only after an attempt the engine recorded as ambiguous."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import ambiguous_attempts, finish, order, scaled, scenario

pytestmark = pytest.mark.e2e


def test_ambiguous_failures(tmp_path: Path) -> None:
    n = scaled(40)
    orders = [order("AMBI", i, high=i % 3 == 0) for i in range(n)]
    first = 6
    with scenario(tmp_path, SHEETS_TIMEOUT_SECONDS="1", TWILIO_TIMEOUT_SECONDS="1") as run:
        st, shop = run.st, run.shop
        shop.post_all(orders[:first])
        st.fault(api="sheets", hang=2, count=2)
        st.fault(api="twilio", hang=2, count=3)
        shop.post_all(orders[first:])
        st.drain()
        stats = st.stats()
        row = run.measure("6 ambiguous (hang > timeout)")
        ambiguous = ambiguous_attempts(st, shop.acked.values())
        read_back = [e["event"] for e in run.engine.events()
                     if str(e.get("event", "")).startswith("read-back found")]
    row.notes.append(f"hangs served: sheets {stats['faults_fired'].get('sheets', 0)}, twilio "
                     f"{stats['faults_fired'].get('twilio', 0)}; attempts recorded ambiguous "
                     f"{dict(ambiguous)}; Sheets read-backs that found rows: {read_back}")
    row.require(stats["faults_pending"] == [], "every hang was served")
    row.require(sum(ambiguous.values()) > 0, "the engine recorded ambiguous attempts")
    row.require(row.acked == n and row.lost == 0 and row.dead == 0,
                f"0 lost ({row.delivered}/{n} delivered)")
    row.require(row.dup_rows == 0, f"no duplicate rows ({row.dup_row_ids[:5]})")
    row.require(row.sms_missing == 0, f"every text sent ({row.sms_missing} missing)")
    row.require(row.dup_sms == row.dup_sms_ambiguous,
                "duplicate texts only after ambiguous failures")
    finish(row)
