"""Intake before routing: ``POST`` to a source's path goes straight to that source's ASGI app.

Every other request goes through the Starlette application (routing, middleware, the dashboard
and the admin API). A source opts in with ``fast_path(engine) -> (path, app)``; its app answers
every error itself (it is the same endpoint the Starlette route serves)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from alertpipe.engine.core import Engine


class FastIntake:
    """An ASGI app: the sources' fast paths first, then ``app``."""

    def __init__(self, app: ASGIApp, paths: dict[str, ASGIApp]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            fast = self.paths.get(scope["path"])
            if fast is not None:
                await fast(scope, receive, send)
                return
        await self.app(scope, receive, send)


def with_fast_intake(app: ASGIApp, engine: Engine) -> ASGIApp:
    paths: dict[str, ASGIApp] = {}
    for ch in engine.channels.values():
        fast_path = getattr(ch.source, "fast_path", None)
        if fast_path is not None:
            path, handler = fast_path(engine)
            paths[path] = handler
    return FastIntake(app, paths) if paths else app
