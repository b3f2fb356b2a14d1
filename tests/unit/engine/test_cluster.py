"""Several engines on one store, in one process: an exclusive destination is sent to by one
instance at a time and passes to another when its holder stops or loses its session; work made
due on one instance wakes another's idle worker (PostgreSQL's NOTIFY); a client waiting on one
instance (``Prefer: wait``) hears of an outcome another instance recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from engine_support import Recorder, settings

from alertpipe.config.model import AppSettings
from alertpipe.destinations import REGISTRY
from alertpipe.engine import Engine
from alertpipe.store import MemoryStore, Store
from alertpipe.store.postgres import PostgresStore
from pg_support import Schema, lock_holder, pg_schema, pg_url, terminate

__all__ = ["pg_schema", "pg_url"]
SHEET = ("orders", "sheet")


class ExclusiveRecorder(Recorder):
    """A recorder that, like Google Sheets, is sent to by one instance of a cluster."""

    type_name: ClassVar[str] = "exclusive_recorder"
    exclusive: ClassVar[bool] = True


REGISTRY["exclusive_recorder"] = ExclusiveRecorder


def cluster_settings(instance: str, *, poll: float = 0.05, sheet: str = "exclusive_recorder",
                     store: str = "memory://") -> AppSettings:
    data = settings(destinations={
        "sheet": {"type": sheet, "batch_size": 100},
        "sms": {"type": "recorder", "targets": ["+15550001"]}}).model_dump(mode="json")
    data["engine"].update(instance_id=instance, poll_interval_seconds=poll, store=store)
    return AppSettings.model_validate(data)


def recorder(engine: Engine, key: tuple[str, str] = SHEET) -> Recorder:
    dest = engine.channels[key[0]].destinations[key[1]]
    assert isinstance(dest, Recorder)
    return dest


@asynccontextmanager
async def engines(*pairs: tuple[AppSettings, Store]) -> AsyncIterator[list[Engine]]:
    started: list[Engine] = []
    try:
        for cfg, store in pairs:
            eng = Engine(cfg, store=store)
            await eng.start()
            started.append(eng)
        yield started
    finally:
        for eng in started:
            if eng.started:
                await eng.stop()


async def accept(engine: Engine, order_id: str, amount: str = "20") -> str:
    return (await engine.accept("orders", {"order_id": order_id, "amount": amount},
                                b"{}")).message_id


async def settled(cluster: Sequence[Engine], ids: Sequence[str], timeout: float = 10) -> None:
    """Wait until every delivery of ``ids`` is final, woken by whichever engine records."""
    ev = asyncio.Event()
    for eng in cluster:
        for mid in ids:
            eng.watch(mid, ev)
    try:
        async with asyncio.timeout(timeout):
            while not all([(await cluster[0].outcome(mid))[0] for mid in ids]):
                await ev.wait()
                ev.clear()
    finally:
        for eng in cluster:
            for mid in ids:
                eng.forget_waiter(mid, ev)


def sent_ids(rec: Recorder) -> set[str]:
    return {d.message.id for d in rec.sent}


def leader_of(cluster: Sequence[Engine]) -> tuple[Engine, Engine]:
    leading = [e for e in cluster if e.workers[SHEET].leading]
    assert len(leading) == 1, [(e.instance_id, e.workers[SHEET].leading) for e in cluster]
    return leading[0], next(e for e in cluster if e is not leading[0])


async def test_an_exclusive_destination_is_sent_to_by_one_instance() -> None:
    store = MemoryStore()
    async with engines((cluster_settings("a"), store), (cluster_settings("b"), store)) as cl:
        a, b = cl
        ids = [await accept(e, f"X-{i}", "500" if i % 2 else "20")
               for i, e in enumerate([a, b, a, b, a, b])]
        await settled(cl, ids)
        leader, follower = leader_of(cl)
        assert follower.workers[SHEET].leading is False
        assert sent_ids(recorder(leader)) == set(ids)  # rows from both instances, one batcher
        assert recorder(follower).calls == 0
        texted = sent_ids(recorder(a, ("orders", "sms"))) | sent_ids(recorder(b, ("orders",
                                                                                "sms")))
        assert texted == set(ids[1::2])  # SMS is not exclusive: either instance sends

        await leader.stop()  # gives the lock up: the other instance takes over on its poll
        later = [await accept(follower, f"Y-{i}") for i in range(3)]
        await settled([follower], later)
        assert sent_ids(recorder(follower)) == set(later)
        assert follower.workers[SHEET].leading is True


async def test_a_non_exclusive_destination_is_shared() -> None:
    store = MemoryStore()
    async with engines((cluster_settings("a", sheet="recorder"), store),
                       (cluster_settings("b", sheet="recorder"), store)) as cl:
        ids = [await accept(e, f"S-{i}") for i, e in enumerate(cl * 3)]
        await settled(cl, ids)
        assert all(e.workers[SHEET].lock_name is None for e in cl)
        a_ids, b_ids = sent_ids(recorder(cl[0])), sent_ids(recorder(cl[1]))
        assert a_ids | b_ids == set(ids) and not a_ids & b_ids


async def test_instances_have_their_own_identity_in_leases_and_readiness() -> None:
    store = MemoryStore()
    async with engines((cluster_settings("a"), store), (cluster_settings("b"), store)) as cl:
        assert [e.instance_id for e in cl] == ["a", "b"]
        assert cl[1].workers[SHEET].owner.startswith("b-orders-sheet-")
        ok, detail = await cl[1].readiness()
        assert ok and detail["instance"] == "b"


def test_the_default_identity_is_hostname_and_pid(monkeypatch: Any) -> None:
    import os
    import socket

    monkeypatch.delenv("ALERTPIPE_INSTANCE_ID", raising=False)
    assert Engine(settings()).instance_id == f"{socket.gethostname()}-{os.getpid()}"
    monkeypatch.setenv("ALERTPIPE_INSTANCE_ID", "eu-1")
    assert Engine(settings()).instance_id == "eu-1"


# -- on PostgreSQL: separate stores, as separate processes have ---------------------------------
async def until_idle(engine: Engine, key: tuple[str, str] = SHEET) -> None:
    """Until the worker waits on its wake event (it has looked for work and found none)."""
    wake = engine.workers[key].wake
    async with asyncio.timeout(10):
        while not wake._waiters:  # type: ignore[attr-defined]
            await asyncio.sleep(0)  # one turn of the event loop, not a timed wait


async def test_work_posted_to_one_instance_wakes_another(pg_schema: Schema) -> None:
    """Both instances poll only once a minute, and A's worker is paused: only B's
    notification from the database can explain a delivery within seconds."""
    a_cfg = cluster_settings("a", poll=60, sheet="recorder")
    b_cfg = cluster_settings("b", poll=60, sheet="recorder")
    async with engines((a_cfg, PostgresStore(pg_schema.dsn)),
                       (b_cfg, PostgresStore(pg_schema.dsn))) as (a, b):
        a.workers[SHEET].paused = True
        await until_idle(b)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        mid = await accept(a, "N-1")
        async with asyncio.timeout(10):
            await recorder(b).event.wait()
        await settled([a, b], [mid])
        assert loop.time() - t0 < 10 < b_cfg.engine.poll_interval_seconds
        assert sent_ids(recorder(b)) == {mid}
        assert recorder(a).calls == 0


async def test_leadership_passes_on_when_the_leaders_session_ends(pg_schema: Schema) -> None:
    """As when the leader is killed: its lock session ends, the other instance takes over;
    the old leader notices and stands by. A client waiting on the old leader hears of the
    outcome the new leader records."""
    async with engines((cluster_settings("a"), PostgresStore(pg_schema.dsn)),
                       (cluster_settings("b"), PostgresStore(pg_schema.dsn))) as cl:
        first = await accept(cl[0], "L-1")
        await settled(cl, [first])
        leader, follower = leader_of(cl)
        lock = leader.workers[SHEET].lock_name
        assert lock is not None
        pid = lock_holder(pg_schema, lock)
        assert pid is not None
        terminate(pg_schema, pid)

        waiter = asyncio.Event()
        second = (await leader.accept("orders", {"order_id": "L-2", "amount": "20"}, b"{}",
                                      waiter=waiter)).message_id
        try:  # the old leader's own waiter, woken by its re-reads of the store
            async with asyncio.timeout(10):
                while not (await leader.outcome(second))[0]:
                    await waiter.wait()
                    waiter.clear()
        finally:
            leader.forget_waiter(second, waiter)
        assert second in sent_ids(recorder(follower))
        assert second not in sent_ids(recorder(leader))
        assert follower.workers[SHEET].leading is True
        assert leader.workers[SHEET].leading is False
        assert lock_holder(pg_schema, lock) not in (None, pid)
