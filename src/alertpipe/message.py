"""The frozen message envelope that flows from a source through steps into the store."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_rng = random.Random(int.from_bytes(os.urandom(32), "big"))


def new_message_id() -> str:
    """A time-ordered, random 128-bit id in UUIDv7 layout (48-bit milliseconds, then random).

    The random part comes from a generator seeded once from the OS, not a system call per id
    (ids must be unique, not secret); it is re-seeded after ``fork``."""
    ms = time.time_ns() // 1_000_000
    rand = _rng.getrandbits(80)
    value = (ms & ((1 << 48) - 1)) << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


os.register_at_fork(after_in_child=lambda: _rng.seed(int.from_bytes(os.urandom(32), "big")))


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Message:
    """One accepted message.

    ``body`` is the parsed (and, after the validate step, normalised) payload; money in it is
    ``Decimal``. ``raw`` is the exact bytes the source received. ``meta`` holds source facts such
    as the remote address or a webhook id; never a secret. ``ref`` is the business key the
    message is found by (the order id), when the channel de-duplicates on one.
    """

    id: str
    channel: str
    received_at: datetime
    body: Mapping[str, Any]
    raw: bytes = b""
    meta: Mapping[str, Any] = field(default_factory=dict)
    ref: str | None = None  # the business key (the channel's de-duplication key), for search

    @classmethod
    def new(cls, channel: str, body: Mapping[str, Any], raw: bytes = b"",
            meta: Mapping[str, Any] | None = None, ref: str | None = None) -> Message:
        return cls(id=new_message_id(), channel=channel, received_at=utcnow(), body=body,
                   raw=raw, meta=meta or {}, ref=ref)
