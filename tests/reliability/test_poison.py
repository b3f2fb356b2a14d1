"""Scenario 5: one order the Sheets API always refuses (400 INVALID_ARGUMENT for any request
whose body contains POISON), sent in the same batch as good orders. Only the poison message may
end in the dead letters; every other order is delivered."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import SHEET_DEST, finish, order, scaled, scenario

pytestmark = pytest.mark.e2e


def test_poison_message_is_dead_lettered_alone(tmp_path: Path) -> None:
    n = scaled(20)
    good = [order("GOOD", i, high=i % 5 == 0) for i in range(n)]
    poison = order("POIS", 0, high=False, customer_name="POISON pill")
    rest = good[3:]
    later = [*rest[: len(rest) // 2], poison, *rest[len(rest) // 2:]]
    with scenario(tmp_path) as run:
        st, shop = run.st, run.shop
        st.fault(api="sheets", status=400, match="POISON", count=-1)
        # Hold the first append for 2 s (then it succeeds): what arrives meanwhile, the
        # poison among it, waits and goes out together in the next batch.
        st.fault(api="sheets", hang=2, count=1, method="spreadsheets.values.append")
        shop.post_all(good[:3])
        st.wait_emulator(lambda s: s.faults.active >= 1, 20, "the first append hanging")
        shop.post_all(later, threads=8)
        st.drain()
        poison_id = shop.acked[poison["order_id"]]
        detail = st.message(poison_id)
        sheet_queue = st.queue(SHEET_DEST)
        stats = st.stats()
        row = run.measure("5 poison message")
        splits = run.engine.events("batch refused; splitting it to isolate the message at fault")
    sheet = [d for d in detail["deliveries"] if d["destination"] == SHEET_DEST]
    first_split = splits[0].get("batch") if splits else "-"
    poison_row = sheet[0] if sheet else {}
    row.notes.append(f"{stats['faults_fired'].get('sheets', 0)} Sheets calls faulted; batch "
                     f"splits logged {len(splits)} (first of {first_split} rows); poison "
                     f"delivery {poison_row.get('status')} after {poison_row.get('attempts')} "
                     f"attempt(s): {poison_row.get('error')!r}")
    refused = stats["faults_fired"].get("sheets", 0) - 1  # minus the hang
    row.require(refused >= 1 and (refused > 1 or row.dead > 1 or bool(splits)),
                "the poison went out in a batch with good rows (else nothing was tested)")
    row.require(sheet_queue["dead"] == 1, f"dead letters at the Sheet: 1 "
                f"(got {sheet_queue['dead']})")
    row.require(bool(sheet) and sheet[0]["status"] == "dead", "the poison message is dead")
    row.require(row.dead_ids == [poison["order_id"]],
                f"only the poison dead-lettered (dead: {row.dead_ids[:10]})")
    row.require(row.delivered == n and row.lost == 0,
                f"every good order delivered ({row.delivered}/{n})")
    row.require(row.dup_rows == 0, "no duplicate rows")
    row.require(row.sms_missing == 0, "every text sent")
    finish(row)
