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
class MessageKey:
    """A key that makes a message unique within its channel for ``ttl_seconds``.

    ``kind`` separates namespaces: ``idempotency`` (a client's Idempotency-Key; ``fingerprint``
    is a hash of the request), ``dedupe`` (a business key such as the order id), ``event`` (a
    webhook's own delivery id).
    """

    kind: str
    key: str
    ttl_seconds: float
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What :meth:`Store.enqueue` did: stored a new message, or found a live key.

    When ``created`` is False nothing was written; ``message_id`` is the message that holds the
    key, ``conflict`` the key that matched and ``fingerprint`` what was stored with it.
    """

    message_id: str
    created: bool = True
    conflict: MessageKey | None = None
    fingerprint: str | None = None


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


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the append-only audit log: who did what to which object, and when."""

    id: int
    at: datetime
    actor: str
    role: str
    action: str  # "login", "view", "resend", "retry", "discard", "channel.stop", ...
    target: str  # a message id, a delivery id, a channel name, ...
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class RatePoint:
    """Traffic of one channel in one minute (for the dashboard's throughput chart)."""

    minute: datetime  # start of the minute, UTC
    received: int  # messages received in that minute
    delivered: int  # attempts that ended "delivered" in that minute
    failed: int  # attempts that ended "retry" or "dead" in that minute


@runtime_checkable
class Store(Protocol):
    """Named operations on durable storage. All methods are coroutines except ``name``."""

    name: str

    async def open(self) -> None:
        """Create or migrate the schema and get ready to accept writes."""

    async def close(self) -> None:
        """Flush pending writes and release resources."""

    async def enqueue(self, message: Message, deliveries: Sequence[NewDelivery],
                      keys: Sequence[MessageKey] = ()) -> EnqueueResult:
        """Durably write a message, its delivery rows and its keys in one transaction.

        If any of ``keys`` is already held (and not expired) by another message, nothing is
        written and the result names that message. Checking and writing are atomic, so two
        concurrent requests with one key store one message. Returns only after the commit is on
        disk. Raises ``StoreUnavailable`` when the store cannot accept right now.
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
        """Give leased deliveries back without counting an attempt (graceful shutdown). They
        are marked ambiguous, as is a delivery reclaimed after its lease lapsed: a send may have
        been under way, so the next attempt checks before sending again."""

    async def next_due(self, channel: str, destination: str) -> datetime | None:
        """When the earliest pending delivery of this destination becomes due, if any."""

    async def get_message(self, message_id: str) -> StoredMessage | None:
        """A message with its deliveries and their attempt history."""

    async def get_delivery(self, delivery_id: int) -> DeliveryRecord | None:
        """One delivery with its attempt history; ``None`` if there is no such delivery."""

    async def list_messages(
        self, channel: str | None = None, limit: int = 50, before: datetime | None = None,
        since: datetime | None = None, until: datetime | None = None,
    ) -> list[StoredMessage]:
        """Newest first (by ``received_at``, then id). ``before`` and ``until`` exclude messages
        received at or after them; ``since`` includes messages received at it or later."""

    async def list_dead(self, channel: str | None = None, limit: int = 100) -> list[DeliveryRecord]:
        """Dead-lettered deliveries, newest first."""

    async def requeue(self, delivery_id: int) -> bool:
        """Make a dead (or discarded) delivery pending again, due now. False if not found."""

    async def discard(self, delivery_id: int) -> bool:
        """Mark a dead delivery discarded. False if not found or not dead."""

    async def add_deliveries(self, message_id: str,
                             deliveries: Sequence[NewDelivery]) -> list[int]:
        """Add new pending delivery rows, due now, to a stored message (a replay); return their
        ids in order. The message itself, its keys and its status are unchanged, and no key is
        checked: a replay is a new delivery of an existing message, not a new message. Raises
        ``UsageError`` if the message does not exist."""

    async def requeue_dead(self, channel: str | None = None) -> int:
        """Make every dead delivery (of ``channel``, or of all channels) pending again, due now;
        return how many. Discarded deliveries are left alone."""

    async def backlog(self, channel: str) -> int:
        """How many deliveries of the channel are pending or in flight."""

    async def stats(self) -> list[QueueStats]:
        """Queue depth per channel and destination."""

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store can accept a write now."""

    async def append_audit(self, actor: str, role: str, action: str, target: str,
                           detail: str | None = None) -> int:
        """Append one audit entry (never updated, never deleted); return its id."""

    async def list_audit(self, limit: int = 100,
                         before_id: int | None = None) -> list[AuditEntry]:
        """Audit entries, newest first; ``before_id`` pages back."""

    async def rates(self, channel: str, since: datetime) -> list[RatePoint]:
        """Per-minute traffic of ``channel`` from ``since`` on, oldest first; minutes with no
        traffic are left out."""
