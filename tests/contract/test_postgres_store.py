"""What only the PostgreSQL store promises: SKIP LOCKED claims, LISTEN/NOTIFY, group commit,
concurrent migrations, the DSN's password kept out of errors, and ``ALERTPIPE_DATABASE_URL``.

Each test gets a schema of its own (``postgres_dsn`` in conftest.py) and a NOTIFY channel of its
own, so tests running at once on one server never see each other's notifications.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from alertpipe.errors import ConfigError, StoreError, StoreUnavailable
from alertpipe.message import Message, utcnow
from alertpipe.store import MessageKey, NewDelivery, SQLiteStore, open_store, store_url
from alertpipe.store.postgres import PostgresStore
from alertpipe.store.postgres_intake import KEY_PRUNE_INTERVAL
from alertpipe.store.postgres_sql import MIGRATIONS

PASSWORD = "Sup3r-S3cret-pw"
WAIT = 10.0  # an upper bound on a wait that should end at once, never a pause


def order(n: int) -> Message:
    return Message.new("orders", {"order_id": f"A-{n}", "amount": Decimal("300.01")})


@asynccontextmanager
async def opened(dsn: str, **kw: object) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(dsn, **kw)  # type: ignore[arg-type]
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def channel() -> str:
    return f"alertpipe_work_{uuid.uuid4().hex[:12]}"


def collector() -> tuple[asyncio.Queue[tuple[str, str]], Callable[[str, str], None]]:
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    return queue, lambda ch, dest: queue.put_nowait((ch, dest))


async def next_wake(queue: asyncio.Queue[tuple[str, str]]) -> tuple[str, str]:
    return await asyncio.wait_for(queue.get(), WAIT)


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


# -- claims -----------------------------------------------------------------------------------

async def test_claim_skips_rows_locked_by_another_transaction(postgres_dsn: str) -> None:
    async with opened(postgres_dsn) as store:
        for i in range(6):
            await store.enqueue(order(i), [NewDelivery("sheet")])
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as other:
            locked = [r[0] for r in await (await other.execute(
                "SELECT id FROM deliveries ORDER BY id LIMIT 2 FOR UPDATE")).fetchall()]
            # A plain FOR UPDATE would wait for ``other``; SKIP LOCKED passes its rows over.
            got = await asyncio.wait_for(store.claim("orders", "sheet", 10, 30, "w"), WAIT)
            assert len(got) == 4 and not {d.id for d in got} & set(locked)
            await other.rollback()
        (first, second) = await store.claim("orders", "sheet", 10, 30, "w")
        assert sorted([first.id, second.id]) == locked


async def test_concurrent_claimers_never_get_the_same_delivery(postgres_dsn: str) -> None:
    async with opened(postgres_dsn) as a, opened(postgres_dsn) as b:
        await asyncio.gather(*(a.enqueue(order(i), [NewDelivery("sheet")]) for i in range(300)))

        async def drain(store: PostgresStore, owner: str) -> list[int]:
            ids: list[int] = []
            while got := await store.claim("orders", "sheet", 7, 30, owner):
                ids += [d.id for d in got]
            return ids

        claims = await asyncio.gather(*(drain(s, f"w{n}") for n, s in enumerate([a, b] * 3)))
        every = [i for ids in claims for i in ids]
        assert len(every) == len(set(every)) == 300
        assert sum(1 for ids in claims if ids) > 1  # the claimers really did run side by side


# -- LISTEN/NOTIFY ----------------------------------------------------------------------------

async def test_subscriber_wakes_when_another_instance_enqueues(postgres_dsn: str,
                                                              channel: str) -> None:
    async with opened(postgres_dsn, notify_channel=channel) as listener, \
            opened(postgres_dsn, notify_channel=channel) as intake:
        woke = asyncio.Event()
        seen: list[tuple[str, str]] = []

        def wake(ch: str, dest: str) -> None:
            seen.append((ch, dest))
            woke.set()

        await listener.subscribe(wake)
        await intake.enqueue(order(1), [NewDelivery("sms", "+15551230001")])
        await asyncio.wait_for(woke.wait(), WAIT)
        assert seen == [("orders", "sms")]


async def test_every_operation_that_makes_work_due_notifies(postgres_dsn: str,
                                                           channel: str) -> None:
    from alertpipe.store import AttemptResult

    async with opened(postgres_dsn, notify_channel=channel) as store:
        queue, wake = collector()
        await store.subscribe(wake)
        await store.enqueue(order(0), [])  # filtered: nothing due, no notification
        m = order(1)
        await store.enqueue(m, [NewDelivery("sheet"), NewDelivery("sms", "+15551230001")])
        assert sorted([await next_wake(queue), await next_wake(queue)]) == [
            ("orders", "sheet"), ("orders", "sms")]  # notifications come in commit order
        (d,) = await store.claim("orders", "sheet", 1, 30, "w")
        await store.release([d.id], "w")
        assert await next_wake(queue) == ("orders", "sheet")
        (d,) = await store.claim("orders", "sheet", 1, 30, "w")
        now = utcnow()
        await store.record([AttemptResult(d.id, "w", "dead", now, now, error="404")])
        assert await store.requeue(d.id)
        assert await next_wake(queue) == ("orders", "sheet")
        (d,) = await store.claim("orders", "sheet", 1, 30, "w")
        await store.record([AttemptResult(d.id, "w", "dead", now, now, error="404")])
        assert await store.requeue_dead("orders") == 1
        assert await next_wake(queue) == ("orders", "sheet")
        await store.add_deliveries(m.id, [NewDelivery("webhook")])
        assert await next_wake(queue) == ("orders", "webhook")
        assert queue.empty()


async def test_listener_reconnects_and_reports_work_due_meanwhile(postgres_dsn: str,
                                                                 channel: str) -> None:
    async with opened(postgres_dsn, notify_channel=channel) as store:
        queue, wake = collector()
        await store.subscribe(wake)
        await store.enqueue(order(1), [NewDelivery("sheet")])
        assert await next_wake(queue) == ("orders", "sheet")
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
            killed = await (await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'alertpipe-listener' AND query = %s",
                (f'LISTEN "{channel}"',))).fetchall()
            assert killed == [(True,)]
        # Nothing was enqueued since: this wake-up is the listener catching up after its
        # reconnect on the delivery that is still due.
        assert await next_wake(queue) == ("orders", "sheet")
        await store.enqueue(order(2), [NewDelivery("sms")])
        assert await next_wake(queue) == ("orders", "sms")  # and it listens again


async def test_a_failing_callback_does_not_stop_the_listener(postgres_dsn: str,
                                                            channel: str,
                                                            caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    async with opened(postgres_dsn, notify_channel=channel) as store:
        queue: asyncio.Queue[str] = asyncio.Queue()

        def wake(ch: str, dest: str) -> None:
            queue.put_nowait(dest)
            if dest == "boom":
                raise RuntimeError("callback bug")

        await store.subscribe(wake)
        await store.enqueue(order(1), [NewDelivery("boom")])
        assert await asyncio.wait_for(queue.get(), WAIT) == "boom"
        await store.enqueue(order(2), [NewDelivery("sheet")])
        assert await asyncio.wait_for(queue.get(), WAIT) == "sheet"
        assert "callback failed" in caplog.text


# -- group commit -----------------------------------------------------------------------------

async def test_concurrent_enqueues_share_transactions(postgres_dsn: str) -> None:
    async with opened(postgres_dsn) as store:
        await asyncio.gather(*(store.enqueue(order(i), [NewDelivery("sheet")])
                               for i in range(500)))
        transactions, operations = store.commit_stats
        assert operations == 500 and transactions < operations / 10
        assert len(await store.claim("orders", "sheet", 1000, 30, "w")) == 500


async def test_one_failing_enqueue_does_not_undo_its_group(postgres_dsn: str) -> None:
    async with opened(postgres_dsn) as store:
        first = order(0)
        await store.enqueue(first, [NewDelivery("sheet")])
        others = [order(i) for i in range(1, 21)]
        results = await asyncio.gather(
            store.enqueue(first, [NewDelivery("sheet")]),  # the same id again: a server error
            *(store.enqueue(m, [NewDelivery("sheet")]) for m in others),
            return_exceptions=True)
        assert isinstance(results[0], StoreUnavailable) and "messages_pkey" in str(results[0])
        assert [getattr(r, "created", None) for r in results[1:]] == [True] * 20
        assert store.rerun_groups == 1  # the group was rolled back and re-run one by one
        got = await store.claim("orders", "sheet", 100, 30, "w")
        assert sorted(d.message.id for d in got) == sorted(m.id for m in [first, *others])


async def test_one_key_across_instances_stores_one_message(postgres_dsn: str) -> None:
    key = MessageKey("idempotency", "K-1", ttl_seconds=3600, fingerprint="fp")
    async with opened(postgres_dsn) as a, opened(postgres_dsn) as b:
        results = await asyncio.gather(*(s.enqueue(order(i), [NewDelivery("sheet")], [key])
                                         for i in range(10) for s in (a, b)))
    created = [r for r in results if r.created]
    assert len(created) == 1
    assert {(r.message_id, r.fingerprint) for r in results if not r.created} == {
        (created[0].message_id, "fp")}


async def test_a_conflict_on_a_later_key_gives_back_the_earlier_ones(postgres_dsn: str) -> None:
    async with opened(postgres_dsn) as store:
        held = await store.enqueue(order(1), [], [MessageKey("dedupe", "B", 60)])
        lost = await store.enqueue(order(2), [], [MessageKey("event", "A", 60),
                                                  MessageKey("dedupe", "B", 60)])
        assert not lost.created and lost.message_id == held.message_id
        again = await store.enqueue(order(3), [], [MessageKey("event", "A", 60)])
        assert again.created  # "A" was not left behind by the message that was not stored


async def test_expired_keys_are_pruned(postgres_dsn: str) -> None:
    async with opened(postgres_dsn) as store, \
            await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        async def keys() -> list[str]:
            cur = await conn.execute("SELECT key FROM message_keys ORDER BY key")
            return [r[0] for r in await cur.fetchall()]

        await store.enqueue(order(1), [], [MessageKey("dedupe", "A-1", ttl_seconds=-1)])
        await store.enqueue(order(2), [], [MessageKey("dedupe", "A-2", ttl_seconds=60)])
        assert await keys() == ["A-1", "A-2"]  # the next prune is not due yet
        store._intake.pruned_at -= KEY_PRUNE_INTERVAL
        await store.enqueue(order(3), [], [MessageKey("dedupe", "A-3", ttl_seconds=60)])
        assert await keys() == ["A-2", "A-3"]


# -- schema and types -------------------------------------------------------------------------

async def test_instances_starting_at_once_migrate_a_fresh_schema_once(postgres_dsn: str) -> None:
    stores = [PostgresStore(postgres_dsn) for _ in range(4)]
    try:
        opened_all = await asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
        assert opened_all == [None] * 4
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
            cur = await conn.execute("SELECT version FROM schema_version ORDER BY version")
            assert [r[0] for r in await cur.fetchall()] == list(range(1, len(MIGRATIONS) + 1))
        await stores[0].enqueue(order(1), [NewDelivery("sheet")])
        (d,) = await stores[3].claim("orders", "sheet", 1, 30, "w")
        assert d.message.body["amount"] == Decimal("300.01")
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_naive_times_are_refused(postgres_dsn: str) -> None:
    async with opened(postgres_dsn) as store:
        naive = Message(id="m-1", channel="orders", received_at=datetime(2024, 5, 1, 12, 0),
                        body={})
        with pytest.raises(StoreError, match="naive"):
            await store.enqueue(naive, [])
        with pytest.raises(StoreError, match="naive"):
            await store.rates("orders", datetime(2024, 5, 1))


# -- errors keep the password out -------------------------------------------------------------

def chain(exc: BaseException | None) -> str:
    out = []
    while exc is not None:
        out.append(f"{exc!r} {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(out)


@pytest.mark.parametrize("form", ["url", "keywords"])
async def test_unreachable_server_is_unavailable_without_the_password(
        form: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port = refused_port()
    dsn = (f"postgresql://alertpipe:{PASSWORD}@127.0.0.1:{port}/orders" if form == "url" else
           f"host=127.0.0.1 port={port} user=alertpipe password={PASSWORD} dbname=orders")
    store = PostgresStore(dsn)
    with pytest.raises(StoreUnavailable) as info:
        await store.open()
    assert f"postgresql://alertpipe@127.0.0.1:{port}/orders" in str(info.value)
    assert "refused" in str(info.value).lower()
    assert PASSWORD not in chain(info.value) and PASSWORD not in caplog.text
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.enqueue(order(1), [])


async def test_server_errors_are_unavailable_without_the_password(
        postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dsn = make_conninfo(postgres_url, password=PASSWORD, dbname="no_such_db_for_alertpipe")
    with pytest.raises(StoreUnavailable, match="no_such_db_for_alertpipe") as info:
        await PostgresStore(dsn).open()
    assert PASSWORD not in chain(info.value) and PASSWORD not in caplog.text


def test_a_malformed_dsn_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        PostgresStore(f"host=127.0.0.1 password={PASSWORD} no_such_option=1")
    assert PASSWORD not in chain(info.value)


# -- choosing the store -----------------------------------------------------------------------

def test_open_store_takes_postgres_urls_and_the_environment_wins(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ALERTPIPE_DATABASE_URL", raising=False)
    for scheme in ("postgresql", "postgres"):
        s = open_store(f"{scheme}://ap:{PASSWORD}@db.internal:5433/alerts")
        assert isinstance(s, PostgresStore) and s.where == "postgresql://ap@db.internal:5433/alerts"
    assert isinstance(open_store("sqlite:///x.db", base_dir=tmp_path), SQLiteStore)
    monkeypatch.setenv("ALERTPIPE_DATABASE_URL", "postgresql://ap@db.internal/alerts")
    s = open_store("sqlite:///x.db", base_dir=tmp_path)
    assert isinstance(s, PostgresStore) and s.where == "postgresql://ap@db.internal:5432/alerts"
    monkeypatch.setenv("ALERTPIPE_DATABASE_URL", "")
    assert isinstance(open_store("sqlite:///x.db", base_dir=tmp_path), SQLiteStore)
    assert store_url("memory://", {"ALERTPIPE_DATABASE_URL": "postgres://h/d"}) == "postgres://h/d"
    assert store_url("memory://", {}) == "memory://"
