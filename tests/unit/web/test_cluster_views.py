"""Two engine instances on one store: the admin API and the dashboard of either show the whole
cluster's queues and traffic (read from the store), and say which instance answered, since
circuits and an operator's stop are that instance's own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from web_support import client_for, login, post_order, settings

from alertpipe.engine import Engine
from alertpipe.store import MemoryStore


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Engine, Engine]]:
    store = MemoryStore()
    a = Engine(settings(instance_id="node-a"), store=store)
    b = Engine(settings(instance_id="node-b"), store=store)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await b.stop()
        await a.stop()


async def settled(engines: tuple[Engine, Engine], mid: str) -> None:
    """Until every delivery of ``mid`` is final, whichever instance records it."""
    ev = asyncio.Event()
    for e in engines:
        e.watch(mid, ev)
    try:
        done, _ = await engines[0].wait_final(mid, 5, ev)
        if not done:
            raise TimeoutError(f"message {mid} not final within 5 s")
    finally:
        for e in engines:
            e.forget_waiter(mid, ev)


async def test_each_instance_shows_the_cluster_and_names_itself(
        pair: tuple[Engine, Engine]) -> None:
    a, b = pair
    async with client_for(a) as on_a, client_for(b) as on_b:
        mid = await post_order(on_a, "C-1", "350")  # posted to a
        await settled(pair, mid)
        a.stop_channel("refunds")  # an operator's stop holds on the instance that got it

        from_b = (await on_b.get("/api/channels")).json()
        from_a = (await on_a.get("/api/channels")).json()
        assert (from_a["instance"], from_b["instance"]) == ("node-a", "node-b")
        orders_b = next(c for c in from_b["channels"] if c["name"] == "orders")
        assert orders_b["counters"]["delivered"] == 3  # a's order, seen from b
        assert orders_b["counters"]["received_last_hour"] == 1
        state = {i["instance"]: {c["name"]: c["state"] for c in i["channels"]}
                 for i in (from_a, from_b)}
        assert state["node-a"]["refunds"] == "stopped"
        assert state["node-b"]["refunds"] == "running"

        assert (await login(on_b, "vera")).status_code in (302, 303)
        page = await on_b.get("/ui/")
        assert page.status_code == 200
        assert "Circuits and Stop/Start are this instance's: <b>node-b</b>" in page.text
        assert "Circuit (this instance)" in page.text
        ready = (await on_b.get("/readyz")).json()
        assert ready["instance"] == "node-b"
