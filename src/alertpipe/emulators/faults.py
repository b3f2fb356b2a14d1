"""Injected faults: the next N calls to an API fail with a status, or hang first.

A fault is posted as JSON to ``POST /_emulator/faults``::

    {"api": "sheets" | "twilio" | "token",   which API's calls it hits
     "count": 3,                              how many calls (default 1; -1: every call, forever)
     "status": 429,                           answer this HTTP status, in the API's error shape
     "retry_after": 2,                        optional Retry-After header (seconds)
     "after_effect": false,                   true: perform the effect, then answer the error
     "hang": 0.5,                             wait this many seconds before processing
     "method": "spreadsheets.values.append",  optional: only calls to this method
     "match": "POISON"}                       optional: only calls whose body contains this text

``status`` and ``hang`` may be combined (wait, then fail). Faults of one API fire in the order
they were posted; a call takes the first pending fault whose ``api``, ``method`` and ``match``
all fit it, so a content-matching fault (a "poison" row that the API always refuses, e.g.
``{"api": "sheets", "status": 400, "match": "POISON", "count": -1}``: 400 INVALID_ARGUMENT)
leaves every other call alone. ``match`` is looked for, case-sensitively, in the raw request
body (UTF-8) and, for url-encoded forms such as Twilio's, in the decoded form text as well.
A fault with ``count: -1`` stays until ``DELETE /_emulator/faults`` or a reset.

A hung request is processed even if its client gives up, so a client timeout is an ambiguous
outcome exactly as it is against the real service. ``FaultBook.active`` counts faulty calls
still being processed (a hang not yet over), so a test can wait for the last late effect:
``state.wait_until(lambda s: s.faults.active == 0)``; firing and finishing a fault both wake
``wait_until``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

if TYPE_CHECKING:
    from alertpipe.emulators.state import EmulatorState

__all__ = ["APIS", "FOREVER", "Fault", "FaultBook", "FaultSpecError", "guarded"]

APIS = ("sheets", "twilio", "token")
#: ``count`` of a fault that hits every matching call until the faults are cleared.
FOREVER = -1
Renderer = Callable[[int], Response]


class FaultSpecError(ValueError):
    """A fault description that cannot be used (the admin endpoint answers 400)."""


@dataclass(slots=True)
class Fault:
    """One pending fault; ``count`` is how many more calls it will hit (-1: unlimited)."""

    api: str
    count: int = 1
    status: int | None = None
    hang: float | None = None
    retry_after: float | None = None
    after_effect: bool = False
    method: str | None = None
    match: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """Validate a decoded JSON fault description."""
        if not isinstance(data, dict):
            raise FaultSpecError("a fault is a JSON object")
        unknown = set(data) - {"api", "count", "status", "hang", "retry_after", "after_effect",
                               "method", "match"}
        if unknown:
            raise FaultSpecError(f"unknown fault fields: {sorted(unknown)}")
        if data.get("api") not in APIS:
            raise FaultSpecError(f"'api' must be one of {list(APIS)}")
        fault = cls(api=data["api"], count=data.get("count", 1), status=data.get("status"),
                    hang=data.get("hang"), retry_after=data.get("retry_after"),
                    after_effect=data.get("after_effect", False), method=data.get("method"),
                    match=data.get("match"))
        if (not isinstance(fault.count, int) or isinstance(fault.count, bool)
                or (fault.count < 1 and fault.count != FOREVER)):
            raise FaultSpecError("'count' must be a positive integer, or -1 for every call")
        if fault.match is not None and (not isinstance(fault.match, str) or not fault.match):
            raise FaultSpecError("'match' must be a non-empty string")
        if fault.status is None and fault.hang is None:
            raise FaultSpecError("a fault needs 'status' or 'hang'")
        if fault.status is not None and (not isinstance(fault.status, int)
                                         or not 400 <= fault.status <= 599):
            raise FaultSpecError("'status' must be an HTTP error status (400-599)")
        for name in ("hang", "retry_after"):
            value = getattr(fault, name)
            if value is not None and (not isinstance(value, int | float) or value < 0):
                raise FaultSpecError(f"'{name}' must be a non-negative number of seconds")
        return fault


class FaultBook:
    """Pending faults, consumed call by call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._active = 0

    def add(self, fault: Fault) -> None:
        """Queue ``fault`` behind the faults already pending."""
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        """The pending faults as JSON objects."""
        with self._lock:
            return [asdict(fault) for fault in self._faults]

    def wants_body(self, api: str) -> bool:
        """Whether a pending fault of ``api`` matches on the request body."""
        with self._lock:
            return any(f.api == api and f.match is not None for f in self._faults)

    def take(self, api: str, method: str, body: bytes | None = None) -> Fault | None:
        """Consume one hit of the first fault matching this call, if any.

        A fault with ``match`` fits only when ``body`` is given and contains the text.
        """
        texts = _body_texts(body) if body is not None else ()
        with self._lock:
            for fault in self._faults:
                if fault.api != api or fault.method not in (None, method):
                    continue
                if fault.match is not None and not any(fault.match in t for t in texts):
                    continue
                if fault.count != FOREVER:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                return fault
        return None

    @property
    def active(self) -> int:
        """Faulty calls still being processed (hanging, or performing their effect)."""
        with self._lock:
            return self._active

    def begin(self) -> None:
        """A faulty call starts being processed (see ``active``)."""
        with self._lock:
            self._active += 1

    def end(self) -> None:
        """A faulty call has been answered (see ``active``)."""
        with self._lock:
            self._active -= 1


def _body_texts(body: bytes) -> tuple[str, ...]:
    """The body as text, plus its url-decoded form when that differs (Twilio's forms)."""
    text = body.decode("utf-8", errors="replace")
    decoded = unquote_plus(text)
    return (text,) if decoded == text else (text, decoded)


def _with_retry_after(response: Response, fault: Fault) -> Response:
    if fault.retry_after is not None:
        seconds = fault.retry_after
        response.headers["Retry-After"] = str(int(seconds) if float(seconds).is_integer()
                                              else seconds)
    return response


async def guarded(request: Request, api: str, method: str, render: Renderer,
                  handler: Callable[[], Awaitable[Response]]) -> Response:
    """Count the call, apply the next matching fault, otherwise run ``handler``. A client that
    went away before its request was read gets nothing done (as at the real service)."""
    try:
        return await _guarded(request, api, method, render, handler)
    except ClientDisconnect:
        return Response(status_code=499)


async def _guarded(request: Request, api: str, method: str, render: Renderer,
                   handler: Callable[[], Awaitable[Response]]) -> Response:
    state: EmulatorState = request.app.state.emulator
    state.count_call(api, method)
    # The body is read (Starlette caches it for the handler) only when a fault looks at it.
    body = await request.body() if state.faults.wants_body(api) else None
    fault = state.faults.take(api, method, body)
    if fault is None:
        return await handler()
    # Read the whole request first, as a real server has it before it stalls: a client that
    # gives up during the hang must not take the request with it.
    await request.body()
    with state.lock:
        state.faults_fired[api] += 1
    state.faults.begin()
    state.notify()

    async def faulty() -> Response:
        try:
            if fault.hang:
                await asyncio.sleep(fault.hang)
            if fault.status is None:
                return await handler()
            if fault.after_effect:
                await handler()
            return _with_retry_after(render(fault.status), fault)
        finally:
            state.faults.end()
            state.notify()

    # Shielded: a client that times out and disconnects does not cancel the effect.
    return await asyncio.shield(state.spawn(faulty()))
