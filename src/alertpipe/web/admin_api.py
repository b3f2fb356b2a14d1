"""The admin API (JSON, under ``/api/``; described in ``/openapi.json``).

Reads need an API key with the ``read`` right; actions need the ``admin`` right on the channel
concerned (with no keys configured the API is open, as the rest of the engine's). Every action
is written to the audit log under the key's id. Errors are ``{"status": "rejected", "error",
"message"}`` with 400 (bad parameters), 401/403, 404 (unknown message, delivery, channel or
destination) or 409 (the state forbids the action).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertpipe.errors import StoreUnavailable
from alertpipe.store.base import DeliveryRecord, StoredMessage
from alertpipe.web import actions
from alertpipe.web.queries import (
    MESSAGE_STATES,
    ChannelView,
    channel_views,
    find_messages,
    message_state,
    order_id_of,
    parse_when,
)

if TYPE_CHECKING:
    from alertpipe.engine.core import Engine

MAX_LIMIT = 200
API_ROLE = "api"

__all__ = ["admin_routes", "channel_json", "delivery_json", "summary_json"]


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat()


def reject(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"status": "rejected", "error": error, "message": message},
                        status_code=status)


class BadRequest(Exception):
    pass


def delivery_json(d: DeliveryRecord) -> dict[str, Any]:
    return {"id": d.id, "message_id": d.message_id, "channel": d.channel,
            "destination": d.destination, "target": d.target, "status": d.status,
            "attempts": d.attempts, "next_attempt_at": _iso(d.next_attempt_at),
            "updated_at": _iso(d.updated_at), "remote_id": d.remote_id,
            "error": d.last_error, "error_code": d.last_error_code}


def summary_json(stored: StoredMessage) -> dict[str, Any]:
    m = stored.message
    return {"id": m.id, "channel": m.channel, "received_at": m.received_at.isoformat(),
            "order_id": order_id_of(m.body) or None, "state": message_state(stored),
            "deliveries": [{"id": d.id, "destination": d.destination, "target": d.target,
                            "status": d.status, "attempts": d.attempts}
                           for d in stored.deliveries]}


def channel_json(view: ChannelView) -> dict[str, Any]:
    return {
        "name": view.name, "state": view.state,
        "source": {"type": view.source_type, "path": view.source_path},
        "counters": {"pending": view.total("pending"), "in_flight": view.total("in_flight"),
                     "delivered": view.total("delivered"), "dead": view.total("dead"),
                     "received_last_hour": view.received_last_hour,
                     "delivered_last_hour": view.delivered_last_hour,
                     "failed_last_hour": view.failed_last_hour},
        "error_rate": view.error_rate,
        "destinations": [{"name": d.name, "type": d.type, "pending": d.pending,
                          "in_flight": d.in_flight, "delivered": d.delivered, "dead": d.dead,
                          "oldest_pending_at": _iso(d.oldest_pending_at),
                          "oldest_pending_age_seconds": d.oldest_pending_age,
                          "circuit": d.circuit} for d in view.destinations],
        "throughput": [{"minute": p.minute.isoformat(), "received": p.received,
                        "delivered": p.delivered, "failed": p.failed} for p in view.points],
    }


def _int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if not (value.isascii() and value.lstrip("-").isdigit() and len(value) < 19):
        raise BadRequest(f"{name} must be an integer")
    n = int(value)
    if not low <= n <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return n


def _when(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_when(value)
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 date or date-time") from None


def _delivery_id(request: Request) -> int:
    text = request.path_params["delivery_id"]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise BadRequest("a delivery id is a positive integer")
    return int(text)


Handler = Callable[[Request], Awaitable[Response]]


def admin_routes(engine: Engine) -> list[Route]:
    auth = engine.auth

    def guarded(right: str, fn: Callable[[Request, str], Awaitable[Response]]) -> Handler:
        async def endpoint(request: Request) -> Response:
            who = auth.check(request, right, None)
            if isinstance(who, Response):
                return who
            try:
                return await fn(request, who)
            except BadRequest as exc:
                return reject(400, "bad_request", str(exc))
            except actions.ActionError as exc:
                return reject(exc.status, exc.error, exc.message)
            except StoreUnavailable as exc:
                return reject(503, "unavailable", f"the store cannot answer now: {exc}")
        return endpoint

    def on_channel(request: Request, channel: str) -> Response | None:
        """403 unless the caller's key has the admin right on this channel."""
        who = auth.check(request, "admin", channel)
        return who if isinstance(who, Response) else None

    async def channels(request: Request, who: str) -> Response:
        # Queues, counters and traffic come from the store (the whole cluster); circuits and an
        # operator's stop are this instance's, which "instance" names.
        return JSONResponse({"channels": [channel_json(v) for v in await channel_views(engine)],
                             "instance": engine.instance_id})

    def channel_action(run: bool) -> Callable[[Request, str], Awaitable[Response]]:
        async def act(request: Request, who: str) -> Response:
            name = request.path_params["name"]
            if name not in engine.channels:
                raise actions.ActionError(404, "not_found", f"no channel named {name!r}")
            if (refused := on_channel(request, name)) is not None:
                return refused
            state = await actions.set_channel(engine, actions.Actor(who, API_ROLE), name, run)
            return JSONResponse({"name": name, "state": state})
        return act

    async def messages(request: Request, who: str) -> Response:
        q = request.query_params
        status = q.get("status")
        if status is not None and status not in MESSAGE_STATES:
            raise BadRequest(f"status must be one of {', '.join(MESSAGE_STATES)}")
        try:
            page = await find_messages(
                engine, channel=q.get("channel") or None, status=status,
                destination=q.get("destination") or None, order_id=q.get("order_id") or None,
                text=q.get("q") or None, since=_when(q.get("since"), "since"),
                until=_when(q.get("until"), "until"), cursor=q.get("cursor") or None,
                limit=_int(q.get("limit"), "limit", 50, 1, MAX_LIMIT))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return JSONResponse({"messages": [summary_json(s) for s in page.messages],
                             "next_cursor": page.next_cursor})

    async def dead(request: Request, who: str) -> Response:
        q = request.query_params
        rows = await engine.store.list_dead(q.get("channel") or None,
                                            _int(q.get("limit"), "limit", 100, 1, 1000))
        return JSONResponse({"deliveries": [delivery_json(d) for d in rows]})

    async def resend(request: Request, who: str) -> Response:
        try:
            data = await request.json()
        except ValueError:
            raise BadRequest('expected a JSON body {"destination": NAME}') from None
        if not isinstance(data, dict) or not isinstance(data.get("destination"), str):
            raise BadRequest('expected a JSON body {"destination": NAME}')
        stored = await actions.load_message(engine, request.path_params["message_id"])
        if (refused := on_channel(request, stored.message.channel)) is not None:
            return refused
        added = await actions.resend(engine, actions.Actor(who, API_ROLE), stored.message.id,
                                     data["destination"])
        return JSONResponse({"message_id": stored.message.id,
                             "deliveries": [delivery_json(d) for d in added]}, status_code=202)

    def delivery_action(name: str) -> Callable[[Request, str], Awaitable[Response]]:
        act = actions.retry if name == "retry" else actions.discard

        async def endpoint(request: Request, who: str) -> Response:
            rec = await actions.load_delivery(engine, _delivery_id(request))
            if (refused := on_channel(request, rec.channel)) is not None:
                return refused
            done = await act(engine, actions.Actor(who, API_ROLE), rec.id)
            return JSONResponse({"delivery": delivery_json(done)})
        return endpoint

    return [
        Route("/api/channels", guarded("read", channels)),
        Route("/api/channels/{name}/stop", guarded("admin", channel_action(False)),
              methods=["POST"]),
        Route("/api/channels/{name}/start", guarded("admin", channel_action(True)),
              methods=["POST"]),
        Route("/api/messages", guarded("read", messages)),
        Route("/api/messages/{message_id}/resend", guarded("admin", resend), methods=["POST"]),
        Route("/api/dead", guarded("read", dead)),
        Route("/api/deliveries/{delivery_id}/retry", guarded("admin", delivery_action("retry")),
              methods=["POST"]),
        Route("/api/deliveries/{delivery_id}/discard",
              guarded("admin", delivery_action("discard")), methods=["POST"]),
    ]
