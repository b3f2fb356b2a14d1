"""Durable storage behind one protocol of named operations."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from alertpipe.errors import ConfigError
from alertpipe.store.base import (
    AttemptRecord,
    AttemptResult,
    AuditEntry,
    DeliveryRecord,
    EnqueueResult,
    MessageKey,
    NewDelivery,
    QueueStats,
    RatePoint,
    Store,
    StoredMessage,
)
from alertpipe.store.memory import MemoryStore
from alertpipe.store.sqlite import SQLiteStore

DATABASE_URL_ENV = "ALERTPIPE_DATABASE_URL"


def store_url(configured: str, environ: Mapping[str, str] | None = None) -> str:
    """The store URL in force: ``ALERTPIPE_DATABASE_URL`` when it is set (and not empty) wins
    over the configured one, so a deployment can point at its database without editing YAML."""
    env = os.environ if environ is None else environ
    return env.get(DATABASE_URL_ENV) or configured


def open_store(url: str, *, base_dir: Path | None = None) -> Store:
    """Build a store from a URL: ``sqlite:///path/to/file.db`` (relative paths resolve against
    ``base_dir``), ``sqlite:///:memory:`` is refused (use ``memory://``), ``memory://``,
    ``postgresql://user:password@host:port/dbname`` (or ``postgres://``, any libpq DSN).
    ``ALERTPIPE_DATABASE_URL``, when set, is used instead of ``url`` (see :func:`store_url`)."""
    url = store_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        from alertpipe.store.postgres import PostgresStore  # psycopg loads only when used

        return PostgresStore(url)
    if url.startswith("memory:"):
        return MemoryStore()
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) == ":memory:":
            raise ConfigError("sqlite:///:memory: is not durable; use memory:// for tests",
                              key="engine.store")
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return SQLiteStore(path)
    raise ConfigError(f"unknown store URL scheme in {url.split(':', 1)[0]!r}; "
                      "expected sqlite:///PATH, postgresql://… or memory://", key="engine.store")


__all__ = [
    "AttemptRecord",
    "AttemptResult",
    "AuditEntry",
    "DeliveryRecord",
    "EnqueueResult",
    "MemoryStore",
    "MessageKey",
    "NewDelivery",
    "QueueStats",
    "RatePoint",
    "SQLiteStore",
    "Store",
    "StoredMessage",
    "open_store",
    "store_url",
]
