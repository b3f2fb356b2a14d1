"""The ``store`` fixture: every contract test runs once per Store implementation.

The PostgreSQL runs use ``ALERTPIPE_TEST_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``) and give every test a schema of its own, dropped
afterwards (and swept an hour later should a killed run have left it behind). Without a
reachable server they are skipped, saying so; under ``CI=true`` (where CI promises the server)
they fail instead.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from alertpipe.store import MemoryStore, SQLiteStore, Store
from alertpipe.store.postgres import PostgresStore, redactor

TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA_PREFIX = "t_"  # then the creation time (epoch seconds) and a random part
STALE_AFTER = 3600.0  # seconds; no test keeps its schema this long


def sweep_stale_schemas(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Drop test schemas that runs killed before their teardown left behind."""
    rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname ~ '^t_[0-9]+_[0-9a-f]+$'")
    for (name,) in rows.fetchall():
        if time.time() - int(str(name).split("_")[1]) > STALE_AFTER:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(str(name))))


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test server's DSN, once it has answered a query."""
    url = os.environ.get("ALERTPIPE_TEST_DATABASE_URL") or TEST_DATABASE_URL
    reason = None
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            sweep_stale_schemas(conn)
    except psycopg.Error as exc:
        detail = " ".join(redactor(url)(str(exc)).split())
        reason = (f"PostgreSQL test server not reachable ({detail}); "
                  "set ALERTPIPE_TEST_DATABASE_URL to run the postgres store tests")
    if reason is not None:  # out of the except block: no traceback showing the DSN
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI promises a PostgreSQL server: {reason}", pytrace=False)
        pytest.skip(reason)
    return url


@pytest.fixture
def postgres_dsn(postgres_url: str) -> Iterator[str]:
    """A DSN whose ``search_path`` is a new, empty schema of this test's own (a plain fixture,
    so that the async ``store`` fixture can ask for it only when it needs it)."""
    schema = f"{SCHEMA_PREFIX}{int(time.time())}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield make_conninfo(postgres_url, options=f"-c search_path={schema}")
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store
    if request.param == "memory":
        s = MemoryStore()
    elif request.param == "sqlite":
        s = SQLiteStore(tmp_path / "s.db")
    else:
        s = PostgresStore(request.getfixturevalue("postgres_dsn"))
    await s.open()
    try:
        yield s
    finally:
        await s.close()
