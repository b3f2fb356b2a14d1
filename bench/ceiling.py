"""The ceiling: what the order intake costs with no store and no destinations.

The same framework (Starlette), the same strict JSON parser
(:func:`alertpipe.sources.jsonparse.parse_json_object`) and the same order schema
(:func:`alertpipe.schemas.order.validate_order`) as the engine's ``POST /orders``, answering
202 with a JSON body, but nothing is written anywhere. The ratio engine/ceiling is the price of
durability (SQLite, synchronous=FULL, group commit), the steps and the outbox.

Two ways to serve it, both as their own process:

    python bench/ceiling.py --host 127.0.0.1 --port 0      # uvicorn, uvloop + httptools
    granian --interface asgi --loop uvloop --working-dir bench ceiling:app

With uvicorn, ``ceiling listening on http://HOST:PORT`` is printed on stdout once it serves
(port 0 picks a free port), the same announcement the engine makes.
"""

from __future__ import annotations

import argparse
import socket
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertpipe.errors import MalformedInput, ValidationFailed
from alertpipe.schemas.order import validate_order
from alertpipe.sources.jsonparse import parse_json_object

MAX_BODY_BYTES = 1_048_576


async def orders(request: Request) -> Response:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        return JSONResponse({"error": "unsupported_media_type"}, status_code=415)
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        return JSONResponse({"error": "body_too_large"}, status_code=413)
    try:
        validate_order(parse_json_object(raw))
    except MalformedInput as exc:
        return JSONResponse({"error": "malformed_json", "detail": str(exc)}, status_code=400)
    except ValidationFailed as exc:
        return JSONResponse({"error": "validation_failed",
                             "errors": [e.as_dict() for e in exc.errors]}, status_code=422)
    return JSONResponse({"status": "accepted", "message_id": uuid.uuid4().hex}, status_code=202)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/orders", orders, methods=["POST"]),
                        Route("/healthz", healthz)])


def _serve(sock: socket.socket) -> None:
    import uvicorn
    import uvloop

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                host, port = sock.getsockname()[:2]
                print(f"ceiling listening on http://{host}:{port}", flush=True)

    config = uvicorn.Config(app, loop="uvloop", http="httptools", ws="none", lifespan="off",
                            access_log=False, log_level="warning")
    uvloop.run(Server(config).serve(sockets=[sock]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = ap.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    _serve(sock)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
