"""``alertpipe replay`` over a real SQLite store seeded directly, through ``main([...])``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cli_store_support import ON_CALL, with_store, write_config

from alertpipe.cli.main import main
from alertpipe.cli.replay import parse_time
from alertpipe.errors import UsageError
from alertpipe.message import Message, utcnow
from alertpipe.store import AttemptResult, MessageKey, NewDelivery, SQLiteStore, StoredMessage

TOKEN = "replay-test-auth-token-77aa"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def msg(n: int, amount: str, minutes: int) -> Message:
    return Message(id=f"msg-{n}", channel="orders", received_at=T0 + timedelta(minutes=minutes),
                   body={"order_id": f"A-{n}", "amount": Decimal(amount), "currency": "USD"})


@pytest.fixture
def seeded(tmp_path: Path) -> dict[str, Any]:
    """At 12:00 A-1 ($120.50, sheet only, delivered); at 12:10 A-2 ($450, sheet and one SMS per
    on-call number, the SMS dead); at 12:20 A-3 ($999, filtered at intake); at 13:00 A-4 ($800,
    sheet only). A-2 carries a live dedupe key."""
    cfg = write_config(tmp_path, TOKEN, threshold=300)

    async def seed(s: SQLiteStore) -> None:
        await s.enqueue(msg(1, "120.50", 0), [NewDelivery("audit_sheet")])
        await s.enqueue(msg(2, "450.00", 10), [NewDelivery("audit_sheet")] + [
            NewDelivery("oncall_sms", n) for n in ON_CALL], [MessageKey("dedupe", "A-2", 3600)])
        await s.enqueue(msg(3, "999.00", 20), [])
        await s.enqueue(msg(4, "800.00", 60), [NewDelivery("audit_sheet")])
        (d1, *_) = await s.claim("orders", "audit_sheet", 1, 30, "w")
        sms = await s.claim("orders", "oncall_sms", 10, 30, "w")
        now = utcnow()
        await s.record([AttemptResult(d1.id, "w", "delivered", now, now)] + [
            AttemptResult(d.id, "w", "dead", now, now, error="timeout") for d in sms])

    with_store(tmp_path / "a.db", seed)
    return {"cfg": str(cfg), "db": tmp_path / "a.db"}


def snapshot(seeded: dict[str, Any]) -> list[StoredMessage]:
    return with_store(seeded["db"], lambda s: s.list_messages(limit=100))


def rows(out: str) -> list[list[str]]:
    """The body rows of the printed table, as lists of cell texts."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines()
            if line.startswith("│")]


def test_dry_run_names_recipients_and_changes_nothing(
        seeded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(seeded)
    assert main(["replay", "-c", seeded["cfg"], "--channel", "orders",
                 "--since", "2024-05-01T12:00", "--until", "2024-05-01T12:30", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert snapshot(seeded) == before
    got = [(r[0], r[1], r[3], r[4], r[5]) for r in rows(out)]
    assert got == [  # oldest first; each message to the destinations it originally had
        ("msg-1", "A-1", "audit_sheet", "", "sheet sheet-1 Orders!A:G"),
        ("msg-2", "A-2", "audit_sheet", "", "sheet sheet-1 Orders!A:G"),
        ("msg-2", "A-2", "oncall_sms", ON_CALL[0], f"SMS to {ON_CALL[0]}"),
        ("msg-2", "A-2", "oncall_sms", ON_CALL[1], f"SMS to {ON_CALL[1]}"),
    ]
    assert "2024-05-01 12:10:00Z" in out
    assert "dry run: would add 4 deliveries for 2 messages" in out and "nothing was written" in out
    assert "1 matching message(s) had no delivery to repeat" in out  # A-3, filtered at intake
    assert TOKEN not in out


def test_where_and_to_add_rows_only_for_matching_messages(
        seeded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    originals = {d.id for s in snapshot(seeded) for d in s.deliveries}
    code = main(["replay", "-c", seeded["cfg"], "--channel", "orders", "--since", "2024-05-01",
                 "--until", "2024-05-01T12:30", "--where", "amount > 300 and amount < 900",
                 "--to", "oncall_sms"])
    assert code == 0
    out = capsys.readouterr().out
    after = {s.message.id: s for s in snapshot(seeded)}
    new = [d for d in after["msg-2"].deliveries if d.id not in originals]
    assert all(d.status == "pending" for d in new)
    assert sorted((d.destination, d.target, d.attempts) for d in new) == [
        ("oncall_sms", ON_CALL[0], 0), ("oncall_sms", ON_CALL[1], 0)]
    assert len(after["msg-2"].deliveries) == 5  # 3 originals (the dedupe key did not block)
    assert [len(after[m].deliveries) for m in ("msg-1", "msg-3", "msg-4")] == [1, 0, 1]
    printed = rows(out)
    assert [(r[0], r[4], r[6]) for r in printed] == [("msg-2", n, str(d.id))
                                                     for n, d in zip(ON_CALL, new, strict=True)]
    assert "added 2 deliveries for 1 message of channel 'orders'" in out


def test_channel_vars_are_visible_to_where(seeded: dict[str, Any],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "-c", seeded["cfg"], "--channel", "orders", "--all-time",
                 "--where", "amount > threshold", "--to", "audit_sheet", "--dry-run"]) == 0
    assert [r[0] for r in rows(capsys.readouterr().out)] == ["msg-2", "msg-3", "msg-4"]


def test_unknown_destination_is_a_clear_error(seeded: dict[str, Any],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(seeded)
    assert main(["replay", "-c", seeded["cfg"], "--channel", "orders", "--since", "2024-05-01",
                 "--to", "pager"]) == 2
    err = capsys.readouterr().err
    assert "--to 'pager'" in err and "audit_sheet, oncall_sms" in err
    assert snapshot(seeded) == before


def test_refuses_without_since_unless_all_time(seeded: dict[str, Any],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(seeded)
    assert main(["replay", "-c", seeded["cfg"], "--channel", "orders"]) == 2
    assert "refusing to replay without --since" in capsys.readouterr().err
    assert snapshot(seeded) == before
    assert main(["replay", "-c", seeded["cfg"], "--channel", "orders", "--all-time",
                 "--to", "audit_sheet"]) == 0
    assert "added 4 deliveries for 4 messages" in capsys.readouterr().out
    after = {s.message.id: s for s in snapshot(seeded)}
    assert [len(after[f"msg-{i}"].deliveries) for i in range(1, 5)] == [2, 4, 1, 2]


def test_window_is_since_inclusive_until_exclusive(seeded: dict[str, Any],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # A-2 was received at exactly 12:10Z and A-4 at exactly 13:00Z (= 14:00+01:00)
    assert main(["replay", "-c", seeded["cfg"], "--channel", "orders", "--dry-run",
                 "--since", "2024-05-01T12:10:00Z", "--until", "2024-05-01T14:00:00+01:00"]) == 0
    assert sorted({r[0] for r in rows(capsys.readouterr().out)}) == ["msg-2"]
    assert main(["replay", "-c", seeded["cfg"], "--channel", "orders", "--dry-run",
                 "--since", "2024-05-01T12:10:00.000001Z", "--until", "2024-05-01T13:00:00.000001"
                 ]) == 0
    assert sorted({r[0] for r in rows(capsys.readouterr().out)}) == ["msg-4"]


def test_limit_replays_the_oldest_and_says_where_to_continue(
        seeded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "-c", seeded["cfg"], "--channel", "orders", "--since", "2024-05-01",
                 "--to", "audit_sheet", "--limit", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert [r[0] for r in rows(out)] == ["msg-1", "msg-2"]
    assert "2 more matching message(s); continue with --since 2024-05-01T12:20:00+00:00" in out


def test_a_where_that_cannot_evaluate_writes_nothing(
        seeded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(seeded)
    assert main(["replay", "-c", seeded["cfg"], "--channel", "orders", "--since", "2024-05-01",
                 "--where", "currency > 3"]) == 2
    assert "--where on message msg-" in capsys.readouterr().err
    assert main(["replay", "-c", seeded["cfg"], "--channel", "orders", "--since", "2024-05-01",
                 "--where", "__import__('os')"]) == 2
    assert "--where" in capsys.readouterr().err
    assert snapshot(seeded) == before


def test_nothing_matches(seeded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "-c", seeded["cfg"], "--channel", "orders",
                 "--since", "2024-06-01"]) == 0
    assert "nothing to replay: 0 message(s)" in capsys.readouterr().out


def test_parse_time() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_time("-2h", now) == now - timedelta(hours=2)
    assert parse_time("30m", now) == now - timedelta(minutes=30)
    assert parse_time("1d ago", now) == now - timedelta(days=1)
    assert parse_time("now", now) == now
    assert parse_time("2024-04-30", now) == datetime(2024, 4, 30, tzinfo=UTC)
    assert parse_time("2024-04-30T08:15", now) == datetime(2024, 4, 30, 8, 15, tzinfo=UTC)
    got = parse_time("2024-04-30T08:15+02:00", now)
    assert got == datetime(2024, 4, 30, 6, 15, tzinfo=UTC) and got.tzinfo == UTC
    assert parse_time("2024-04-30T08:15Z", now) == datetime(2024, 4, 30, 8, 15, tzinfo=UTC)
    with pytest.raises(UsageError, match="--since 'yesterday'"):
        parse_time("yesterday", now, "--since")


def test_relative_since_through_the_command_line(
        seeded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "-c", seeded["cfg"], "--channel", "orders", "--since=-2h",
                 "--dry-run"]) == 0  # every seeded message is long before two hours ago
    assert "nothing to replay" in capsys.readouterr().out
