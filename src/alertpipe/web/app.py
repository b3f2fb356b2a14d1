"""The engine's HTTP application: channel sources, health, readiness and a small admin API."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from alertpipe.engine.core import Engine
from alertpipe.errors import ConfigError
from alertpipe.sources.base import outcome_body
from alertpipe.web.admin_api import admin_routes
from alertpipe.web.fastpath import with_fast_intake
from alertpipe.web.openapi import openapi_document
from alertpipe.web.ui import Dashboard


def create_app(engine: Engine) -> ASGIApp:
    routes: list[Route] = []
    seen: dict[str, str] = {}
    for name, ch in engine.channels.items():
        for route in ch.source.routes(engine):
            if route.path in seen or route.path.startswith(("/healthz", "/readyz", "/api/",
                                                            "/openapi.json", "/ui/",
                                                            "/metrics")):
                raise ConfigError(f"source path {route.path!r} is already used"
                                  + (f" by channel {seen[route.path]!r}" if route.path in seen
                                     else ""), channel=name, key="source.path")
            seen[route.path] = name
            routes.append(route)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok, detail = await engine.readiness()
        return JSONResponse(detail, status_code=200 if ok else 503)

    async def message(request: Request) -> Response:
        who = engine.auth.check(request, "read", None)
        if isinstance(who, Response):
            return who
        stored = await engine.store.get_message(request.path_params["message_id"])
        if stored is None:
            return JSONResponse({"status": "rejected", "error": "not_found",
                                 "message": "no such message"}, status_code=404)
        m = stored.message
        body = outcome_body(stored)
        body.update(channel=m.channel, received_at=m.received_at.isoformat(),
                    stored_status=stored.status)
        for d, rec in zip(body["deliveries"], stored.deliveries, strict=True):
            d["history"] = [{"number": h.number, "outcome": h.outcome,
                             "started_at": h.started_at.isoformat(),
                             "finished_at": h.finished_at.isoformat(), "error": h.error,
                             "error_code": h.error_code, "remote_id": h.remote_id,
                             "ambiguous": h.ambiguous, "summary": h.summary,
                             "duration_ms": round(h.duration_ms, 1)} for h in rec.history]
        return JSONResponse(body)

    async def stats(request: Request) -> Response:
        who = engine.auth.check(request, "read", None)
        if isinstance(who, Response):
            return who
        return JSONResponse({"queues": [
            {"channel": s.channel, "destination": s.destination, "pending": s.pending,
             "in_flight": s.in_flight, "delivered": s.delivered, "dead": s.dead,
             "oldest_pending_at": s.oldest_pending_at.isoformat() if s.oldest_pending_at
             else None} for s in await engine.store.stats()]})

    async def metrics(request: Request) -> Response:
        who = engine.auth.check(request, "read", None)
        if isinstance(who, Response):
            return who
        body, content_type = await engine.metrics.exposition(engine.store,
                                                             request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    document = openapi_document(engine)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    routes += [Route("/openapi.json", openapi), Route("/healthz", healthz),
               Route("/readyz", readyz), Route("/api/messages/{message_id}", message),
               Route("/api/queues", stats), Route("/metrics", metrics),
               *admin_routes(engine)]
    return with_fast_intake(Starlette(routes=[*routes, *Dashboard(engine).routes()]), engine)
