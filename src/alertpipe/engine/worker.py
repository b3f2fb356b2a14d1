"""The delivery worker: claims due deliveries for one destination, sends them, records outcomes.

One worker runs per (channel, destination). It sleeps until woken by an intake commit, until the
next retry falls due, or for at most the poll interval (which also picks up deliveries whose
lease lapsed when another process died).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from alertpipe.destinations.base import Delivery, Destination, Outcome, Sent
from alertpipe.engine.circuit import CircuitBreaker
from alertpipe.engine.pacing import Pacer
from alertpipe.engine.retry import DeadLetter, RetryPolicy
from alertpipe.errors import DeliveryError, PermanentError, RetryableError, StoreError
from alertpipe.message import utcnow
from alertpipe.store.base import AttemptResult, Store

if TYPE_CHECKING:
    from alertpipe.metrics import DeliveryMetrics

log = logging.getLogger("alertpipe.worker")
# Claims and records run on the event loop inside intake's group commits; in slices of 25 none
# holds intake up for more than a few ms (slices of 100 made a loop stall the main cause of the
# intake latency tail at half the maximum rate).
RECORD_SLICE = 25
CLAIM_SLICE = 25


class DestinationWorker:
    def __init__(self, channel: str, destination: Destination, store: Store, policy: RetryPolicy,
                 pacer: Pacer, *, lease_seconds: float, poll_interval: float,
                 on_recorded: Callable[[Sequence[str]], None],
                 breaker: CircuitBreaker | None = None, instance: str = "",
                 metrics: DeliveryMetrics | None = None) -> None:
        self.channel = channel
        self.dest = destination
        self.store = store
        self.policy = policy
        self.pacer = pacer
        self.lease = lease_seconds
        self.poll = poll_interval
        self.on_recorded = on_recorded
        self.breaker = breaker or CircuitBreaker(f"{channel}/{destination.name}")
        self.metrics = metrics
        self.instance = instance or str(os.getpid())
        self.owner = f"{self.instance}-{channel}-{destination.name}-{os.urandom(4).hex()}"
        # An exclusive destination is sent to by one instance of a cluster: the holder of the
        # store's leader lock for its rate key (see Destination.exclusive).
        self.lock_name = f"sender:{destination.rate_key()}" if destination.exclusive else None
        self.leading: bool | None = None  # None: not asked yet (or not exclusive)
        self.wake = asyncio.Event()
        self._stopping = False
        self.paused = False  # set by Engine.stop_channel: claim nothing until cleared and woken
        self._inflight: set[int] = set()
        self.task: asyncio.Task[None] | None = None
        # When the next delivery falls due, as the store last said (read at most once per poll
        # interval, or sooner once that time has passed), and the earliest retry this worker
        # has recorded since: a worker that idles after every message (an SMS at a time) does
        # not ask the store each time. New work wakes it anyway (``wake``).
        self._due: datetime | None = None
        self._due_read_at = -math.inf
        self._retry_at: datetime | None = None
        self._drained = False  # the last step's claim took less than it asked for

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"worker:{self.channel}:{self.dest.name}")

    async def stop(self, grace: float) -> None:
        """Stop claiming; let in-flight sends finish within ``grace`` s, then release the rest."""
        self._stopping = True
        self.wake.set()
        if self.task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout=grace)
        except TimeoutError:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        if self._inflight:
            await self.store.release(sorted(self._inflight), self.owner)
            self._inflight.clear()

    async def run(self) -> None:
        while not self._stopping:
            if self.paused:
                await self.wake.wait()
                self.wake.clear()
                continue
            try:
                worked = await self.step()
            except StoreError as exc:
                log.error("store error in worker; retrying",
                          extra={"channel": self.channel, "destination": self.dest.name,
                                 "error": str(exc)})
                worked = False
            if (not worked or self._drained) and not self._stopping:
                await self._idle()  # (a wake set meanwhile ends the wait at once)

    async def _idle(self) -> None:
        if self.leading is False:  # another instance sends: ask for the lock again next poll
            await self._rest(self.poll)
            return
        if self.breaker.state == "open":
            try:  # rest until the circuit may probe (or until told to stop)
                await asyncio.wait_for(self.wake.wait(), timeout=max(0.01,
                                                                     self.breaker.remaining()))
            except TimeoutError:
                pass
            self.wake.clear()
            return
        # until the destination can send at all (new work still ends the wait), else until the
        # next delivery falls due; at most a poll interval
        until: float | None = self.dest.ready_in() or None
        if until is None and (due := await self._next_due()) is not None:
            until = (due - utcnow()).total_seconds()
        timeout = self.poll if until is None else min(self.poll, max(0.005, until))
        try:
            async with asyncio.timeout(timeout):
                await self.wake.wait()
        except TimeoutError:
            pass
        self.wake.clear()

    async def _next_due(self) -> datetime | None:
        """When the next delivery falls due: the store's answer, kept for up to a poll interval
        while it lies ahead, and any earlier retry this worker recorded since."""
        now = asyncio.get_running_loop().time()
        if (now - self._due_read_at >= self.poll
                or (self._due is not None and self._due <= utcnow())):
            try:
                self._due = await self.store.next_due(self.channel, self.dest.name)
            except StoreError:
                self._due = None
            self._due_read_at, self._retry_at = now, None
        if self._due is None or self._retry_at is None:
            return self._due or self._retry_at
        return min(self._due, self._retry_at)

    async def _rest(self, seconds: float) -> None:
        """Wait ``seconds`` (work notifications do not cut it short), or until told to stop."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while not self._stopping and (left := end - loop.time()) > 0:
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=left)
            except TimeoutError:
                pass
            self.wake.clear()

    async def _lead(self) -> bool:
        """Whether this instance holds (or just took) the lock of an exclusive destination;
        logs each change ("leading", "standing by", "leadership lost")."""
        assert self.lock_name is not None
        error = None
        try:
            leading = await self.store.leader_lock(self.lock_name, self.instance)
        except StoreError as exc:
            leading, error = False, str(exc)
        if leading != self.leading:
            extra = {"channel": self.channel, "destination": self.dest.name,
                     "lock": self.lock_name, "instance": self.instance}
            if leading:
                log.info("leading", extra=extra)
            elif self.leading:
                log.warning("leadership lost", extra={**extra, "error": error})
            else:
                log.info("standing by", extra={**extra, "error": error})
            self.leading = leading
        return leading

    async def step(self) -> bool:
        """Claim and send one round. Returns False when nothing was due."""
        if self.lock_name is not None and not await self._lead():
            return False
        if not self.breaker.allow():
            return False
        if self.dest.ready_in() > 0:  # it would refuse every send: claim nothing
            return False
        probing = self.breaker.state == "half_open"
        batching = self.dest.batch_size > 1
        if batching:
            # Wait for the pace first: rows keep arriving meanwhile and join this batch.
            due = await self.store.next_due(self.channel, self.dest.name)
            if due is None or due > utcnow():
                return False
            await self.pacer.acquire()
            limit = self.dest.batch_size
        else:
            limit = max(1, self.dest.concurrency)
        if probing:
            limit = 1
        # In slices: one claim reads and decodes every message it takes, on the event loop, so
        # a whole batch at once would hold intake up for that long.
        batch: list[Delivery] = []
        self._drained = False
        while len(batch) < limit:
            want = min(CLAIM_SLICE, limit - len(batch))
            got = await self.store.claim(self.channel, self.dest.name, want, self.lease,
                                         self.owner)
            batch += got
            if len(got) < want:
                self._drained = True  # nothing more is due now: idle after this round
                break
        if not batch:
            return False
        self._inflight.update(d.id for d in batch)
        groups = [batch] if batching else [[d] for d in batch]
        await asyncio.gather(*(self._send_group(g, paced=not batching) for g in groups))
        return True

    async def _attempt(self, group: list[Delivery]) -> list[Outcome | BaseException]:
        """One call to the destination; every failure becomes an outcome per delivery."""
        outcomes: Sequence[Outcome | BaseException]
        try:
            outcomes = await asyncio.wait_for(self.dest.send_batch(group),
                                              timeout=self.lease * 0.8)
            if len(outcomes) != len(group):
                raise RuntimeError(f"{self.dest.name} returned {len(outcomes)} outcomes for "
                                   f"{len(group)} deliveries")
        except TimeoutError:
            err = RetryableError(f"no answer within {self.lease * 0.8:g}s", ambiguous=True)
            outcomes = [err] * len(group)
        except DeliveryError as exc:
            outcomes = [exc] * len(group)
        except Exception as exc:  # a bug in a destination: recorded, dead-lettered, never retried
            log.exception("destination raised an unexpected error",
                          extra={"channel": self.channel, "destination": self.dest.name,
                                 **_ids(group)})
            outcomes = [exc] * len(group)
        return list(outcomes)

    async def _isolate(self, group: list[Delivery],
                       outcomes: list[Outcome | BaseException]) -> list[Outcome | BaseException]:
        """A batch refused as a whole with a permanent error may hold one poison message: send
        each half again to find it, so that the good rows are not dead-lettered with it. When
        both halves are refused too, the fault is not in one message: stop digging."""
        if len(group) < 2 or not _whole_batch_permanent(outcomes):
            return outcomes
        log.warning("batch refused; splitting it to isolate the message at fault",
                    extra={"channel": self.channel, "destination": self.dest.name,
                           "batch": len(group), "error": str(outcomes[0]), **_ids(group)})
        mid = len(group) // 2
        halves = [group[:mid], group[mid:]]
        results = []
        for half in halves:
            await self.pacer.acquire()
            results.append(await self._attempt(half))
        if all(_whole_batch_permanent(r) for r in results):
            return outcomes
        out: list[Outcome | BaseException] = []
        for half, res in zip(halves, results, strict=True):
            out += await self._isolate(half, res)
        return out

    async def _send_group(self, group: list[Delivery], *, paced: bool) -> None:
        if paced:
            await self.pacer.acquire()
        started = utcnow()
        outcomes = await self._isolate(group, await self._attempt(group))
        finished = utcnow()
        if any(isinstance(o, Sent) for o in outcomes):
            self.breaker.record_success()
        elif all(isinstance(o, RetryableError) and not o.throttled for o in outcomes):
            self.breaker.record_failure()
        batch = f" (one request for {len(group)})" if len(group) > 1 else ""
        delivered = [d.message.id for d, o in zip(group, outcomes, strict=True)
                     if isinstance(o, Sent)]
        if delivered:  # one line per send, not per message: a batch carries up to 500 ids
            ids: dict[str, Any] = ({"message_id": delivered[0]} if len(delivered) == 1
                                   else {"message_ids": delivered})
            log.info("delivered", extra={"channel": self.channel, "destination": self.dest.name,
                                         "count": len(delivered), **ids,
                                         "seconds": round((finished - started).total_seconds(),
                                                          3)})
        # In slices, made and recorded one after the other, so that intake is not held up
        # behind one large transaction (or the making of 500 attempt results).
        results: list[AttemptResult] = []
        for start in range(0, len(group), RECORD_SLICE):
            part = [self._result(d, o, started, finished, batch)
                    for d, o in zip(group[start:start + RECORD_SLICE],
                                    outcomes[start:start + RECORD_SLICE], strict=True)]
            await self.store.record(part)
            results += part
        for r in results:
            if r.outcome == "retry" and r.next_attempt_at is not None and (
                    self._retry_at is None or r.next_attempt_at < self._retry_at):
                self._retry_at = r.next_attempt_at
        if self.metrics is not None:
            self.metrics.record(group, results)
        self._inflight.difference_update(d.id for d in group)
        self.on_recorded([d.message.id for d in group])

    def _result(self, d: Delivery, outcome: Outcome | BaseException, started: datetime,
                finished: datetime, batch: str = "") -> AttemptResult:
        if isinstance(outcome, Sent):  # the send's own "delivered" line names the message
            answer = "sent" + (f", {outcome.remote_id}" if outcome.remote_id else "") + (
                f" ({outcome.detail})" if outcome.detail else "")
            return AttemptResult(delivery_id=d.id, lease_owner=self.owner, outcome="delivered",
                                 started_at=started, finished_at=finished,
                                 remote_id=outcome.remote_id,
                                 summary=_summary(self.dest.describe(d) + batch, answer))
        extra = {"message_id": d.message.id, "channel": self.channel,
                 "destination": self.dest.name, "attempt": d.attempts + 1}
        decision = self.policy.decide(outcome, d.attempts + 1, d.message.received_at, finished)
        code = getattr(outcome, "code", None)
        common = dict(delivery_id=d.id, lease_owner=self.owner, started_at=started,
                      finished_at=finished, error=f"{type(outcome).__name__}: {outcome}",
                      summary=_summary(self.dest.describe(d) + batch,
                                       f"{type(outcome).__name__}: {outcome}"),
                      error_code=None if code is None else str(code),
                      ambiguous=bool(getattr(outcome, "ambiguous", False)))
        if isinstance(decision, DeadLetter):
            log.warning("dead-lettered", extra={**extra, "reason": decision.reason})
            common["error"] = decision.reason
            return AttemptResult(outcome="dead", **common)  # type: ignore[arg-type]
        log.info("retry scheduled", extra={**extra, "delay_s": round(decision.delay, 3),
                                           "error": str(outcome)})
        return AttemptResult(outcome="retry", next_attempt_at=decision.at,
                             **common)  # type: ignore[arg-type]


def _ids(group: Sequence[Delivery]) -> dict[str, Any]:
    """The log fields naming a group's messages: ``message_id``, or ``message_ids``."""
    ids = list(dict.fromkeys(d.message.id for d in group))
    return {"message_id": ids[0]} if len(ids) == 1 else {"message_ids": ids}


def _summary(request: str, answer: str) -> str:
    """An attempt's summary for the message log: what was asked, and what came back."""
    text = f"{request} -> {answer}"
    return text if len(text) <= 500 else text[:499] + "…"


def _whole_batch_permanent(outcomes: Sequence[Outcome | BaseException]) -> bool:
    """True when one permanent error was given for the whole batch (not per delivery)."""
    return (len(outcomes) > 1 and isinstance(outcomes[0], PermanentError)
            and all(o is outcomes[0] for o in outcomes))

