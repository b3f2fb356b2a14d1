"""One contract suite, run over every Store implementation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from alertpipe.message import Message, utcnow
from alertpipe.store import AttemptResult, NewDelivery, SQLiteStore, Store


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
    assert again.id == d.id and again.ambiguous is True  # the old holder may have sent it
    assert await store.record([result(d.id, "old", "delivered")]) == 0
    assert await store.record([result(d.id, "new", "delivered")]) == 1


async def test_release_returns_without_counting_an_attempt(store: Store) -> None:
    await store.enqueue(order(1), [NewDelivery("sheet")])
    (d,) = await store.claim("orders", "sheet", 1, 30, "w")
    await store.release([d.id], "w")
    (again,) = await store.claim("orders", "sheet", 1, 30, "w")
    assert again.id == d.id and again.attempts == 0
    assert again.ambiguous is True  # the send may have been cut off: check before resending


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


async def test_ambiguous_failure_is_remembered_for_the_next_attempt(store: Store) -> None:
    await store.enqueue(order(1), [NewDelivery("sheet")])
    (d,) = await store.claim("orders", "sheet", 1, 30, "w")
    assert d.ambiguous is False
    await store.record([result(d.id, "w", "retry", error="timeout", ambiguous=True,
                               next_attempt_at=utcnow())])
    (again,) = await store.claim("orders", "sheet", 1, 30, "w")
    assert again.ambiguous is True and again.attempts == 1


async def test_a_live_key_stores_one_message_even_when_concurrent(store: Store) -> None:
    from alertpipe.store import MessageKey
    key = MessageKey("dedupe", "A-1", ttl_seconds=3600, fingerprint="f1")
    msgs = [order(i) for i in range(20)]
    results = await asyncio.gather(*(store.enqueue(m, [NewDelivery("sheet")], [key])
                                     for m in msgs))
    created = [r for r in results if r.created]
    assert len(created) == 1
    winner = created[0].message_id
    assert all(r.message_id == winner and r.fingerprint == "f1" and r.conflict == key
               for r in results if not r.created)
    got = await store.claim("orders", "sheet", 100, 30, "w")
    assert [d.message.id for d in got] == [winner]


async def test_expired_key_and_other_kinds_do_not_conflict(store: Store) -> None:
    from alertpipe.store import MessageKey
    first = await store.enqueue(order(1), [], [MessageKey("dedupe", "A-1", ttl_seconds=-1)])
    again = await store.enqueue(order(2), [], [MessageKey("dedupe", "A-1", ttl_seconds=60)])
    other = await store.enqueue(order(3), [], [MessageKey("event", "A-1", ttl_seconds=60)])
    assert first.created and again.created and other.created


def ordered(n: int, ref: str, channel: str = "orders") -> Message:
    """An order as a channel de-duplicating on order_id stores it: with its ref."""
    return Message.new(channel, {"order_id": ref, "amount": Decimal("10.00")},
                       raw=b'{"order_id": "%s"}' % ref.encode(), ref=ref)


async def test_a_channels_dedupe_key_is_its_messages_ref(store: Store) -> None:
    """The key a channel derives from the business key, as ChannelRuntime.dedupe_key does."""
    from alertpipe.store import MessageKey

    def key(ref: str, ttl: float = 3600) -> MessageKey:
        return MessageKey("dedupe", ref, ttl_seconds=ttl)

    first = await store.enqueue(ordered(1, "R-1"), [NewDelivery("sheet")], [key("R-1")])
    burst = await asyncio.gather(*(store.enqueue(ordered(i, "R-2"), [NewDelivery("sheet")],
                                                 [key("R-2")]) for i in range(2, 12)))
    again = await store.enqueue(ordered(12, "R-1"), [NewDelivery("sheet")], [key("R-1")])
    elsewhere = await store.enqueue(ordered(13, "R-1", channel="other"), [], [key("R-1")])
    assert first.created and elsewhere.created
    assert not again.created and again.message_id == first.message_id
    assert again.conflict == key("R-1") and again.fingerprint is None
    assert sum(r.created for r in burst) == 1  # concurrent requests with one key: one message
    winner = next(r.message_id for r in burst if r.created)
    assert all(r.message_id == winner for r in burst)
    # once the window is over, the same business key is a new order
    late = await store.enqueue(ordered(14, "R-3"), [], [key("R-3", ttl=-1)])
    after = await store.enqueue(ordered(15, "R-3"), [], [key("R-3", ttl=-1)])
    assert late.created and after.created
    got = await store.claim("orders", "sheet", 100, 30, "w")
    assert sorted(d.message.id for d in got) == sorted([first.message_id, winner])


async def test_sqlite_keeps_dedupe_keys_in_the_message_row(tmp_path: Path) -> None:
    """SQLite finds a channel's dedupe key by the messages' ref index: no key row is written."""
    from alertpipe.store import MessageKey

    s = SQLiteStore(tmp_path / "r.db")
    await s.open()
    try:
        await s.enqueue(ordered(1, "R-1"), [], [MessageKey("dedupe", "R-1", 3600)])
        await s.enqueue(ordered(2, "R-2"), [], [MessageKey("idempotency", "K-2", 3600, "fp")])
        kinds = await s._write(lambda c: [r[0] for r in c.execute(
            "SELECT kind FROM message_keys")])
        assert kinds == ["idempotency"]
        dup = await s.enqueue(ordered(3, "R-1"), [], [MessageKey("dedupe", "R-1", 3600)])
        assert not dup.created
    finally:
        await s.close()


# -- operations for the dlq and replay commands -----------------------------------------------

def received(n: int, at: datetime, channel: str = "orders") -> Message:
    return Message(id=f"m-{channel}-{n}", channel=channel, received_at=at,
                   body={"order_id": f"A-{n}", "amount": Decimal("1.00")})


async def test_get_delivery_with_history(store: Store) -> None:
    await store.enqueue(order(1), [NewDelivery("sms", "+15551230001")])
    (d,) = await store.claim("orders", "sms", 1, 30, "w")
    await store.record([result(d.id, "w", "dead", error="21211 invalid To", error_code="21211")])
    got = await store.get_delivery(d.id)
    assert got is not None
    assert (got.id, got.message_id, got.channel, got.destination, got.target, got.status,
            got.attempts, got.last_error_code) == (d.id, d.message.id, "orders", "sms",
                                                   "+15551230001", "dead", 1, "21211")
    assert [(h.number, h.outcome, h.error) for h in got.history] == [
        (1, "dead", "21211 invalid To")]
    assert await store.get_delivery(d.id + 1000) is None


async def test_list_messages_between_since_inclusive_and_until_exclusive(store: Store) -> None:
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    for i in range(5):
        await store.enqueue(received(i, t0 + timedelta(hours=i)), [NewDelivery("sheet")])
    await store.enqueue(received(9, t0 + timedelta(hours=2), channel="other"), [])
    got = await store.list_messages("orders", since=t0 + timedelta(hours=1),
                                    until=t0 + timedelta(hours=3))
    assert [s.message.id for s in got] == ["m-orders-2", "m-orders-1"]  # newest first
    assert [s.message.id for s in await store.list_messages(since=t0 + timedelta(hours=4))] == [
        "m-orders-4"]
    assert [s.message.id for s in await store.list_messages(
        "orders", until=t0 + timedelta(hours=1))] == ["m-orders-0"]
    both = await store.list_messages(since=t0 + timedelta(hours=2), until=t0 + timedelta(hours=3))
    assert sorted(s.message.id for s in both) == ["m-orders-2", "m-other-9"]
    limited = await store.list_messages("orders", limit=2, since=t0)
    assert [s.message.id for s in limited] == ["m-orders-4", "m-orders-3"]
    assert await store.list_messages("orders", since=t0 + timedelta(hours=3),
                                     until=t0 + timedelta(hours=3)) == []


async def test_add_deliveries_replays_an_existing_message(store: Store) -> None:
    from alertpipe.store import MessageKey
    m = order(1, "450.00")
    await store.enqueue(m, [NewDelivery("sheet")], [MessageKey("dedupe", "A-1", 3600)])
    (first,) = await store.claim("orders", "sheet", 1, 30, "w")
    await store.record([result(first.id, "w", "delivered", remote_id="Orders!A2")])
    ids = await store.add_deliveries(m.id, [NewDelivery("sms", "+15551230001"),
                                            NewDelivery("sms", "+15551230002"),
                                            NewDelivery("sheet")])
    assert len(ids) == 3 and len(set(ids)) == 3 and first.id not in ids
    stored = await store.get_message(m.id)
    assert stored is not None and stored.status == "accepted"
    by_id = {d.id: d for d in stored.deliveries}
    assert by_id[first.id].status == "delivered"  # the original is untouched
    assert [(by_id[i].destination, by_id[i].target, by_id[i].status, by_id[i].attempts)
            for i in ids] == [("sms", "+15551230001", "pending", 0),
                              ("sms", "+15551230002", "pending", 0), ("sheet", None, "pending", 0)]
    sms = await store.claim("orders", "sms", 10, 30, "w")  # due now
    assert sorted(d.id for d in sms) == sorted(ids[:2])
    assert all(d.message.id == m.id and d.message.body["amount"] == Decimal("450.00")
               for d in sms)
    (sheet,) = await store.claim("orders", "sheet", 10, 30, "w")
    assert sheet.id == ids[2] and sheet.attempts == 0


async def test_add_deliveries_to_an_unknown_message_is_a_usage_error(store: Store) -> None:
    from alertpipe.errors import UsageError
    with pytest.raises(UsageError, match="no-such-id"):
        await store.add_deliveries("no-such-id", [NewDelivery("sheet")])
    assert await store.stats() == []


async def test_requeue_dead_requeues_every_dead_delivery_of_a_channel(store: Store) -> None:
    await store.enqueue(order(1), [NewDelivery("sheet"), NewDelivery("sms", "+15551230001")])
    await store.enqueue(order(2), [NewDelivery("sheet")])
    await store.enqueue(order(3), [NewDelivery("sheet")])
    await store.enqueue(received(4, utcnow(), channel="other"), [NewDelivery("sheet")])
    a, b, c = await store.claim("orders", "sheet", 10, 30, "w")
    (s,) = await store.claim("orders", "sms", 10, 30, "w")
    (o,) = await store.claim("other", "sheet", 10, 30, "w")
    await store.record([result(a.id, "w", "dead", error="x"), result(b.id, "w", "dead"),
                        result(c.id, "w", "delivered"), result(s.id, "w", "dead"),
                        result(o.id, "w", "dead")])
    assert await store.discard(b.id) is True
    assert await store.requeue_dead("orders") == 2  # a and s; b is discarded, c delivered
    statuses = {i: (await store.get_delivery(i)).status  # type: ignore[union-attr]
                for i in (a.id, b.id, c.id, s.id, o.id)}
    assert statuses == {a.id: "pending", b.id: "discarded", c.id: "delivered",
                        s.id: "pending", o.id: "dead"}
    (again,) = await store.claim("orders", "sheet", 10, 30, "w")
    assert again.id == a.id and again.attempts == 1
    assert await store.requeue_dead() == 1  # the other channel's
    assert await store.requeue_dead() == 0
    assert await store.list_dead() == []


async def test_sqlite_prunes_expired_keys(tmp_path: Path) -> None:
    from alertpipe.store import MessageKey
    from alertpipe.store.sqlite import KEY_PRUNE_INTERVAL

    s = SQLiteStore(tmp_path / "k.db")
    await s.open()
    try:
        await s.enqueue(order(1), [], [MessageKey("dedupe", "A-1", ttl_seconds=-1)])
        await s.enqueue(order(2), [], [MessageKey("dedupe", "A-2", ttl_seconds=60)])
        count = "SELECT COUNT(*) FROM message_keys"
        assert await s._write(lambda c: c.execute(count).fetchone()[0]) == 2  # not due yet
        s._pruned_at -= KEY_PRUNE_INTERVAL
        await s.enqueue(order(3), [], [MessageKey("dedupe", "A-3", ttl_seconds=60)])
        keys = await s._write(lambda c: [r[0] for r in c.execute("SELECT key FROM message_keys")])
        assert sorted(keys) == ["A-2", "A-3"]
    finally:
        await s.close()
