"""Where the engine's CPU goes: a py-spy ``--format raw`` (folded stacks) file summarised.

Each sample's category is decided by the innermost frame that matches a rule below (so a
``sqlite3`` call made by the store counts as "store (SQLite)", and ``json.loads`` called by the
strict parser counts as "JSON parse"). py-spy names files relative to their ``sys.path`` entry
(``starlette/routing.py``), hence the ``(`` in the rules. Self time is the leaf frame's function;
C code (sqlite3, uvloop, httptools) is charged to the Python frame that called it, so
``Runner.run`` self time is the event loop's own C work (I/O, HTTP parsing).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["summarize"]

# (category, substring of the frame's "function (file:line)"), innermost match wins.
RULES: list[tuple[str, str]] = [
    ("logging", "(logging/"),
    ("logging", "(alertpipe/logs.py"),
    ("store (SQLite)", "(alertpipe/store/"),
    ("store (SQLite)", "(sqlite3/"),
    ("JSON parse (strict)", "(alertpipe/sources/jsonparse.py"),
    ("validation (pydantic)", "(alertpipe/schemas/"),
    ("validation (pydantic)", "(pydantic"),
    ("message envelope + JSON encode", "(alertpipe/jsoncodec.py"),
    ("message envelope + JSON encode", "(alertpipe/message.py"),
    ("message envelope + JSON encode", "(simplejson/"),
    ("steps (map, route)", "(alertpipe/steps/"),
    ("steps (map, route)", "(alertpipe/expr"),
    ("outbound delivery", "(alertpipe/destinations/"),
    ("outbound delivery", "(httpx/"),
    ("outbound delivery", "(httpcore/"),
    ("outbound delivery", "(google/"),
    ("engine (accept, workers)", "(alertpipe/engine/"),
    ("source (HTTP handler)", "(alertpipe/sources/"),
    ("Starlette", "(starlette/"),
    ("uvicorn (Python side)", "(uvicorn/"),
    ("event loop + HTTP parsing in C (uvloop, httptools)", "(asyncio/runners.py"),
    ("event loop (asyncio/uvloop Python side)", "(asyncio/"),
    ("event loop (asyncio/uvloop Python side)", "(uvloop/"),
    ("JSON (stdlib)", "(json/"),
    ("other alertpipe (auth, web, cli)", "(alertpipe/"),
]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needle in RULES:
            if needle in frame:
                return name
    return "other"


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({path})"


def summarize(folded: Path, top: int = 15) -> dict[str, Any]:
    categories: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = "?"
        if frames and frames[0].startswith(("thread ", "process ")):
            thread = frames.pop(0)
            if frames and frames[0].startswith("thread "):
                thread = frames.pop(0)
        total += n
        threads[thread] += n
        categories[_category(frames)] += n
        if frames:
            leaves[_short(frames[-1])] += n

    def share(counter: Counter[str], k: int) -> list[dict[str, Any]]:
        return [{"name": name, "samples": n, "share": round(n / total, 4)}
                for name, n in counter.most_common(k)]

    return {"samples": total, "categories": share(categories, 30),
            "top_self": share(leaves, top), "threads": share(threads, 10)}
