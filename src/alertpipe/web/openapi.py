"""The engine's OpenAPI 3.1 document, built from the running configuration.

Each channel's JSON source appears with the order schema (taken from the pydantic model that
validates it), every answer it can give, and the admin endpoints. Served at ``/openapi.json``;
the test suite runs schemathesis against it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alertpipe.schemas.order import Order

if TYPE_CHECKING:
    from alertpipe.engine.core import Engine

_REF = "#/components/schemas/{model}"


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Rejection"}}}}


def _json(description: str, ref: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _components() -> dict[str, Any]:
    order = Order.model_json_schema(ref_template=_REF)
    defs = order.pop("$defs", {})
    for model in (order, *defs.values()):
        _nullable_optionals(model)
    return {
        "Order": order, **defs,
        "Accepted": {"type": "object", "required": ["status", "message_id"], "properties": {
            "status": {"enum": ["accepted", "duplicate"]}, "message_id": {"type": "string"}}},
        "Outcome": {"type": "object", "required": ["status", "message_id"], "properties": {
            "status": {"enum": ["delivered", "partial", "failed", "filtered", "accepted"]},
            "message_id": {"type": "string"},
            "deliveries": {"type": "array", "items": {"type": "object"}}}},
        "Rejection": {"type": "object", "required": ["status", "error", "message"], "properties": {
            "status": {"const": "rejected"}, "error": {"type": "string"},
            "message": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object", "required": [
                "field", "message"], "properties": {"field": {"type": "string"},
                                                    "message": {"type": "string"},
                                                    "type": {"type": "string"}}}}}},
        "Health": {"type": "object"},
    }


def _nullable_optionals(model: dict[str, Any]) -> None:
    """The validator reads null as "not given" for optional fields whose default is null, and
    as an empty list for ``items``; say so (fields with another default refuse null)."""
    for name, prop in model.get("properties", {}).items():
        if not (prop.get("default", ...) is None or name == "items"):
            continue
        alternatives = prop.get("anyOf", [prop])
        if not any(a.get("type") == "null" for a in alternatives):
            keep = {k: v for k, v in prop.items() if k in ("title", "default", "description")}
            body = {k: v for k, v in prop.items() if k not in keep}
            model["properties"][name] = {**keep, "anyOf": [body, {"type": "null"}]}


def _ingest(channel: str) -> dict[str, Any]:
    return {"post": {
        "summary": f"Submit one order to channel {channel!r}",
        "operationId": f"post_{channel}",
        "parameters": [
            {"name": "Idempotency-Key", "in": "header", "required": False,
             "schema": {"type": "string", "minLength": 1, "maxLength": 255}},
            {"name": "Prefer", "in": "header", "required": False,
             "description": "RFC 7240; wait=N asks for the outcome within N seconds",
             "schema": {"type": "string"}},
        ],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Order"}}}},
        "responses": {
            "200": {"description": "a duplicate of an earlier order, or (with Prefer: wait) "
                                   "every destination's outcome",
                    "content": {"application/json": {"schema": {"anyOf": [
                        {"$ref": "#/components/schemas/Accepted"},
                        {"$ref": "#/components/schemas/Outcome"}]}}}},
            "202": {"description": "accepted: stored durably, delivery pending",
                    "content": {"application/json": {"schema": {"anyOf": [
                        {"$ref": "#/components/schemas/Accepted"},
                        {"$ref": "#/components/schemas/Outcome"}]}}}},
            "400": _error("malformed JSON or a malformed header"),
            "401": _error("a valid API key is required"),
            "403": _error("the API key lacks the right"),
            "409": _error("the Idempotency-Key was used with another body"),
            "413": _error("the body is over the limit"),
            "415": _error("the body is not JSON"),
            "422": _error("invalid fields, each listed"),
            "429": _error("rate limited; see Retry-After"),
            "503": _error("the store cannot accept or the backlog is full; see Retry-After"),
        }}}


def openapi_document(engine: Engine) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for name, ch in engine.channels.items():
        if ch.source.type_name == "http_json":
            paths[ch.source.config.path] = _ingest(name)
    paths["/healthz"] = {"get": {"summary": "Liveness", "operationId": "healthz",
                                 "responses": {"200": _json("alive", "Health")}}}
    paths["/readyz"] = {"get": {"summary": "Readiness: store writable, workers running",
                                "operationId": "readyz",
                                "responses": {"200": _json("ready", "Health"),
                                              "503": _json("not ready", "Health")}}}
    paths["/api/messages/{message_id}"] = {"get": {
        "summary": "One message, its deliveries and every attempt", "operationId": "message",
        "parameters": [{"name": "message_id", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": _json("the message", "Outcome"), "401": _error("no valid key"),
                      "403": _error("the key lacks the read right"),
                      "404": _error("no such message")}}}
    paths["/api/queues"] = {"get": {
        "summary": "Queue depth per destination", "operationId": "queues",
        "responses": {"200": _json("queues", "Health"), "401": _error("no valid key"),
                      "403": _error("the key lacks the read right")}}}
    paths["/metrics"] = {"get": {
        "summary": "Prometheus metrics (text exposition format; OpenMetrics when the Accept "
                   "header asks for it); see docs/operations.md", "operationId": "metrics",
        "responses": {"200": {"description": "the metrics", "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/openmetrics-text": {"schema": {"type": "string"}}}},
            "401": _error("no valid key"), "403": _error("the key lacks the read right")}}}
    paths.update(_admin_paths())
    return {"openapi": "3.1.0",
            "info": {"title": "alertpipe", "version": "0.1.0",
                     "description": "The engine's own HTTP API."},
            "paths": paths, "components": {"schemas": {**_components(),
                                                       **_admin_components()}}}


# -- the admin API (web/admin_api.py) ----------------------------------------------------------
_STR_OR_NULL = {"type": ["string", "null"]}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_READ_ERRORS = {"400": _error("a parameter is malformed"), "401": _error("no valid key"),
                "403": _error("the key lacks the read right"),
                "503": _error("the store cannot answer now")}
_ACT_ERRORS = {"400": _error("a parameter or the body is malformed"),
               "401": _error("no valid key"),
               "403": _error("the key lacks the admin right on the channel"),
               "404": _error("no such message, delivery, channel or destination"),
               "409": _error("the state forbids the action"),
               "503": _error("the store cannot answer now")}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _admin_components() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    delivery = _obj(
        ["id", "message_id", "channel", "destination", "target", "status", "attempts"],
        id={"type": "integer"}, message_id={"type": "string"}, channel={"type": "string"},
        destination={"type": "string"}, target=_STR_OR_NULL,
        status={"enum": ["pending", "in_flight", "delivered", "dead", "discarded"]},
        attempts=count, next_attempt_at=_TIME_OR_NULL, updated_at=_TIME_OR_NULL,
        remote_id=_STR_OR_NULL, error=_STR_OR_NULL, error_code=_STR_OR_NULL)
    destination = _obj(
        ["name", "type", "pending", "in_flight", "delivered", "dead", "oldest_pending_at",
         "oldest_pending_age_seconds", "circuit"],
        name={"type": "string"}, type={"type": "string"}, pending=count, in_flight=count,
        delivered=count, dead=count, oldest_pending_at=_TIME_OR_NULL,
        oldest_pending_age_seconds={"type": ["number", "null"], "minimum": 0},
        circuit={"enum": ["closed", "open", "half_open", None]})
    channel = _obj(
        ["name", "state", "source", "counters", "error_rate", "destinations", "throughput"],
        name={"type": "string"}, state={"enum": ["running", "stopped", "erroring"]},
        source=_obj(["type", "path"], type={"type": "string"}, path=_STR_OR_NULL),
        counters=_obj(["pending", "in_flight", "delivered", "dead", "received_last_hour",
                       "delivered_last_hour", "failed_last_hour"],
                      pending=count, in_flight=count, delivered=count, dead=count,
                      received_last_hour=count, delivered_last_hour=count,
                      failed_last_hour=count),
        error_rate={"type": ["number", "null"], "minimum": 0, "maximum": 1},
        destinations={"type": "array", "items": _ref("DestinationQueue")},
        throughput={"type": "array", "items": _obj(
            ["minute", "received", "delivered", "failed"],
            minute={"type": "string", "format": "date-time"}, received=count,
            delivered=count, failed=count)})
    summary = _obj(
        ["id", "channel", "received_at", "order_id", "state", "deliveries"],
        id={"type": "string"}, channel={"type": "string"},
        received_at={"type": "string", "format": "date-time"}, order_id=_STR_OR_NULL,
        state={"enum": ["pending", "delivered", "dead", "partial", "discarded", "filtered"]},
        deliveries={"type": "array", "items": _obj(
            ["id", "destination", "target", "status", "attempts"], id={"type": "integer"},
            destination={"type": "string"}, target=_STR_OR_NULL, status={"type": "string"},
            attempts=count)})
    return {
        "Delivery": delivery, "DestinationQueue": destination, "Channel": channel,
        "ChannelList": _obj(["channels"], channels={"type": "array", "items": _ref("Channel")},
                            instance={"type": "string", "description": (
                                "the engine instance that answered: queues, counters and "
                                "traffic are the whole cluster's (read from the store); "
                                "circuits and a stopped state are this instance's")}),
        "ChannelState": _obj(["name", "state"], name={"type": "string"},
                             state={"enum": ["running", "stopped", "erroring"]}),
        "MessageSummary": summary,
        "MessagePage": _obj(["messages", "next_cursor"],
                            messages={"type": "array", "items": _ref("MessageSummary")},
                            next_cursor=_STR_OR_NULL),
        "DeadList": _obj(["deliveries"], deliveries={"type": "array",
                                                     "items": _ref("Delivery")}),
        "ResendRequest": _obj(["destination"], destination={"type": "string"}),
        "Resent": _obj(["message_id", "deliveries"], message_id={"type": "string"},
                       deliveries={"type": "array", "items": _ref("Delivery")}),
        "DeliveryResult": _obj(["delivery"], delivery=_ref("Delivery")),
    }


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def _path(name: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": schema or {"type": "string"}}


def _admin_paths() -> dict[str, Any]:
    def channel_action(verb: str) -> dict[str, Any]:
        return {"post": {
            "summary": f"{verb.capitalize()} a channel (admin right); idempotent",
            "description": "A stopped channel answers intake with 503 and its workers claim "
                           "nothing; sends under way finish. Not persisted across a restart.",
            "operationId": f"channel_{verb}", "parameters": [_path("name")],
            "responses": {"200": _json("the channel's state", "ChannelState"),
                          **_ACT_ERRORS}}}

    def delivery_action(verb: str, what: str) -> dict[str, Any]:
        return {"post": {
            "summary": what, "operationId": f"delivery_{verb}",
            "parameters": [_path("delivery_id", type="integer", minimum=1)],
            "responses": {"200": _json("the delivery now", "DeliveryResult"), **_ACT_ERRORS}}}

    return {
        "/api/channels": {"get": {
            "summary": "Channels: state, counters, queues, circuits, the last hour per minute",
            "operationId": "channels",
            "responses": {"200": _json("every channel", "ChannelList"), **_READ_ERRORS}}},
        "/api/channels/{name}/stop": channel_action("stop"),
        "/api/channels/{name}/start": channel_action("start"),
        "/api/messages": {"get": {
            "summary": "Messages, newest first, filtered and searched, a page at a time",
            "operationId": "messages",
            "parameters": [
                _query("channel", "only this channel"),
                _query("status", "the message's overall state",
                       enum=["pending", "delivered", "dead", "partial", "discarded",
                             "filtered"]),
                _query("destination", "only messages with a delivery to this destination"),
                _query("order_id", "exactly this order id"),
                _query("q", "text found in the order id or any body value (any case), or a "
                            "message id prefix"),
                _query("since", "received at or after (ISO 8601; naive means UTC)"),
                _query("until", "received before (ISO 8601; naive means UTC)"),
                _query("cursor", "next_cursor of the previous page"),
                _query("limit", "page size (default 50)", type="integer", minimum=1,
                       maximum=200)],
            "responses": {"200": _json("a page of messages", "MessagePage"), **_READ_ERRORS}}},
        "/api/messages/{message_id}/resend": {"post": {
            "summary": "Resend a message to one destination of its channel (admin right)",
            "description": "Adds new deliveries with the destination's current targets; "
                           "earlier deliveries are kept. De-duplication does not apply.",
            "operationId": "resend", "parameters": [_path("message_id")],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _ref("ResendRequest")}}},
            "responses": {"202": _json("the new deliveries, pending", "Resent"),
                          **_ACT_ERRORS}}},
        "/api/dead": {"get": {
            "summary": "Dead-lettered deliveries, newest first", "operationId": "dead",
            "parameters": [_query("channel", "only this channel"),
                           _query("limit", "at most (default 100)", type="integer",
                                  minimum=1, maximum=1000)],
            "responses": {"200": _json("dead deliveries", "DeadList"), **_READ_ERRORS}}},
        "/api/deliveries/{delivery_id}/retry": delivery_action(
            "retry", "Make a dead (or discarded) delivery pending again, due now"),
        "/api/deliveries/{delivery_id}/discard": delivery_action(
            "discard", "Discard a dead delivery"),
    }
