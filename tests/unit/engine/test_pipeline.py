"""The engine end to end in-process: steps, routing, outbox rows, workers, retries, dead letters."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from engine_support import Recorder, settings, settle

from alertpipe.engine import Engine
from alertpipe.errors import PermanentError, RetryableError, ValidationFailed
from alertpipe.store import MemoryStore


def dest(engine: Engine, name: str) -> Recorder:
    d = engine.channels["orders"].destinations[name]
    assert isinstance(d, Recorder)
    return d


@pytest.mark.parametrize(("amount", "high"), [("300", False), ("300.00", False),
                                              ("300.01", True), (Decimal("1250"), True)])
async def test_threshold_boundary_routes(engine: Engine, amount: object, high: bool) -> None:
    acc = await engine.accept("orders", {"order_id": "A-1", "amount": amount}, b"{}")
    assert acc.routes == (("sheet", "sms") if high else ("sheet",))
    assert acc.deliveries == (3 if high else 1)  # one SMS row per on-call number
    await settle(engine, acc.message.id)
    assert len(dest(engine, "sms").sent) == (2 if high else 0)
    assert {d.target for d in dest(engine, "sms").sent} == ({"+15550001", "+15550002"}
                                                             if high else set())


async def test_invalid_order_is_not_queued(engine: Engine) -> None:
    with pytest.raises(ValidationFailed) as info:
        await engine.accept("orders", {"order_id": "A-1", "amount": True}, b"{}")
    assert [e.field for e in info.value.errors] == ["amount"]
    assert await engine.store.list_messages() == []


async def test_body_fields_cannot_override_channel_vars(engine: Engine) -> None:
    acc = await engine.accept("orders", {"order_id": "A-2", "amount": "10", "threshold": 1},
                              b"{}")
    assert acc.routes == ("sheet",)


async def test_retryable_error_is_retried_then_delivered(engine: Engine) -> None:
    sheet = dest(engine, "sheet")
    sheet.script = [RetryableError("429 quota", retry_after=0.01, code=429), None]
    acc = await engine.accept("orders", {"order_id": "A-3", "amount": "5"}, b"{}")
    await settle(engine, acc.message.id)
    stored = await engine.store.get_message(acc.message.id)
    assert stored is not None
    (d,) = stored.deliveries
    assert (d.status, d.attempts, d.remote_id) == ("delivered", 2, f"r-{d.id}")
    assert [h.outcome for h in d.history] == ["retry", "delivered"]
    assert d.history[0].error_code == "429"


async def test_permanent_error_dead_letters_at_once(engine: Engine) -> None:
    dest(engine, "sheet").script = [PermanentError("404 Requested entity was not found.",
                                                   code=404)]
    acc = await engine.accept("orders", {"order_id": "A-4", "amount": "5"}, b"{}")
    await settle(engine, acc.message.id)
    (dead,) = await engine.store.list_dead()
    assert dead.attempts == 1 and "Requested entity was not found" in (dead.last_error or "")


async def test_exhausted_retries_dead_letter(engine: Engine) -> None:
    dest(engine, "sheet").script = [RetryableError("503")] * 3
    acc = await engine.accept("orders", {"order_id": "A-5", "amount": "5"}, b"{}")
    await settle(engine, acc.message.id)
    (dead,) = await engine.store.list_dead()
    assert dead.attempts == 3 and "gave up after 3 attempts" in (dead.last_error or "")


async def test_burst_is_batched(engine: Engine) -> None:
    sheet = dest(engine, "sheet")
    accs = await asyncio.gather(*(engine.accept("orders", {"order_id": f"B-{i}", "amount": "1"},
                                                b"{}") for i in range(300)))
    for a in accs:
        await settle(engine, a.message.id)
    assert len(sheet.sent) == 300
    assert sheet.calls <= 10  # batches of up to 100, not one call per order


async def test_filter_step_stores_but_does_not_deliver() -> None:
    s = settings(steps=[{"validate": "order"}, {"filter": 'currency == "USD"'}])
    eng = Engine(s, store=MemoryStore())
    await eng.start()
    try:
        acc = await eng.accept("orders", {"order_id": "E-1", "amount": "5", "currency": "EUR"},
                               b"{}")
        stored = await eng.store.get_message(acc.message.id)
        assert stored is not None and stored.status == "filtered" and acc.deliveries == 0
    finally:
        await eng.stop()


async def test_pending_deliveries_resume_after_restart(tmp_path: object) -> None:
    store = MemoryStore()
    first = Engine(settings(), store=store)
    await first.start()
    dest(first, "sheet").script = [RetryableError("down")] * 1
    # stop before anything is delivered: the worker releases or leaves the row pending
    await first.stop()
    acc = await first.channels["orders"].accept({"order_id": "R-1", "amount": "5"}, b"{}")
    second = Engine(settings(), store=store)
    await second.start()
    try:
        await settle(second, acc.message.id)
        assert [d.message.id for d in dest(second, "sheet").sent] == [acc.message.id]
    finally:
        await second.stop()


async def test_user_python_step_can_change_and_drop() -> None:
    s = settings(steps=[{"validate": "order"}, {"python": "engine_support:tag_region"}])
    eng = Engine(s, store=MemoryStore())
    await eng.start()
    try:
        kept = await eng.accept("orders", {"order_id": "P-1", "amount": "5", "currency": "EUR"},
                                b"{}")
        assert kept.message.body["region"] == "emea"
        assert kept.deliveries == 3  # no route step: every destination, one SMS row per number
        dropped = await eng.accept("orders", {"order_id": "TEST-1", "amount": "5"}, b"{}")
        assert dropped.deliveries == 0
    finally:
        await eng.stop()


def test_python_step_reference_errors_are_clear() -> None:
    from alertpipe.errors import ConfigError
    for ref, fragment in [("nosuchmodule_xyz:f", "cannot import module"),
                          ("engine_support:nope", "has no attribute"),
                          ("engine_support", "expected 'package.module:function'")]:
        with pytest.raises(ConfigError) as info:
            Engine(settings(steps=[{"python": ref}]), store=MemoryStore())
        assert fragment in str(info.value) and info.value.key == "steps.0.python"
