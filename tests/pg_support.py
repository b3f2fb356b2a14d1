"""PostgreSQL for the cluster tests (several engines on one database): a throw-away schema per
test, as a DSN for in-process stores and as a URL for ``ALERTPIPE_DATABASE_URL``.

The server is ``ALERTPIPE_TEST_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/
test``), as in ``tests/contract/conftest.py``, whose sweep also drops schemas that a killed run
left behind (same ``t_<epoch>_<hex>`` names). Without a server these tests are skipped, saying
so; under ``CI=true`` they fail.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from alertpipe.store.postgres import redactor

TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Schema:
    """A fresh schema: ``dsn`` (libpq key=value) for PostgresStore, ``url`` for the CLI."""

    name: str
    dsn: str
    url: str
    server: str  # the server's DSN, for queries outside the schema

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn, autocommit=True)


def url_with_search_path(dsn: str, schema: str) -> str:
    """A ``postgresql://`` URL for ``dsn`` whose connections use ``schema``."""
    p = conninfo_to_dict(dsn)
    auth = quote(str(p.get("user") or ""), safe="")
    if p.get("password"):
        auth += ":" + quote(str(p["password"]), safe="")
    host = str(p.get("host") or "127.0.0.1")
    return (f"postgresql://{auth + '@' if auth else ''}{host}:{p.get('port') or 5432}/"
            f"{quote(str(p.get('dbname') or ''), safe='')}"
            f"?options={quote(f'-c search_path={schema}', safe='')}")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The test server's DSN, once it has answered a query."""
    url = os.environ.get("ALERTPIPE_TEST_DATABASE_URL") or TEST_DATABASE_URL
    reason = None
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True):
            pass
    except psycopg.Error as exc:
        detail = " ".join(redactor(url)(str(exc)).split())
        reason = (f"PostgreSQL test server not reachable ({detail}); set "
                  "ALERTPIPE_TEST_DATABASE_URL to run the cluster tests")
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI promises a PostgreSQL server: {reason}", pytrace=False)
        pytest.skip(reason)
    return url


def new_schema(url: str) -> Schema:
    name = f"t_{int(time.time())}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    return Schema(name, make_conninfo(url, options=f"-c search_path={name}"),
                  url_with_search_path(url, name), url)


def drop_schema(schema: Schema) -> None:
    with psycopg.connect(schema.server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema.name)))


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[Schema]:
    schema = new_schema(pg_url)
    try:
        yield schema
    finally:
        drop_schema(schema)


def lock_holder(schema: Schema, name: str) -> int | None:
    """The server process id of the session holding the leader lock ``name`` in ``schema``
    (the key of :mod:`alertpipe.store.postgres_leader`), or None."""
    with psycopg.connect(schema.server, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = hashtext('alertpipe.leader')::oid "
            "AND objid = hashtext(%s || '/' || %s)::oid AND objsubid = 2",
            (schema.name, name)).fetchone()
    return None if row is None else int(str(row[0]))


def terminate(schema: Schema, pid: int) -> None:
    """End a server session, as the server does when its client dies, and return once it
    has ended (its advisory locks released): with a timeout, pg_terminate_backend waits for
    the backend to exit (PostgreSQL 14+) instead of only signalling it."""
    with psycopg.connect(schema.server, autocommit=True) as conn:
        row = conn.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone()
        assert row is not None and row[0], f"session {pid} did not end within 10 s"
