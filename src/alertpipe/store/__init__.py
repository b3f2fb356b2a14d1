"""Durable storage behind one protocol of named operations."""

from __future__ import annotations

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


def open_store(url: str, *, base_dir: Path | None = None) -> Store:
    """Build a store from a URL: ``sqlite:///path/to/file.db`` (relative paths resolve against
    ``base_dir``), ``sqlite:///:memory:`` is refused (use ``memory://``), ``memory://``."""
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
                      "expected sqlite:///PATH or memory://", key="engine.store")


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
]
