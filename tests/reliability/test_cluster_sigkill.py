"""Scenario 7: two engine instances on one PostgreSQL schema; shops post to both (the last
quarter of the orders after the kill, to the survivor); the instance that leads the Sheets
batching is SIGKILLed while a batch of its is in flight (the emulator holds that append for 2 s,
so the kill lands with deliveries leased) and orders are being posted. The survivor takes the Sheets
lock over, reclaims the dead instance's leased deliveries when their lease (3 s) lapses, and
delivers everything: 0 acknowledged orders lost. Duplicates are counted, not forbidden; the
Sheets read-back and the Twilio lookup after an ambiguous (reclaimed) delivery keep them at or
near 0."""

from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path

import psycopg
import pytest
from reliability_support import SHEET_DEST, Shop, finish, measure, order, scaled, stack

from cluster_support import LEADING, delivered_ids, leader, start_instances
from pg_support import Schema, pg_schema, pg_url

pytestmark = pytest.mark.e2e
__all__ = ["pg_schema", "pg_url"]


def leased_by(schema: Schema, instance: str) -> dict[int, str]:
    """Deliveries in flight under a lease of ``instance`` (lease owners start with its id)."""
    with psycopg.connect(schema.dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT id, destination FROM deliveries WHERE status = 'in_flight' "
                            "AND lease_owner LIKE %s", (f"{instance}-%",)).fetchall()
    return {int(str(r[0])): str(r[1]) for r in rows}


def statuses(schema: Schema, ids: list[int]) -> dict[int, str]:
    with psycopg.connect(schema.dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT id, status FROM deliveries WHERE id = ANY(%s)",
                            (ids,)).fetchall()
    return {int(str(r[0])): str(r[1]) for r in rows}


def test_sigkill_one_of_two_instances_loses_nothing(tmp_path: Path, pg_schema: Schema) -> None:
    n = scaled(600)
    orders = [order("CLUS", i, high=i % 6 == 0) for i in range(n)]
    with stack(tmp_path) as st:
        a, b = start_instances(["inst-a", "inst-b"], st.config, st.env, pg_schema.url)
        try:
            dead = leader([a, b])
            survivor = b if dead is a else a
            up = {i.name: threading.Event() for i in (a, b)}
            for ev in up.values():
                ev.set()
            shops = {i.name: Shop(i.url, up[i.name]) for i in (a, b)}
            # every instance takes a share of the orders, as behind a load balancer; the last
            # quarter of each share waits for the kill, so that some orders always come after
            killed = threading.Event()
            halves = {a.name: orders[0::2], b.name: orders[1::2]}

            def post(shop: Shop, part: list[dict[str, object]]) -> None:
                cut = len(part) * 3 // 4
                shop.post_all(part[:cut], 3)
                assert killed.wait(60), "the kill did not come"
                shop.post_all(part[cut:], 3)

            pool = concurrent.futures.ThreadPoolExecutor(2)
            posting = [pool.submit(post, shops[name], part) for name, part in halves.items()]
            try:
                shops[dead.name].wait_acked(len(halves[dead.name]) // 5)
                # hold the leader's next append in the emulator, then kill it mid-send
                st.fault(api="sheets", method="spreadsheets.values.append", hang=2, count=1)
                st.wait_emulator(lambda s: s.faults.active >= 1, 15, "the held append")
                up[dead.name].clear()  # its clients wait, then go to the survivor
                dead.kill()
                leased = leased_by(pg_schema, dead.name)
                acked_at_kill = sum(len(s.acked) for s in shops.values())
                shops[dead.name].url = f"{survivor.url}/orders"
                up[dead.name].set()
                killed.set()
                for fut in posting:
                    fut.result(timeout=120)
                took_over = survivor.wait_event(LEADING, 30)
                st.url = survivor.url  # /api/queues of any instance is the cluster's
                st.drain()
                acked = {**shops[a.name].acked, **shops[b.name].acked}
                row = measure(st, "7 two instances, SIGKILL one", sent={str(o["order_id"])
                                                                        for o in orders},
                              acked=acked, high=shops[a.name].high | shops[b.name].high,
                              posts=sum(s.posts for s in shops.values()))
                after = statuses(pg_schema, sorted(leased))
            finally:
                killed.set()
                pool.shutdown(wait=False, cancel_futures=True)
                for s in shops.values():
                    s.close()
        finally:
            a.kill()
            b.kill()
    twice = delivered_ids(a, SHEET_DEST) & delivered_ids(b, SHEET_DEST)  # sent by both
    row.notes.append(
        f"killed the Sheets leader {dead.name} after {acked_at_kill} of {n} acks with "
        f"{len(leased)} deliveries leased ({sorted(set(leased.values()))}); {survivor.name} "
        f"took the Sheets lock over ({took_over.get('lock')}) and reclaimed them; Sheet rows "
        f"logged as sent by both instances: {len(twice)}; duplicates: {row.dup_rows} "
        f"rows, {row.dup_sms} texts ({row.dup_sms_ambiguous} after an ambiguous attempt)")
    print(f"\ncluster SIGKILL: acked={row.acked} delivered={row.delivered} lost={row.lost} "
          f"leased_at_kill={len(leased)} duplicate_rows={row.dup_rows} "
          f"duplicate_sms={row.dup_sms} sheet_rows_sent_by_both={len(twice)}")
    row.require(row.acked == n, f"every order acknowledged in the end ({row.acked}/{n})")
    row.require(acked_at_kill < n, "orders were still to come at the kill")
    row.require(SHEET_DEST in leased.values(),
                f"the killed instance held a Sheets batch under lease ({leased})")
    row.require(all(s == "delivered" for s in after.values()),
                f"every delivery leased by the killed instance delivered by the survivor "
                f"({after})")
    row.require(row.lost == 0 and row.dead == 0, "0 acknowledged orders lost")
    row.require(row.sms_missing == 0,
                f"every high-value order texted to every on-call number "
                f"({row.sms_missing} missing)")
    finish(row)
