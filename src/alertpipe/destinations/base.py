"""What a destination is: a named sender that the engine calls with claimed deliveries.

A destination never retries on its own and never sleeps for backoff. It sends, and it either
returns :class:`Sent` or raises (or returns, per delivery in a batch) a
:class:`~alertpipe.errors.RetryableError` / :class:`~alertpipe.errors.PermanentError`.
The engine alone decides to retry, back off or dead-letter.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from alertpipe.errors import DeliveryError, PermanentError, UsageError
from alertpipe.message import Message


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message on its way to one destination (and, for fan-out, one target such as a phone).

    ``attempts`` counts the attempts already made before the current one. ``ambiguous`` is true
    when the previous attempt may have taken effect (a timeout after the request was sent): a
    destination that can look the effect up should do so before sending again.
    """

    id: int
    message: Message
    destination: str
    target: str | None
    attempts: int
    ambiguous: bool = False


@dataclass(frozen=True, slots=True)
class Sent:
    """A successful send. ``remote_id`` is the remote system's id (Twilio SID, Sheets range)."""

    remote_id: str | None = None
    detail: str | None = None


Outcome = Sent | DeliveryError


class DestinationConfig(BaseModel):
    """Settings every destination understands; each destination subclasses this with its own."""

    model_config = ConfigDict(extra="forbid")
    type: str


def optional_secret(value: Any) -> Any:
    """A ``mode="before"`` validator body for an optional secret setting: a blank value (an unset
    env var interpolates to "") means not set (None); anything but a string is refused."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if raw is not None and not isinstance(raw, str):
        raise ValueError("must be a string (quote it in YAML)")
    return None if raw is None or not raw.strip() else value


class Destination(abc.ABC):
    """Base class of every destination.

    Class attributes a subclass sets: ``type_name`` (the ``type:`` in YAML) and ``Config`` (its
    pydantic config spec). Instance attributes the engine reads:

    - ``batch_size``: how many deliveries one :meth:`send_batch` call may carry.
    - ``concurrency``: how many sends may be in flight at once.
    - ``max_requests_per_minute``: outbound pacing the engine applies (``None``: unpaced).

    ``exclusive`` (a class attribute): when True, only one engine instance in a cluster sends
    to the destination at a time, the one holding the store's leader lock for its
    :meth:`rate_key`; its pacing and batching then hold for the whole cluster. Otherwise every
    instance claims its share of the deliveries and paces itself.
    """

    type_name: ClassVar[str]
    Config: ClassVar[type[DestinationConfig]]
    exclusive: ClassVar[bool] = False

    batch_size: int = 1
    concurrency: int = 1
    max_requests_per_minute: float | None = None

    def __init__(self, name: str, config: Any) -> None:
        expected = getattr(type(self), "Config", None)
        if expected is not None and not isinstance(config, expected):
            raise UsageError(f"{type(self).__name__} needs a {expected.__name__}, got "
                             f"{type(config).__name__}")
        self.name = name
        self.config = config
        self.http: httpx.AsyncClient | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def check(self) -> None:
        """Validate credentials and settings at start-up; raise CredentialsError/ConfigError."""

    async def start(self, http: httpx.AsyncClient) -> None:
        """Called once before the first send, with the engine's pooled HTTP client."""
        self.http = http

    async def close(self) -> None:
        """Release resources. The HTTP client belongs to the engine and is not closed here."""

    # -- routing ---------------------------------------------------------------------------
    def targets(self, message: Message) -> Sequence[str | None]:
        """The targets a message fans out to; one delivery row is written per target."""
        return [None]

    def rate_key(self) -> str:
        """Destinations sharing a key share one outbound pace (for example one Google user)."""
        return f"{self.type_name}:{self.name}"

    # -- sending ---------------------------------------------------------------------------
    def ready_in(self) -> float:
        """Seconds until a send could go out at all (0: now). While it is positive the worker
        claims nothing: the deliveries wait as they are, without spending attempts on a send
        that the destination would refuse itself (an SMS cap that every recipient has hit)."""
        return 0.0

    async def send(self, delivery: Delivery) -> Sent:
        """Send one delivery. Override this, or :meth:`send_batch` for batching destinations."""
        raise PermanentError(f"destination {self.name!r} does not implement send()")

    async def send_batch(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        """Send several deliveries; return one outcome per delivery, in order.

        The default sends each one concurrently through :meth:`send`.
        """
        async def one(d: Delivery) -> Outcome:
            try:
                return await self.send(d)
            except DeliveryError as exc:
                return exc

        return list(await asyncio.gather(*(one(d) for d in deliveries)))

    def describe(self, delivery: Delivery) -> str:
        """A short human summary of where a delivery goes ("+1555… via Twilio"); no secrets."""
        return f"{self.type_name}:{self.name}" + (f" → {delivery.target}" if delivery.target
                                                   else "")
