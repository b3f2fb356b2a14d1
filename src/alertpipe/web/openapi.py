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
    return {"openapi": "3.1.0",
            "info": {"title": "alertpipe", "version": "0.1.0",
                     "description": "The engine's own HTTP API."},
            "paths": paths, "components": {"schemas": _components()}}
