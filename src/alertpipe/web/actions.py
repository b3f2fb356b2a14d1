"""What an operator may do, for the admin API and the dashboard alike: resend a message to a
destination, retry or discard a dead letter, stop or start a channel. Each action checks the
state, acts through the store or the engine, wakes the worker concerned and appends an audit
entry; a refusal is an :class:`ActionError` carrying the HTTP status to answer with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from alertpipe.destinations.base import Delivery
from alertpipe.store.base import DeliveryRecord, NewDelivery, StoredMessage

if TYPE_CHECKING:
    from alertpipe.engine.core import Engine

__all__ = ["ActionError", "Actor", "discard", "load_delivery", "load_message", "resend",
           "retry", "set_channel"]


class ActionError(Exception):
    """A refused action: ``status`` (404, 409), a short ``error`` code and a sentence."""

    def __init__(self, status: int, error: str, message: str) -> None:
        self.status = status
        self.error = error
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, as the audit log names them: a dashboard user and role, or ``key:ID`` and
    ``api``."""

    name: str
    role: str


async def audit(engine: Engine, actor: Actor, action: str, target: str,
                detail: str | None = None) -> None:
    await engine.store.append_audit(actor.name, actor.role, action, target, detail)


async def load_message(engine: Engine, message_id: str) -> StoredMessage:
    stored = await engine.store.get_message(message_id)
    if stored is None:
        raise ActionError(404, "not_found", f"no message with id {message_id!r}")
    return stored


async def load_delivery(engine: Engine, delivery_id: int) -> DeliveryRecord:
    rec = await engine.store.get_delivery(delivery_id)
    if rec is None:
        raise ActionError(404, "not_found", f"no delivery with id {delivery_id}")
    return rec


def _wake(engine: Engine, channel: str, destination: str) -> None:
    worker = engine.workers.get((channel, destination))
    if worker is not None:
        worker.wake.set()


async def resend(engine: Engine, actor: Actor, message_id: str,
                 destination: str) -> list[DeliveryRecord]:
    """Add new deliveries of a stored message to one destination of its channel, with the
    destination's current targets (as ``alertpipe replay --to`` does); return them."""
    stored = await load_message(engine, message_id)
    message = stored.message
    channel = engine.channels.get(message.channel)
    if channel is None:
        raise ActionError(409, "channel_gone", f"channel {message.channel!r} of this message "
                          "is no longer configured")
    dest = channel.destinations.get(destination)
    if dest is None:
        raise ActionError(404, "unknown_destination",
                          f"channel {message.channel!r} has no destination {destination!r}; "
                          f"its destinations are: {', '.join(channel.destinations)}")
    targets = list(dest.targets(message))
    if not targets:
        raise ActionError(409, "no_targets", f"destination {destination!r} has no target for "
                          "this message")
    ids = await engine.store.add_deliveries(message.id,
                                            [NewDelivery(destination, t) for t in targets])
    _wake(engine, message.channel, destination)
    summary = ", ".join(dest.describe(Delivery(id=i, message=message, destination=destination,
                                               target=t, attempts=0))
                        for i, t in zip(ids, targets, strict=True))
    await audit(engine, actor, "resend", message.id,
                f"to {destination}: deliveries {', '.join(map(str, ids))} ({summary})")
    out = []
    for i in ids:
        rec = await engine.store.get_delivery(i)
        if rec is not None:
            out.append(rec)
    return out


async def retry(engine: Engine, actor: Actor, delivery_id: int) -> DeliveryRecord:
    """Make a dead (or discarded) delivery pending again, due now."""
    rec = await load_delivery(engine, delivery_id)
    if rec.status not in ("dead", "discarded") or not await engine.store.requeue(delivery_id):
        raise ActionError(409, "not_dead", f"delivery {delivery_id} is {rec.status}; only a "
                          "dead or discarded delivery can be retried")
    _wake(engine, rec.channel, rec.destination)
    await audit(engine, actor, "retry", rec.message_id, f"delivery {delivery_id} to "
                f"{rec.destination}")
    return await load_delivery(engine, delivery_id)


async def discard(engine: Engine, actor: Actor, delivery_id: int) -> DeliveryRecord:
    """Mark a dead delivery discarded: nobody needs to act on it any more."""
    rec = await load_delivery(engine, delivery_id)
    if rec.status != "dead" or not await engine.store.discard(delivery_id):
        raise ActionError(409, "not_dead", f"delivery {delivery_id} is {rec.status}; only a "
                          "dead delivery can be discarded")
    await audit(engine, actor, "discard", rec.message_id, f"delivery {delivery_id} to "
                f"{rec.destination}")
    return await load_delivery(engine, delivery_id)


async def set_channel(engine: Engine, actor: Actor, name: str, run: bool) -> str:
    """Start (``run``) or stop a channel; return its state. Idempotent."""
    if name not in engine.channels:
        raise ActionError(404, "not_found", f"no channel named {name!r}")
    if run:
        engine.start_channel(name)
    else:
        engine.stop_channel(name)
    await audit(engine, actor, "channel.start" if run else "channel.stop", name)
    return await engine.channel_state(name)
