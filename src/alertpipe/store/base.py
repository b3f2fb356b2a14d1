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
    summary: str | None = None  # what was asked and answered, e.g. "POST … -> 201 SM…"


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
    summary: str | None = None

    @property
    def duration_ms(self) -> float:
        return (self.finished_at - self.started_at).total_seconds() * 1000


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


MESSAGE_STATES = ("pending", "delivered", "dead", "partial", "discarded", "filtered")


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """What :meth:`Store.search_messages` looks for; every given field must match.

    ``ref`` is the message's business key (the channel's de-duplication key, e.g. the order id),
    matched exactly. ``state`` is one of :data:`MESSAGE_STATES`, derived from the deliveries:
    ``filtered`` (none), ``dead`` (one is dead), ``pending`` (one is pending or in flight),
    ``delivered`` (all are), ``discarded`` (all were discarded), else ``partial``.
    ``destination``: the message has a delivery to it. ``text``: every word appears in the body
    (word prefixes match; the index may lag intake by about a second). ``since`` is inclusive,
    ``until`` exclusive. ``cursor`` continues from a :class:`MessagePage`."""

    channel: str | None = None
    ref: str | None = None
    state: str | None = None
    destination: str | None = None
    text: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class MessagePage:
    """Matches, newest first; ``next_cursor`` continues after this page (None: no more)."""

    messages: list[StoredMessage]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class PruneResult:
    deleted: int  # messages removed with their deliveries, attempts and keys
    stripped: int  # messages whose body and raw bytes were dropped (metadata kept)


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

    async def search_messages(self, query: MessageQuery) -> MessagePage:
        """Messages matching ``query``, newest first (in the order they were stored), at most
        ``query.limit``. Raises ``UsageError`` for an unknown state or a cursor that is not one
        of this store's."""

    async def prune(self, channel: str, before: datetime,
                    content_before: datetime | None = None, limit: int = 10_000) -> PruneResult:
        """Retention: delete messages of ``channel`` received before ``before`` whose deliveries
        are all final (delivered, dead or discarded; a message with work left is never
        deleted), and drop the body and raw bytes of those received before ``content_before``
        (their metadata, deliveries and attempts stay, and text search stops finding them).
        At most ``limit`` of each per call."""

    async def rates(self, channel: str, since: datetime) -> list[RatePoint]:
        """Per-minute traffic of ``channel`` from ``since`` on, oldest first; minutes with no
        traffic are left out."""

    async def leader_lock(self, name: str, owner: str) -> bool:
        """Take, or confirm that ``owner`` still holds, the cluster-wide lock ``name``; True
        while it does. Never waits for a holder: False at once when another owner has it.

        One holder per name among every engine on the store, so that work which must not be
        shared (one Sheets batcher per Google account) runs on one instance. PostgreSQL holds
        it as a session advisory lock on a connection of its own: it ends with that session,
        so a killed instance's locks pass to the next instance that asks. Memory and SQLite
        (one instance per store) grant it to the first owner that asks in this process. A
        holder asks again before each round of work: a False means it lost the lock."""

    async def leader_unlock(self, name: str, owner: str) -> None:
        """Give up ``name`` if ``owner`` holds it (``close()`` gives up every lock too)."""
