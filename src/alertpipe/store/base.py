"""The Store protocol: the named operations the engine needs from durable storage.

Every implementation (the in-memory fake, SQLite, later PostgreSQL) passes one contract suite
(``tests/contract/test_store_contract.py``). Nothing outside ``alertpipe.store`` may know which
one it talks to.

Delivery states::

    pending ──claim──▶ in_flight ──record(delivered)──▶ delivered
       ▲                  │ │
       └─record(retry)────┘ └──record(dead)──▶ dead ──requeue──▶ pending
       ▲                  │                     └──discard──▶ discarded
       └──lease expires───┘   (claim takes in_flight rows whose lease has expired)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from alertpipe.destinations.base import Delivery
from alertpipe.message import Message

DeliveryStatus = Literal["pending", "in_flight", "delivered", "dead", "discarded"]
TERMINAL: frozenset[str] = frozenset({"delivered", "dead", "discarded"})


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery row to write together with its message (the outbox pattern)."""

    destination: str
    target: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """The outcome of one attempt at one claimed delivery.

    ``outcome`` is ``delivered``, ``retry`` (then ``next_attempt_at`` is set) or ``dead``.
    ``lease_owner`` must be the token the delivery was claimed with: a result from a worker whose
    lease was lost (and the delivery reclaimed by another) is ignored.
    """

    delivery_id: int
    lease_owner: str
    outcome: Literal["delivered", "retry", "dead"]
    started_at: datetime
    finished_at: datetime
    remote_id: str | None = None
    error: str | None = None
    error_code: str | None = None
    ambiguous: bool = False
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One stored attempt, as shown by :meth:`Store.get_message`."""

    number: int
    started_at: datetime
    finished_at: datetime
    outcome: str
    remote_id: str | None
    error: str | None
    error_code: str | None
    ambiguous: bool


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A delivery row with its history."""

    id: int
    message_id: str
    channel: str
    destination: str
    target: str | None
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    updated_at: datetime
    remote_id: str | None = None
    last_error: str | None = None
    last_error_code: str | None = None
    history: Sequence[AttemptRecord] = field(default_factory=tuple)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message with every delivery made of it."""

    message: Message
    status: str  # "accepted" or "filtered"
    deliveries: Sequence[DeliveryRecord]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Depth of one destination's queue."""

    channel: str
    destination: str
    pending: int
    in_flight: int
    delivered: int
    dead: int
    oldest_pending_at: datetime | None


@runtime_checkable
class Store(Protocol):
    """Named operations on durable storage. All methods are coroutines except ``name``."""

    name: str

    async def open(self) -> None:
        """Create or migrate the schema and get ready to accept writes."""

    async def close(self) -> None:
        """Flush pending writes and release resources."""

    async def enqueue(self, message: Message, deliveries: Sequence[NewDelivery]) -> None:
        """Durably write a message and its delivery rows in one transaction.

        Returns only after the commit is on disk. Raises ``StoreUnavailable`` when the store
        cannot accept right now.
        """

    async def claim(
        self, channel: str, destination: str, limit: int, lease_seconds: float, owner: str
    ) -> list[Delivery]:
        """Lease up to ``limit`` due deliveries (pending and due, or in flight with an expired
        lease), oldest first, for ``owner``."""

    async def record(self, results: Sequence[AttemptResult]) -> int:
        """Store attempt outcomes in one transaction; return how many were applied (results whose
        lease was lost are ignored)."""

    async def release(self, delivery_ids: Sequence[int], owner: str) -> None:
        """Give leased deliveries back without counting an attempt (graceful shutdown)."""

    async def next_due(self, channel: str, destination: str) -> datetime | None:
        """When the earliest pending delivery of this destination becomes due, if any."""

    async def get_message(self, message_id: str) -> StoredMessage | None:
        """A message with its deliveries and their attempt history."""

    async def list_messages(
        self, channel: str | None = None, limit: int = 50, before: datetime | None = None
    ) -> list[StoredMessage]:
        """Newest first."""

    async def list_dead(self, channel: str | None = None, limit: int = 100) -> list[DeliveryRecord]:
        """Dead-lettered deliveries, newest first."""

    async def requeue(self, delivery_id: int) -> bool:
        """Make a dead (or discarded) delivery pending again, due now. False if not found."""

    async def discard(self, delivery_id: int) -> bool:
        """Mark a dead delivery discarded. False if not found or not dead."""

    async def stats(self) -> list[QueueStats]:
        """Queue depth per channel and destination."""

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store can accept a write now."""
