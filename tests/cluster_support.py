"""Several ``alertpipe run`` processes on one PostgreSQL schema, for the cluster tests.

Each :class:`Instance` is an engine process with its own port and ``ALERTPIPE_INSTANCE_ID``;
its log events can be waited for (:meth:`Instance.wait_event`), so a test synchronises on what
the engine announces ("listening", "leading", ...) rather than on time.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import engine_process

LEADING = "leading"  # the worker of an exclusive destination took the cluster lock
STANDING = (LEADING, "standing by")  # its first answer: it leads, or another instance does


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def instance_env(base: Mapping[str, str], *, database_url: str, instance: str,
                 port: int) -> dict[str, str]:
    """``base`` pointed at the shared database, with this instance's name and port."""
    return {**base, "ALERTPIPE_DATABASE_URL": database_url, "ALERTPIPE_INSTANCE_ID": instance,
            "ALERTPIPE_HOST": "127.0.0.1", "ALERTPIPE_PORT": str(port)}


class Instance(engine_process.EngineProcess):
    """An engine process whose log lines wake :meth:`wait_event`."""

    def __init__(self, name: str, config: Path, env: Mapping[str, str], port: int) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.changed = threading.Condition()
        super().__init__(config, env)

    def _read(self) -> None:  # the base reader, plus a notification per line
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append(line)
                if '"event": "listening"' in line:
                    self.listening = True
                    self._ready.set()
                self.changed.notify_all()
        self._ready.set()
        with self.changed:
            self.changed.notify_all()

    def wait_event(self, name: str | tuple[str, ...], timeout: float = 30,
                   where: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
        """The first log event called ``name`` (or any of the names; matching ``where``),
        waiting for it."""
        names = (name,) if isinstance(name, str) else name

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events() if e.get("event") in names and where(e)),
                        None)

        with self.changed:
            event = self.changed.wait_for(found, timeout)
        if event is None:
            raise AssertionError(f"{self.name} did not log {name!r} within {timeout:g}s; "
                                 "last lines:\n" + "".join(self.lines[-10:]))
        return event


def start_instances(names: Sequence[str], config: Path, base_env: Mapping[str, str],
                    database_url: str) -> list[Instance]:
    """Start one engine per name, one after another (each ready before the next starts)."""
    out: list[Instance] = []
    try:
        for name in names:
            port = free_port()
            out.append(Instance(name, config, instance_env(
                base_env, database_url=database_url, instance=name, port=port), port))
    except BaseException:
        for inst in out:
            inst.kill()
        raise
    return out


def leader(instances: Sequence[Instance], timeout: float = 30) -> Instance:
    """The instance whose exclusive (Sheets) worker leads: each instance's worker announces
    "leading" or "standing by" when it first asks for the lock."""
    leading = [i for i in instances
               if i.wait_event(STANDING, timeout)["event"] == LEADING]
    assert len(leading) == 1, [i.name for i in leading]
    return leading[0]


def delivered_ids(inst: Instance, destination: str) -> set[str]:
    """Message ids this instance logged as delivered to ``destination`` (a line per send)."""
    out: set[str] = set()
    for e in inst.events("delivered"):
        if e.get("destination") != destination:
            continue
        if "message_id" in e:
            out.add(str(e["message_id"]))
        out.update(str(i) for i in e.get("message_ids", ()))
    return out
