"""Serving the emulator on a real socket: ``running_emulator`` (tests, demo) and ``serve`` (CLI).

The socket is bound before uvicorn starts, so the URL is known at once (port 0 picks a free
port); readiness is signalled by uvicorn's own startup, never by a sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn

from alertpipe.emulators.accounts import ServiceAccount
from alertpipe.emulators.app import create_app
from alertpipe.emulators.settings import EmulatorSettings
from alertpipe.emulators.state import EmulatorState

__all__ = ["EmulatorHandle", "bind", "running_emulator", "serve"]

STARTUP_TIMEOUT = 10.0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, settings: EmulatorSettings) -> str:
    """The base URL clients should use: ``public_base_url`` or the bound address."""
    if settings.public_base_url:
        return settings.public_base_url
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """A uvicorn server that announces the end of its startup (event and optional callback)
    and leaves signal handling to whoever runs it."""

    def __init__(self, config: uvicorn.Config,
                 on_started: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
            if self.started and self.on_started is not None:
                self.on_started()
        finally:
            self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _config(state: EmulatorState, access_log: bool) -> uvicorn.Config:
    app = create_app(state.settings, state)
    return uvicorn.Config(app, lifespan="off", ws="none", log_level="warning",
                          access_log=access_log, timeout_graceful_shutdown=2)


@dataclass(slots=True)
class EmulatorHandle:
    """A running emulator: its base ``url`` and its ``state``."""

    url: str
    state: EmulatorState

    def write_credentials(self, path: str | os.PathLike[str]) -> Path:
        """Write a service-account file whose ``token_uri`` is this emulator's ``/token``."""
        self.state.write_credentials(path, self.url)
        return Path(path)

    @property
    def account(self) -> ServiceAccount:
        """The emulator's own service account."""
        return self.state.default_account


@contextlib.contextmanager
def running_emulator(settings: EmulatorSettings | None = None, host: str = "127.0.0.1",
                     port: int = 0) -> Iterator[EmulatorHandle]:
    """Run the emulator under uvicorn in a background thread; yield once it serves.

    Usable from sync and async code alike (the server has its own thread and event loop).
    """
    settings = settings or EmulatorSettings()
    state = EmulatorState(settings)
    sock = bind(host, port)
    server = _Server(_config(state, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="alertpipe-emulator", daemon=True)
    thread.start()
    try:
        if not server.ready.wait(STARTUP_TIMEOUT) or not server.started:
            raise RuntimeError("the emulator did not start")
        yield EmulatorHandle(url_of(sock, settings), state)
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT)
        sock.close()


def serve(settings: EmulatorSettings, sock: socket.socket, state: EmulatorState | None = None,
          on_started: Callable[[], None] | None = None) -> None:
    """Serve on ``sock`` in the main thread until SIGINT/SIGTERM (a second SIGINT forces).

    ``on_started`` runs once the server accepts requests; the stop signals are already handled
    by then, so a signal sent as soon as it reports is never lost.
    """
    state = state or EmulatorState(settings)
    server = _Server(_config(state, access_log=True), on_started)

    def stop(signum: int, frame: FrameType | None) -> None:
        if server.should_exit and signum == signal.SIGINT:
            server.force_exit = True
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
