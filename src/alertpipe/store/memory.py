"""An in-memory Store for unit tests. It passes the same contract suite as the durable stores
but keeps nothing across a restart, so ``alertpipe run`` never picks it by default."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from alertpipe.destinations.base import Delivery
from alertpipe.errors import StoreUnavailable, UsageError
from alertpipe.message import Message, utcnow
from alertpipe.store.base import (
    TERMINAL,
    AttemptRecord,
    AttemptResult,
    AuditEntry,
    DeliveryRecord,
    EnqueueResult,
    MessageKey,
    MessagePage,
    MessageQuery,
    NewDelivery,
    PruneResult,
    QueueStats,
    RatePoint,
    StoredMessage,
)
from alertpipe.store.search import (
    check_state,
    decode_cursor,
    encode_cursor,
    matches,
    message_state,
    words,
)


@dataclass
class _Row:
    rec: DeliveryRecord
    lease_until: datetime | None = None
    lease_owner: str | None = None
    history: list[AttemptRecord] = field(default_factory=list)
    last_ambiguous: bool = False


class MemoryStore:
    """Dict-backed store. ``fail_writes`` makes every write raise StoreUnavailable (for tests)."""

    name = "memory"

    def __init__(self) -> None:
        self._messages: dict[str, tuple[Message, str]] = {}
        self._rows: dict[int, _Row] = {}
        self._ids = itertools.count(1)
        self._positions = itertools.count(1)
        self._seq: dict[str, int] = {}
        self._stripped: set[str] = set()
        self._keys: dict[tuple[str, str, str], tuple[str, str | None, datetime]] = {}
        self.fail_writes = False
        self._audit: list[AuditEntry] = []
        self._leaders: dict[str, str] = {}  # lock name -> owner (leader_lock)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _check_writable(self) -> None:
        if self.fail_writes:
            raise StoreUnavailable("memory store set to refuse writes", retry_after=1.0)

    async def enqueue(self, message: Message, deliveries: Sequence[NewDelivery],
                      keys: Sequence[MessageKey] = ()) -> EnqueueResult:
        self._check_writable()
        if message.id in self._messages:
            raise StoreUnavailable(f"message id {message.id} already stored")
        now = utcnow()
        for k in keys:
            held = self._keys.get((message.channel, k.kind, k.key))
            if held is not None and held[2] > now:
                return EnqueueResult(message_id=held[0], created=False, conflict=k,
                                     fingerprint=held[1])
        for k in keys:
            self._keys[(message.channel, k.kind, k.key)] = (
                message.id, k.fingerprint, now + timedelta(seconds=k.ttl_seconds))
        self._messages[message.id] = (message, "accepted" if deliveries else "filtered")
        self._seq[message.id] = next(self._positions)
        for d in deliveries:
            i = next(self._ids)
            self._rows[i] = _Row(DeliveryRecord(
                id=i, message_id=message.id, channel=message.channel, destination=d.destination,
                target=d.target, status="pending", attempts=0, created_at=now,
                next_attempt_at=now, updated_at=now))
        return EnqueueResult(message_id=message.id)

    def _due(self, row: _Row, now: datetime) -> bool:
        r = row.rec
        if r.status == "pending":
            return r.next_attempt_at <= now
        return r.status == "in_flight" and row.lease_until is not None and row.lease_until < now

    async def claim(self, channel: str, destination: str, limit: int, lease_seconds: float,
                    owner: str) -> list[Delivery]:
        self._check_writable()
        now = utcnow()
        due = [row for row in self._rows.values()
               if row.rec.channel == channel and row.rec.destination == destination
               and self._due(row, now)]
        due.sort(key=lambda row: (row.rec.next_attempt_at, row.rec.id))
        out: list[Delivery] = []
        for row in due[:limit]:
            if row.rec.status == "in_flight":  # a lapsed lease: the last holder may have sent it
                row.last_ambiguous = True
            row.rec = replace(row.rec, status="in_flight", updated_at=now)
            row.lease_until = now + timedelta(seconds=lease_seconds)
            row.lease_owner = owner
            msg = self._messages[row.rec.message_id][0]
            out.append(Delivery(id=row.rec.id, message=msg, destination=destination,
                                target=row.rec.target, attempts=row.rec.attempts,
                                ambiguous=row.last_ambiguous))
        return out

    async def record(self, results: Sequence[AttemptResult]) -> int:
        self._check_writable()
        applied = 0
        for res in results:
            row = self._rows.get(res.delivery_id)
            if row is None or row.rec.status != "in_flight" or row.lease_owner != res.lease_owner:
                continue
            number = row.rec.attempts + 1
            row.history.append(AttemptRecord(
                number=number, started_at=res.started_at, finished_at=res.finished_at,
                outcome=res.outcome, remote_id=res.remote_id, error=res.error,
                error_code=res.error_code, ambiguous=res.ambiguous, summary=res.summary))
            status = {"delivered": "delivered", "retry": "pending", "dead": "dead"}[res.outcome]
            row.rec = replace(
                row.rec, status=status, attempts=number, updated_at=res.finished_at,
                next_attempt_at=res.next_attempt_at or row.rec.next_attempt_at,
                remote_id=res.remote_id or row.rec.remote_id,
                last_error=res.error if res.outcome != "delivered" else row.rec.last_error,
                last_error_code=res.error_code if res.outcome != "delivered"
                else row.rec.last_error_code)
            row.lease_owner = None
            row.lease_until = None
            row.last_ambiguous = res.ambiguous
            applied += 1
        return applied

    async def release(self, delivery_ids: Sequence[int], owner: str) -> None:
        for i in delivery_ids:
            row = self._rows.get(i)
            if row and row.rec.status == "in_flight" and row.lease_owner == owner:
                row.last_ambiguous = True  # a send may have been cut off mid-flight
                row.rec = replace(row.rec, status="pending", updated_at=utcnow())
                row.lease_owner = None
                row.lease_until = None

    async def next_due(self, channel: str, destination: str) -> datetime | None:
        times = [r.rec.next_attempt_at for r in self._rows.values()
                 if r.rec.channel == channel and r.rec.destination == destination
                 and r.rec.status == "pending"]
        leases = [r.lease_until for r in self._rows.values()
                  if r.rec.channel == channel and r.rec.destination == destination
                  and r.rec.status == "in_flight" and r.lease_until is not None]
        return min(times + leases, default=None)

    def _with_history(self, row: _Row) -> DeliveryRecord:
        return replace(row.rec, history=tuple(row.history))

    async def get_message(self, message_id: str) -> StoredMessage | None:
        found = self._messages.get(message_id)
        if found is None:
            return None
        rows = [self._with_history(r) for r in self._rows.values()
                if r.rec.message_id == message_id]
        return StoredMessage(message=found[0], status=found[1],
                             deliveries=sorted(rows, key=lambda r: r.id))

    async def get_delivery(self, delivery_id: int) -> DeliveryRecord | None:
        row = self._rows.get(delivery_id)
        return None if row is None else self._with_history(row)

    async def list_messages(self, channel: str | None = None, limit: int = 50,
                            before: datetime | None = None, since: datetime | None = None,
                            until: datetime | None = None) -> list[StoredMessage]:
        msgs = [m for m, _ in self._messages.values()
                if (channel is None or m.channel == channel)
                and (before is None or m.received_at < before)
                and (since is None or m.received_at >= since)
                and (until is None or m.received_at < until)]
        msgs.sort(key=lambda m: (m.received_at, m.id), reverse=True)
        out = []
        for m in msgs[:limit]:
            stored = await self.get_message(m.id)
            assert stored is not None
            out.append(stored)
        return out

    async def search_messages(self, query: MessageQuery) -> MessagePage:
        check_state(query.state)
        after = decode_cursor(query.cursor)
        wanted = words(query.text) if query.text else []
        found: list[StoredMessage] = []
        limit = max(1, query.limit)
        for mid in reversed(self._messages):
            pos = self._seq[mid]
            if after is not None and pos >= after:
                continue
            m, _ = self._messages[mid]
            if ((query.channel is not None and m.channel != query.channel)
                    or (query.ref is not None and m.ref != query.ref)
                    or (query.since is not None and m.received_at < query.since)
                    or (query.until is not None and m.received_at >= query.until)
                    or (wanted and not matches(m.body, wanted))):
                continue
            stored = await self.get_message(mid)
            assert stored is not None
            if query.state is not None and message_state(
                    d.status for d in stored.deliveries) != query.state:
                continue
            if query.destination is not None and all(
                    d.destination != query.destination for d in stored.deliveries):
                continue
            if len(found) == limit:
                return MessagePage(found, encode_cursor(self._seq[found[-1].message.id]))
            found.append(stored)
        return MessagePage(found, None)

    async def prune(self, channel: str, before: datetime,
                    content_before: datetime | None = None, limit: int = 10_000) -> PruneResult:
        self._check_writable()
        deleted = 0
        for mid, (m, _) in list(self._messages.items()):
            if deleted >= limit:
                break
            if m.channel != channel or m.received_at >= before:
                continue
            rows = [i for i, r in self._rows.items() if r.rec.message_id == mid]
            if any(self._rows[i].rec.status in ("pending", "in_flight") for i in rows):
                continue
            for i in rows:
                del self._rows[i]
            for k in [k for k, v in self._keys.items() if v[0] == mid]:
                del self._keys[k]
            del self._messages[mid]
            del self._seq[mid]
            self._stripped.discard(mid)
            deleted += 1
        stripped = 0
        if content_before is not None:
            for mid, (m, status) in list(self._messages.items()):
                if stripped >= limit:
                    break
                if (m.channel == channel and m.received_at < content_before
                        and mid not in self._stripped):
                    self._messages[mid] = (replace(m, body={}, raw=b""), status)
                    self._stripped.add(mid)
                    stripped += 1
        return PruneResult(deleted=deleted, stripped=stripped)

    async def list_dead(self, channel: str | None = None, limit: int = 100) -> list[DeliveryRecord]:
        rows = [self._with_history(r) for r in self._rows.values()
                if r.rec.status == "dead" and (channel is None or r.rec.channel == channel)]
        rows.sort(key=lambda r: (r.updated_at, r.id), reverse=True)
        return rows[:limit]

    async def requeue(self, delivery_id: int) -> bool:
        self._check_writable()
        row = self._rows.get(delivery_id)
        if row is None or row.rec.status not in ("dead", "discarded"):
            return False
        now = utcnow()
        row.rec = replace(row.rec, status="pending", next_attempt_at=now, updated_at=now)
        return True

    async def discard(self, delivery_id: int) -> bool:
        self._check_writable()
        row = self._rows.get(delivery_id)
        if row is None or row.rec.status != "dead":
            return False
        row.rec = replace(row.rec, status="discarded", updated_at=utcnow())
        return True

    async def add_deliveries(self, message_id: str,
                             deliveries: Sequence[NewDelivery]) -> list[int]:
        self._check_writable()
        found = self._messages.get(message_id)
        if found is None:
            raise UsageError(f"no message with id {message_id!r}")
        message = found[0]
        now = utcnow()
        ids = []
        for d in deliveries:
            i = next(self._ids)
            self._rows[i] = _Row(DeliveryRecord(
                id=i, message_id=message_id, channel=message.channel, destination=d.destination,
                target=d.target, status="pending", attempts=0, created_at=now,
                next_attempt_at=now, updated_at=now))
            ids.append(i)
        return ids

    async def requeue_dead(self, channel: str | None = None) -> int:
        self._check_writable()
        now = utcnow()
        n = 0
        for row in self._rows.values():
            if row.rec.status == "dead" and (channel is None or row.rec.channel == channel):
                row.rec = replace(row.rec, status="pending", next_attempt_at=now, updated_at=now)
                n += 1
        return n

    async def backlog(self, channel: str) -> int:
        return sum(1 for r in self._rows.values()
                   if r.rec.channel == channel and r.rec.status in ("pending", "in_flight"))

    async def stats(self) -> list[QueueStats]:
        groups: dict[tuple[str, str], list[DeliveryRecord]] = {}
        for r in self._rows.values():
            groups.setdefault((r.rec.channel, r.rec.destination), []).append(r.rec)
        out = []
        for (ch, dest), recs in sorted(groups.items()):
            pending = [r for r in recs if r.status == "pending"]
            out.append(QueueStats(
                channel=ch, destination=dest, pending=len(pending),
                in_flight=sum(r.status == "in_flight" for r in recs),
                delivered=sum(r.status == "delivered" for r in recs),
                dead=sum(r.status == "dead" for r in recs),
                oldest_pending_at=min((r.created_at for r in recs if r.status not in TERMINAL),
                                      default=None)))
        return out

    async def ping(self) -> None:
        self._check_writable()

    async def append_audit(self, actor: str, role: str, action: str, target: str,
                           detail: str | None = None) -> int:
        self._check_writable()
        entry = AuditEntry(id=len(self._audit) + 1, at=utcnow(), actor=actor, role=role,
                           action=action, target=target, detail=detail)
        self._audit.append(entry)
        return entry.id

    async def list_audit(self, limit: int = 100,
                         before_id: int | None = None) -> list[AuditEntry]:
        entries = [e for e in reversed(self._audit) if before_id is None or e.id < before_id]
        return entries[:limit]

    async def rates(self, channel: str, since: datetime) -> list[RatePoint]:
        counts: dict[datetime, list[int]] = {}

        def bump(at: datetime, column: int) -> None:
            if at >= since:
                minute = at.astimezone(UTC).replace(second=0, microsecond=0)
                counts.setdefault(minute, [0, 0, 0])[column] += 1

        for message, _ in self._messages.values():
            if message.channel == channel:
                bump(message.received_at, 0)
        for row in self._rows.values():
            if row.rec.channel == channel:
                for a in row.history:
                    bump(a.finished_at, 1 if a.outcome == "delivered" else 2)
        return [RatePoint(minute=m, received=c[0], delivered=c[1], failed=c[2])
                for m, c in sorted(counts.items())]

    # -- cluster locks (one process: the first owner to ask holds it until it gives it up) --
    async def leader_lock(self, name: str, owner: str) -> bool:
        return self._leaders.setdefault(name, owner) == owner

    async def leader_unlock(self, name: str, owner: str) -> None:
        if self._leaders.get(name) == owner:
            del self._leaders[name]
