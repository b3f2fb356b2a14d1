"""``alertpipe dlq`` over a real SQLite store seeded directly, through ``main([...])``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cli_store_support import ON_CALL, with_store, write_config

from alertpipe.cli.main import main
from alertpipe.message import Message, utcnow
from alertpipe.store import AttemptResult, DeliveryRecord, NewDelivery, SQLiteStore

TOKEN = "dlq-test-auth-token-4f1d"
LONG_ERROR = ("Twilio 21211: The 'To' number +15558675310 is not a valid phone number "
              "[see https://www.twilio.com/docs/errors/21211] and more detail that is long")


def msg(n: int, amount: str) -> Message:
    return Message(id=f"msg-{n}", channel="orders",
                   received_at=datetime(2024, 5, 1, 12, n, tzinfo=UTC),
                   body={"order_id": f"A-{n}", "amount": Decimal(amount), "currency": "USD"})


@pytest.fixture
def seeded(tmp_path: Path) -> dict[str, Any]:
    """Order A-1 (sheet delivered; SMS to the first on-call number dead, to the second pending)
    and order A-2 (sheet dead)."""
    cfg = write_config(tmp_path, TOKEN)

    async def seed(s: SQLiteStore) -> dict[str, Any]:
        await s.enqueue(msg(1, "450.00"), [NewDelivery("audit_sheet"),
                                           NewDelivery("oncall_sms", ON_CALL[0]),
                                           NewDelivery("oncall_sms", ON_CALL[1])])
        await s.enqueue(msg(2, "120.50"), [NewDelivery("audit_sheet")])
        sheet1, sheet2 = await s.claim("orders", "audit_sheet", 10, 30, "w")
        sms = await s.claim("orders", "oncall_sms", 1, 30, "w")
        now = utcnow()
        await s.record([
            AttemptResult(sheet1.id, "w", "delivered", now, now, remote_id="Orders!A2"),
            AttemptResult(sheet2.id, "w", "dead", now, now, error="403 PERMISSION_DENIED",
                          error_code="403"),
            AttemptResult(sms[0].id, "w", "dead", now, now, error=LONG_ERROR,
                          error_code="21211", remote_id="SM123"),
        ])
        pending = next(d.id for d in (await s.get_message("msg-1")).deliveries  # type: ignore[union-attr]
                       if d.status == "pending")
        return {"cfg": str(cfg), "db": tmp_path / "a.db", "sms": sms[0].id,
                "sheet_dead": sheet2.id, "delivered": sheet1.id, "pending": pending}

    return with_store(tmp_path / "a.db", seed)


def delivery(seeded: dict[str, Any], i: int) -> DeliveryRecord:
    got = with_store(seeded["db"], lambda s: s.get_delivery(i))
    assert got is not None
    return got


def test_list_shows_dead_deliveries_with_their_errors(
        seeded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "list", "-c", seeded["cfg"]]) == 0
    out = capsys.readouterr().out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines()
             if line.count("│") > 5 and line.split("│")[1].strip().isdigit()}
    assert set(lines) == {str(seeded["sms"]), str(seeded["sheet_dead"])}
    sms = lines[str(seeded["sms"])]
    for text in ("orders", "oncall_sms", ON_CALL[0], "21211", "A-1",
                 "Twilio 21211: The 'To' number +15558675310 is not a"):
        assert text in sms
    assert "[see https" not in out and "…" in sms  # the long error is truncated
    sheet = lines[str(seeded["sheet_dead"])]
    assert "403 PERMISSION_DENIED" in sheet and "A-2" in sheet and "audit_sheet" in sheet
    assert "2 dead deliveries" in out
    assert TOKEN not in out


def test_list_filters_by_channel_and_limits(
        seeded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "-c", seeded["cfg"], "list", "--channel", "elsewhere"]) == 0
    assert "no dead deliveries in channel 'elsewhere'" in capsys.readouterr().out
    assert main(["dlq", "-c", seeded["cfg"], "list", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 dead delivery (limit reached" in out


def test_show_prints_delivery_message_and_attempts(
        seeded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "show", str(seeded["sms"]), "-c", seeded["cfg"]]) == 0
    out = capsys.readouterr().out
    assert f"delivery {seeded['sms']}" in out and "message msg-1" in out
    assert '"amount": 450.00' in out and '"order_id": "A-1"' in out  # pretty JSON, exact money
    assert "[21211] " + LONG_ERROR[:40] in out  # the whole error, not truncated
    assert "dead" in out and "SM123" in out and ON_CALL[0] in out
    assert TOKEN not in out


def test_show_unknown_delivery_exits_1(seeded: dict[str, Any],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "show", "9999", "-c", seeded["cfg"]]) == 1
    assert "delivery 9999 not found" in capsys.readouterr().err


def test_retry_makes_a_dead_delivery_pending(seeded: dict[str, Any],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    before = delivery(seeded, seeded["sms"])
    assert main(["dlq", "retry", str(seeded["sms"]), "-c", seeded["cfg"]]) == 0
    assert f"requeued delivery {seeded['sms']} (orders/oncall_sms → {ON_CALL[0]})" in (
        capsys.readouterr().out)
    after = delivery(seeded, seeded["sms"])
    assert after.status == "pending" and after.attempts == 1
    assert after.next_attempt_at >= before.updated_at  # due now
    assert delivery(seeded, seeded["sheet_dead"]).status == "dead"  # only the one named


def test_retry_reports_ids_not_found_or_not_dead(seeded: dict[str, Any],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["dlq", "retry", str(seeded["sheet_dead"]), str(seeded["delivered"]), "9999",
                 "-c", seeded["cfg"]])
    assert code == 1
    out, err = capsys.readouterr()
    assert f"requeued delivery {seeded['sheet_dead']}" in out
    assert f"delivery {seeded['delivered']} is delivered, not dead" in err
    assert "delivery 9999 not found" in err
    assert delivery(seeded, seeded["sheet_dead"]).status == "pending"
    assert delivery(seeded, seeded["delivered"]).status == "delivered"


def test_retry_all_requeues_every_dead_delivery(seeded: dict[str, Any],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "retry", "--all", "--channel", "other", "-c", seeded["cfg"]]) == 0
    assert "requeued 0 dead deliveries of channel 'other'" in capsys.readouterr().out
    assert main(["dlq", "retry", "--all", "-c", seeded["cfg"]]) == 0
    assert "requeued 2 dead deliveries" in capsys.readouterr().out
    assert with_store(seeded["db"], lambda s: s.list_dead()) == []
    assert delivery(seeded, seeded["sms"]).status == "pending"


def test_retry_needs_ids_or_all(seeded: dict[str, Any],
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "retry", "-c", seeded["cfg"]]) == 2
    assert "give the delivery ids to retry, or --all" in capsys.readouterr().err
    assert main(["dlq", "retry", "--all", str(seeded["sms"]), "-c", seeded["cfg"]]) == 2
    assert delivery(seeded, seeded["sms"]).status == "dead"


def test_discard(seeded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "discard", str(seeded["sheet_dead"]), "-c", seeded["cfg"]]) == 0
    assert f"discarded delivery {seeded['sheet_dead']}" in capsys.readouterr().out
    assert delivery(seeded, seeded["sheet_dead"]).status == "discarded"
    assert main(["dlq", "discard", str(seeded["sheet_dead"]), str(seeded["pending"]),
                 "-c", seeded["cfg"]]) == 1
    err = capsys.readouterr().err
    assert f"delivery {seeded['sheet_dead']} is discarded, not dead" in err
    assert f"delivery {seeded['pending']} is pending, not dead" in err
    assert main(["dlq", "list", "-c", seeded["cfg"]]) == 0
    out = capsys.readouterr().out
    assert "1 dead delivery" in out and "403 PERMISSION_DENIED" not in out


def test_a_missing_store_file_is_an_error_and_not_created(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, TOKEN)
    assert main(["dlq", "list", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "engine.store" in err
    assert not (tmp_path / "a.db").exists()
