"""An idle worker: it does not ask the store when work next falls due after every message, and
it still wakes on time for a retry it recorded itself."""

from __future__ import annotations

import asyncio
from typing import Any

from engine_support import Recorder, settings, settle

from alertpipe.config.model import AppSettings
from alertpipe.errors import RetryableError
from recording import running


def slow_poll() -> AppSettings:
    cfg = settings()
    return cfg.model_copy(update={"engine": cfg.engine.model_copy(
        update={"poll_interval_seconds": 30.0})})


async def test_a_worker_idling_after_each_message_does_not_ask_the_store_each_time() -> None:
    async with running(slow_poll()) as eng:
        asked: list[str] = []
        next_due = eng.store.next_due

        async def spy(channel: str, destination: str) -> Any:
            asked.append(destination)
            return await next_due(channel, destination)

        eng.store.next_due = spy  # type: ignore[method-assign]
        for n in range(8):  # one high-value order at a time: the SMS worker idles after each
            acc = await eng.accept("orders", {"order_id": f"A-{n}", "amount": "500"}, b"{}")
            await settle(eng, acc.message_id)
        sms = eng.channel("orders").destinations["sms"]
        assert isinstance(sms, Recorder) and len(sms.sent) == 16  # two recipients each
        assert asked.count("sms") <= 1  # one answer holds for the poll interval (30 s)


async def test_a_retry_the_worker_recorded_wakes_it_before_the_poll_interval() -> None:
    async with running(slow_poll()) as eng:
        sms = eng.channel("orders").destinations["sms"]
        assert isinstance(sms, Recorder)
        first = await eng.accept("orders", {"order_id": "A-0", "amount": "500"}, b"{}")
        await settle(eng, first.message_id)  # the worker now holds "nothing is due" for 30 s
        sms.script = [RetryableError("busy", retry_after=0.05)]
        acc = await eng.accept("orders", {"order_id": "A-1", "amount": "500"}, b"{}")
        await settle(eng, acc.message_id, timeout=10)  # not 30 s: the retry is due in ~0.05 s
        assert len(sms.sent) == 4 and sms.calls == 5


async def test_a_destination_that_is_not_ready_gets_no_claims_and_no_attempts() -> None:
    async with running(settings()) as eng:
        sms = eng.channel("orders").destinations["sms"]
        assert isinstance(sms, Recorder)
        sms.not_ready = 3600.0  # e.g. every recipient has hit the SMS cap for the hour
        acc = await eng.accept("orders", {"order_id": "A-1", "amount": "500"}, b"{}")
        for _ in range(3):  # the worker, woken by the new work, asks and claims nothing
            sms.asked.clear()
            await asyncio.wait_for(sms.asked.wait(), timeout=5)
        stored = await eng.store.get_message(acc.message_id)
        assert stored is not None
        assert [(d.destination, d.status, d.attempts) for d in stored.deliveries
                if d.destination == "sms"] == [("sms", "pending", 0), ("sms", "pending", 0)]
        assert sms.calls == 0
        sms.not_ready = 0.0
        eng.workers[("orders", "sms")].wake.set()
        await settle(eng, acc.message_id)
        assert len(sms.sent) == 2
