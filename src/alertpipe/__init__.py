"""alertpipe — an integration engine for alerting pipelines.

A channel is one source, an ordered list of steps and one or more destinations. Accepted
messages are written to a durable store (with one delivery row per destination) before the
source acknowledges them; workers deliver them at least once, with retries, backoff and dead
letters owned by the engine.
"""

from __future__ import annotations

from alertpipe.config import AppSettings, load_config
from alertpipe.destinations import Delivery, Destination, DestinationConfig, Sent, register
from alertpipe.engine import Engine
from alertpipe.errors import (
    AlertpipeError,
    ConfigError,
    CredentialsError,
    DeliveryError,
    FieldError,
    InputError,
    MalformedInput,
    PermanentError,
    RetryableError,
    StoreError,
    StoreUnavailable,
    UsageError,
    ValidationFailed,
)
from alertpipe.message import Message
from alertpipe.store import MemoryStore, SQLiteStore, Store, open_store

__version__ = "0.1.0"

__all__ = [
    "AlertpipeError",
    "AppSettings",
    "ConfigError",
    "CredentialsError",
    "Delivery",
    "DeliveryError",
    "Destination",
    "DestinationConfig",
    "Engine",
    "FieldError",
    "InputError",
    "MalformedInput",
    "MemoryStore",
    "Message",
    "PermanentError",
    "RetryableError",
    "SQLiteStore",
    "Sent",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "UsageError",
    "ValidationFailed",
    "__version__",
    "load_config",
    "open_store",
    "register",
]
