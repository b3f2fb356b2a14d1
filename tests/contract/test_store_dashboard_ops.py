"""Contract tests of the dashboard's store operations (the audit log and per-minute rates), run
over every Store implementation by the ``store`` fixture."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from alertpipe.message import Message, new_message_id, utcnow
from alertpipe.store import AttemptResult, NewDelivery, SQLiteStore, Store


def _minute(dt: datetime) -> datetime:
    return dt.replace(second=0, microsecond=0)


def _message(channel: str, at: datetime, n: int) -> Message:
    return Message(id=new_message_id(), channel=channel, received_at=at,
                   body={"order_id": f"R-{n}"})


async def test_audit_appends_and_lists_newest_first(store: Store) -> None:
    before = utcnow()
    first = await store.append_audit("ada", "operator", "view", "msg-1")
    second = await store.append_audit("ada", "operator", "resend", "msg-1",
                                      "destination=oncall_sms")
    third = await store.append_audit("root", "admin", "discard", "42", None)
    assert first < second < third
    entries = await store.list_audit()
    assert [e.id for e in entries] == [third, second, first]
    e = entries[1]
    assert (e.actor, e.role, e.action, e.target, e.detail) == (
        "ada", "operator", "resend", "msg-1", "destination=oncall_sms")
    assert e.at.tzinfo is not None and before - timedelta(seconds=1) <= e.at <= utcnow()
    assert entries[2].detail is None


async def test_audit_pages_back_with_before_id(store: Store) -> None:
    ids = [await store.append_audit("u", "viewer", "view", f"m-{i}") for i in range(7)]
    page = await store.list_audit(limit=3)
    assert [e.id for e in page] == ids[:-4:-1]
    page2 = await store.list_audit(limit=3, before_id=page[-1].id)
    assert [e.id for e in page2] == [ids[3], ids[2], ids[1]]
    page3 = await store.list_audit(limit=3, before_id=page2[-1].id)
    assert [e.id for e in page3] == [ids[0]]
    assert await store.list_audit(before_id=ids[0]) == []


async def test_audit_is_empty_at_first(store: Store) -> None:
    assert await store.list_audit() == []


async def test_audit_survives_a_reopen(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "a.db")
    await s.open()
    entry_id = await s.append_audit("ada", "admin", "channel.stop", "orders")
    await s.close()
    again = SQLiteStore(tmp_path / "a.db")
    await again.open()
    try:
        [entry] = await again.list_audit()
        assert (entry.id, entry.action, entry.target) == (entry_id, "channel.stop", "orders")
        assert await again.append_audit("ada", "admin", "channel.start", "orders") > entry_id
    finally:
        await again.close()


async def test_rates_count_received_delivered_failed_per_minute(store: Store) -> None:
    base = _minute(utcnow()) - timedelta(minutes=10)
    # Received: two in minute 0, one in minute 2; another channel's message is not counted.
    m0 = _message("orders", base + timedelta(seconds=5), 0)
    m1 = _message("orders", base + timedelta(seconds=50), 1)
    m2 = _message("orders", base + timedelta(minutes=2, seconds=1), 2)
    other = _message("refunds", base + timedelta(seconds=30), 3)
    for m in (m0, m1, m2):
        await store.enqueue(m, [NewDelivery("sheet")])
    await store.enqueue(other, [NewDelivery("sheet")])
    # Attempts: in minute 1 one retry and one dead; in minute 3 two delivered (one a retry of
    # an earlier failure).
    got = await store.claim("orders", "sheet", 10, 30, "w")
    assert len(got) == 3
    a, b, c = sorted(got, key=lambda d: d.message.received_at)
    t1 = base + timedelta(minutes=1, seconds=10)
    t3 = base + timedelta(minutes=3, seconds=59)

    def res(d_id: int, outcome: str, at: datetime, **kw: object) -> AttemptResult:
        return AttemptResult(delivery_id=d_id, lease_owner="w", outcome=outcome,  # type: ignore[arg-type]
                             started_at=at, finished_at=at, **kw)  # type: ignore[arg-type]

    assert await store.record([res(a.id, "retry", t1, error="503", next_attempt_at=t1),
                               res(b.id, "dead", t1, error="400"),
                               res(c.id, "delivered", t3)]) == 3
    [again] = await store.claim("orders", "sheet", 10, 30, "w")
    assert again.id == a.id
    assert await store.record([res(a.id, "delivered", t3)]) == 1
    [o] = await store.claim("refunds", "sheet", 10, 30, "w")
    assert await store.record([res(o.id, "dead", t1, error="x")]) == 1

    points = await store.rates("orders", base)
    assert [(p.minute, p.received, p.delivered, p.failed) for p in points] == [
        (base, 2, 0, 0),
        (base + timedelta(minutes=1), 0, 0, 2),
        (base + timedelta(minutes=2), 1, 0, 0),
        (base + timedelta(minutes=3), 0, 2, 0),
    ]
    assert all(p.minute.utcoffset() == timedelta(0) for p in points)
    # From ``since`` on: the message at +5 s is left out, its minute-mate at +50 s is not.
    later = await store.rates("orders", base + timedelta(seconds=10))
    assert [(p.minute, p.received) for p in later][:1] == [(base, 1)]
    assert await store.rates("orders", base + timedelta(minutes=4)) == []
    assert await store.rates("nosuch", base) == []
    assert [(p.received, p.failed) for p in await store.rates("refunds", base)] == [(1, 0),
                                                                                     (0, 1)]


async def test_rates_accept_since_in_another_timezone(store: Store) -> None:
    at = _minute(utcnow()) - timedelta(minutes=3) + timedelta(seconds=20)
    await store.enqueue(_message("orders", at, 0), [])
    tz = timezone(timedelta(hours=5, minutes=30))
    points = await store.rates("orders", (at - timedelta(minutes=1)).astimezone(tz))
    assert [(p.minute, p.received) for p in points] == [(_minute(at), 1)]
    assert points[0].minute.utcoffset() == timedelta(0)
