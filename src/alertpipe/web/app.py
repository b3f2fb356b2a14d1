"""The engine's HTTP application: channel sources, health, readiness and a small admin API."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertpipe.engine.core import Engine
from alertpipe.errors import ConfigError
from alertpipe.sources.http_json import make_endpoint, outcome_body


def create_app(engine: Engine) -> Starlette:
    routes: list[Route] = []
    seen: dict[str, str] = {}
    for name, ch in engine.channels.items():
        src = ch.settings.source
        if src.type != "http_json":
            raise ConfigError(f"unknown source type {src.type!r}; expected 'http_json'",
                              channel=name, key="source.type")
        if src.path in seen or src.path.startswith(("/healthz", "/readyz", "/api/")):
            raise ConfigError(f"source path {src.path!r} is already used"
                              + (f" by channel {seen[src.path]!r}" if src.path in seen else ""),
                              channel=name, key="source.path")
        seen[src.path] = name
        routes.append(Route(src.path, make_endpoint(engine, name, src), methods=["POST"]))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok, detail = await engine.readiness()
        return JSONResponse(detail, status_code=200 if ok else 503)

    async def message(request: Request) -> Response:
        stored = await engine.store.get_message(request.path_params["message_id"])
        if stored is None:
            return JSONResponse({"error": "not_found", "message": "no such message"},
                                status_code=404)
        m = stored.message
        body = outcome_body(stored)
        body.update(channel=m.channel, received_at=m.received_at.isoformat(),
                    stored_status=stored.status)
        for d, rec in zip(body["deliveries"], stored.deliveries, strict=True):
            d["history"] = [{"number": h.number, "outcome": h.outcome,
                             "started_at": h.started_at.isoformat(),
                             "finished_at": h.finished_at.isoformat(), "error": h.error,
                             "error_code": h.error_code, "remote_id": h.remote_id,
                             "ambiguous": h.ambiguous} for h in rec.history]
        return JSONResponse(body)

    async def stats(request: Request) -> Response:
        return JSONResponse({"queues": [
            {"channel": s.channel, "destination": s.destination, "pending": s.pending,
             "in_flight": s.in_flight, "delivered": s.delivered, "dead": s.dead,
             "oldest_pending_at": s.oldest_pending_at.isoformat() if s.oldest_pending_at
             else None} for s in await engine.store.stats()]})

    routes += [Route("/healthz", healthz), Route("/readyz", readyz),
               Route("/api/messages/{message_id}", message), Route("/api/queues", stats)]
    return Starlette(routes=routes)
