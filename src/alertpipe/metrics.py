"""Prometheus metrics of one engine, served at ``GET /metrics``.

Each :class:`EngineMetrics` owns its own ``CollectorRegistry`` (never the global one), so several
engines in one process (tests) do not collide. The metrics, and where they come from::

    alertpipe_messages_received_total{channel,outcome,reason}    intake answers (see below)
    alertpipe_deliveries_total{channel,destination,outcome}      attempt outcomes recorded by
                                                                  this instance's workers:
                                                                  delivered, retry, dead
    alertpipe_delivery_latency_seconds{channel,destination}      histogram: received_at ->
                                                                  delivered
    alertpipe_attempt_duration_seconds{channel,destination}      histogram: one destination call
    alertpipe_queue_depth{channel,destination,state}             pending, in_flight, dead
    alertpipe_oldest_pending_age_seconds{channel,destination}    0 when nothing is pending
    alertpipe_circuit_state{channel,destination,instance}        0 closed, 1 half-open, 2 open
    alertpipe_alert_firing{rule}                                 1 while a rule's incident is open

Intake outcomes: ``accepted``; ``duplicate`` (reason ``dedupe``, ``event`` or ``idempotency``,
the last an idempotent replay); ``rejected`` (reason: the answer's error code, e.g.
``validation_failed``, ``idempotency_conflict``, ``unauthorized``, ``forbidden``,
``rate_limited``); ``unavailable`` (reason ``backpressure`` or ``store``: a 503); ``error`` (a
500). Requests refused while the source reads and parses them (400, 413, 415, a bad webhook
signature) answer before the message reaches the engine and are not counted here.

The queue gauges are read from ``store.stats()`` at scrape time, so with several instances on one
PostgreSQL store every instance shows the whole cluster's queues (aggregate them with ``max``, not
``sum``); counters, histograms and circuit states are this instance's own.

Cost on the intake path: the answer increments one plain ``int`` attribute of the channel's
:class:`IntakeCounts` (read at scrape time), not a prometheus-client child (which takes a lock).
Intake runs on the event loop's thread only, so the increment needs no lock.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alertpipe.destinations.base import Delivery
from alertpipe.errors import StoreError
from alertpipe.message import utcnow
from alertpipe.store.base import AttemptResult, QueueStats, Store

log = logging.getLogger("alertpipe.metrics")

#: Accept -> delivered spans retries and backoff: from a fraction of a second to a day.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600,
                   24 * 3600)
ATTEMPT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}
QUEUE_STATES = ("pending", "in_flight", "dead")


class IntakeCounts:
    """One channel's intake answers as plain ints: ``accepted`` (the hot path: ``+= 1``) and
    every other ``(outcome, reason)`` through :meth:`count`."""

    __slots__ = ("accepted", "other")

    def __init__(self) -> None:
        self.accepted = 0
        self.other: dict[tuple[str, str], int] = {}

    def count(self, outcome: str, reason: str = "") -> None:
        key = (outcome, reason)
        self.other[key] = self.other.get(key, 0) + 1


class DeliveryMetrics:
    """The pre-bound metric children of one (channel, destination) worker."""

    __slots__ = ("attempt", "dead", "delivered", "latency", "retry")

    def __init__(self, deliveries: Counter, latency: Histogram, attempt: Histogram,
                 channel: str, destination: str) -> None:
        self.delivered = deliveries.labels(channel, destination, "delivered")
        self.retry = deliveries.labels(channel, destination, "retry")
        self.dead = deliveries.labels(channel, destination, "dead")
        self.latency = latency.labels(channel, destination)
        self.attempt = attempt.labels(channel, destination)

    def record(self, group: Sequence[Delivery], results: Sequence[AttemptResult]) -> None:
        """Count one send's outcomes (``results[i]`` belongs to ``group[i]``)."""
        if not results:
            return
        self.attempt.observe((results[0].finished_at - results[0].started_at).total_seconds())
        retry = dead = 0
        for d, r in zip(group, results, strict=True):
            if r.outcome == "delivered":
                self.delivered.inc()
                self.latency.observe(
                    max(0.0, (r.finished_at - d.message.received_at).total_seconds()))
            elif r.outcome == "retry":
                retry += 1
            else:
                dead += 1
        if retry:
            self.retry.inc(retry)
        if dead:
            self.dead.inc(dead)


def default_instance() -> str:
    """This process, as the ``instance`` label of per-process state: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class EngineMetrics:
    """The registry and metric objects of one engine.

    ``circuits`` and ``alerts`` are set by the engine once its workers and monitor exist: they
    return ``(channel, destination, state)`` per breaker and ``(rule, firing)`` per rule.
    """

    def __init__(self, channels: Iterable[str], pairs: Iterable[tuple[str, str]], *,
                 instance: str | None = None) -> None:
        self.instance = instance or default_instance()
        self.registry = CollectorRegistry()
        self.intake: dict[str, IntakeCounts] = {c: IntakeCounts() for c in channels}
        self.pairs = list(pairs)
        self.deliveries = Counter(
            "alertpipe_deliveries", "Delivery attempt outcomes recorded by this instance "
            "(delivered, retry, dead)", ["channel", "destination", "outcome"],
            registry=self.registry)
        self.latency = Histogram(
            "alertpipe_delivery_latency_seconds", "From a message's receipt to its delivery "
            "(one observation per delivered row, retries included)",
            ["channel", "destination"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.attempt = Histogram(
            "alertpipe_attempt_duration_seconds", "Duration of one call to a destination",
            ["channel", "destination"], buckets=ATTEMPT_BUCKETS, registry=self.registry)
        self.circuits: Callable[[], Iterable[tuple[str, str, str]]] = tuple
        self.alerts: Callable[[], Iterable[tuple[str, bool]]] = tuple
        self._queues: Sequence[QueueStats] | None = None
        self.registry.register(_Snapshot(self))

    def delivery(self, channel: str, destination: str) -> DeliveryMetrics:
        """Pre-bound children for one worker (the series exist, at 0, from now on)."""
        return DeliveryMetrics(self.deliveries, self.latency, self.attempt, channel, destination)

    async def exposition(self, store: Store, accept: str | None = None) -> tuple[bytes, str]:
        """``(body, content type)`` of a scrape, in the format the ``Accept`` header asks for
        (Prometheus text by default, OpenMetrics on request). Queue gauges are read from
        ``store`` now; when the store cannot answer they are left out and a warning logged."""
        try:
            queues: Sequence[QueueStats] | None = await store.stats()
        except StoreError as exc:
            log.warning("queue depth not read for /metrics", extra={"error": str(exc)})
            queues = None
        encoder, content_type = choose_encoder(accept or "")
        self._queues = queues  # no await between here and the encoder: scrapes do not mix
        try:
            return encoder(self.registry), content_type
        finally:
            self._queues = None


class _Snapshot(Collector):
    """The metrics read at scrape time: intake counts, queues, circuits, alert rules."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        received = CounterMetricFamily(
            "alertpipe_messages_received", "Intake answers by channel, outcome and reason",
            labels=["channel", "outcome", "reason"])
        for channel, counts in m.intake.items():
            received.add_metric([channel, "accepted", ""], counts.accepted)
            for (outcome, reason), n in sorted(counts.other.items()):
                received.add_metric([channel, outcome, reason], n)
        yield received
        if self._queues_known():
            yield from self._queue_families()
        circuit = GaugeMetricFamily(
            "alertpipe_circuit_state", "Circuit breaker of this instance's worker: "
            "0 closed, 1 half-open, 2 open", labels=["channel", "destination", "instance"])
        for channel, destination, state in m.circuits():
            circuit.add_metric([channel, destination, m.instance], CIRCUIT_VALUES.get(state, 2))
        yield circuit
        firing = GaugeMetricFamily("alertpipe_alert_firing",
                                   "1 while the alert rule's incident is open",
                                   labels=["rule"])
        for rule, on in m.alerts():
            firing.add_metric([rule], 1 if on else 0)
        yield firing

    def _queues_known(self) -> bool:
        return self.m._queues is not None

    def _queue_families(self) -> Iterator[Metric]:
        m = self.m
        depth = GaugeMetricFamily(
            "alertpipe_queue_depth", "Deliveries per state, read from the store (the whole "
            "cluster's, with a shared store)", labels=["channel", "destination", "state"])
        age = GaugeMetricFamily(
            "alertpipe_oldest_pending_age_seconds", "Age of the oldest undelivered delivery "
            "(pending or in flight); 0 when there is none", labels=["channel", "destination"])
        now = utcnow()
        stats = {(s.channel, s.destination): s for s in m._queues or ()}
        for key in dict.fromkeys([*m.pairs, *stats]):
            s = stats.get(key)
            values = (0, 0, 0) if s is None else (s.pending, s.in_flight, s.dead)
            for state, n in zip(QUEUE_STATES, values, strict=True):
                depth.add_metric([*key, state], n)
            oldest = None if s is None else s.oldest_pending_at
            age.add_metric(list(key), 0.0 if oldest is None
                           else max(0.0, (now - oldest).total_seconds()))
        yield depth
        yield age


__all__ = ["CIRCUIT_VALUES", "DeliveryMetrics", "EngineMetrics", "IntakeCounts",
           "default_instance"]
