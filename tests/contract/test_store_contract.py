"""One contract suite, run over every Store implementation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from alertpipe.message import Message, utcnow
from alertpipe.store import AttemptResult, MemoryStore, NewDelivery, SQLiteStore, Store


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def order(n: int, amount: str = "10.00") -> Message:
    return Message.new("orders", {"order_id": f"A-{n}", "amount": Decimal(amount)},
                       raw=b'{"order_id": "A-%d"}' % n, meta={"remote": "127.0.0.1"})


def result(d_id: int, owner: str, outcome: str, **kw: object) -> AttemptResult:
    now = utcnow()
    return AttemptResult(delivery_id=d_id, lease_owner=owner, outcome=outcome,  # type: ignore[arg-type]
                         started_at=now, finished_at=now, **kw)  # type: ignore[arg-type]


async def test_enqueue_then_claim_returns_message_exactly(store: Store) -> None:
    m = order(1, "300.01")
    await store.enqueue(m, [NewDelivery("sheet"), NewDelivery("sms", "+15551230001")])
    got = await store.claim("orders", "sheet", 10, 30, "w1")
    assert [d.message.id for d in got] == [m.id]
    assert got[0].message.body["amount"] == Decimal("300.01")
    assert got[0].message.raw == m.raw
    assert got[0].message.received_at == m.received_at.replace(
        microsecond=m.received_at.microsecond)
    sms = await store.claim("orders", "sms", 10, 30, "w1")
    assert [(d.target, d.attempts) for d in sms] == [("+15551230001", 0)]
    assert await store.claim("orders", "sheet", 10, 30, "w2") == []  # leased


async def test_filtered_message_has_no_deliveries(store: Store) -> None:
    m = order(2)
    await store.enqueue(m, [])
    stored = await store.get_message(m.id)
    assert stored is not None and stored.status == "filtered" and stored.deliveries == []


async def test_claim_is_oldest_first_and_limited(store: Store) -> None:
    msgs = [order(i) for i in range(5)]
    for m in msgs:
        await store.enqueue(m, [NewDelivery("sheet")])
    first = await store.claim("orders", "sheet", 3, 30, "w")
    rest = await store.claim("orders", "sheet", 10, 30, "w")
    assert [d.message.id for d in first + rest] == [m.id for m in msgs]


async def test_record_delivered_retry_dead(store: Store) -> None:
    for i in range(3):
        await store.enqueue(order(i), [NewDelivery("sheet")])
    a, b, c = await store.claim("orders", "sheet", 10, 30, "w")
    later = utcnow() + timedelta(hours=1)
    n = await store.record([
        result(a.id, "w", "delivered", remote_id="Sheet1!A2"),
        result(b.id, "w", "retry", error="429 quota", error_code="429", next_attempt_at=later),
        result(c.id, "w", "dead", error="404 not found", error_code="404"),
    ])
    assert n == 3
    sa = await store.get_message(a.message.id)
    assert sa is not None
    da = sa.deliveries[0]
    assert (da.status, da.attempts, da.remote_id) == ("delivered", 1, "Sheet1!A2")
    assert [h.outcome for h in da.history] == ["delivered"]
    sb = await store.get_message(b.message.id)
    assert sb is not None and sb.deliveries[0].status == "pending"
    assert sb.deliveries[0].last_error == "429 quota"
    # not due yet, so not claimable; next_due says when
    assert await store.claim("orders", "sheet", 10, 30, "w") == []
    due = await store.next_due("orders", "sheet")
    assert due is not None and abs((due - later).total_seconds()) < 0.01
    dead = await store.list_dead()
    assert [d.id for d in dead] == [c.id] and dead[0].last_error_code == "404"


async def test_result_from_lost_lease_is_ignored(store: Store) -> None:
    await store.enqueue(order(1), [NewDelivery("sheet")])
    (d,) = await store.claim("orders", "sheet", 1, -1.0, "old")  # a lease that has lapsed
    (again,) = await store.claim("orders", "sheet", 1, 30, "new")
    assert again.id == d.id
    assert await store.record([result(d.id, "old", "delivered")]) == 0
    assert await store.record([result(d.id, "new", "delivered")]) == 1


async def test_release_returns_without_counting_an_attempt(store: Store) -> None:
    await store.enqueue(order(1), [NewDelivery("sheet")])
    (d,) = await store.claim("orders", "sheet", 1, 30, "w")
    await store.release([d.id], "w")
    (again,) = await store.claim("orders", "sheet", 1, 30, "w")
    assert again.id == d.id and again.attempts == 0


async def test_requeue_and_discard_dead(store: Store) -> None:
    await store.enqueue(order(1), [NewDelivery("sheet")])
    await store.enqueue(order(2), [NewDelivery("sheet")])
    a, b = await store.claim("orders", "sheet", 10, 30, "w")
    await store.record([result(a.id, "w", "dead", error="x"), result(b.id, "w", "dead", error="y")])
    assert await store.requeue(a.id) is True
    assert await store.discard(b.id) is True
    assert await store.discard(b.id) is False
    (again,) = await store.claim("orders", "sheet", 10, 30, "w")
    assert again.id == a.id and again.attempts == 1
    assert await store.list_dead() == []


async def test_stats_and_listing(store: Store) -> None:
    ms = [order(i) for i in range(3)]
    for m in ms:
        await store.enqueue(m, [NewDelivery("sheet")])
    (d, *_) = await store.claim("orders", "sheet", 1, 30, "w")
    await store.record([result(d.id, "w", "delivered")])
    (st,) = await store.stats()
    assert (st.destination, st.pending, st.delivered, st.in_flight) == ("sheet", 2, 1, 0)
    assert st.oldest_pending_at is not None
    listed = await store.list_messages("orders", limit=2)
    assert [s.message.id for s in listed] == [ms[2].id, ms[1].id]
    await store.ping()


async def test_concurrent_enqueues_all_land(store: Store) -> None:
    msgs = [order(i) for i in range(200)]
    await asyncio.gather(*(store.enqueue(m, [NewDelivery("sheet")]) for m in msgs))
    got = await store.claim("orders", "sheet", 1000, 30, "w")
    assert sorted(d.message.id for d in got) == sorted(m.id for m in msgs)


async def test_sqlite_groups_concurrent_commits(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "g.db")
    await s.open()
    try:
        await asyncio.gather(*(s.enqueue(order(i), [NewDelivery("sheet")]) for i in range(500)))
        groups, ops = s.commit_stats
        assert ops >= 500 and groups < ops  # many operations shared a commit
    finally:
        await s.close()


async def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    s = SQLiteStore(path)
    await s.open()
    m = order(7, "349.99")
    await s.enqueue(m, [NewDelivery("sheet")])
    await s.claim("orders", "sheet", 1, -1.0, "crashed-worker")
    await s.close()
    s2 = SQLiteStore(path)
    await s2.open()
    try:
        (d,) = await s2.claim("orders", "sheet", 1, 30, "w")  # the lapsed lease is reclaimed
        assert d.message.id == m.id and d.message.body["amount"] == Decimal("349.99")
    finally:
        await s2.close()
