"""Message-log search over a large SQLite store: how long each kind of search takes.

    .venv/bin/python bench/search.py --messages 1000000      # builds (or reuses) the store

The store is built once per size and schema version under bench/results/tmp/search-cache/
(about two minutes for 1,000,000 messages) with the engine's own schema: every order a unique
order id, a customer name from 50,000, 5 % over $300 with an SMS delivery as well, 0.1 % of
deliveries dead, the rest delivered, received over the last 30 days. Then each query runs
``--repeat`` times through ``SQLiteStore.search_messages`` (a page of 50, full messages with
their deliveries and attempts) and the median and worst times of that one request are reported
(for a later page, the request for that page, its cursor from the pages before).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alertpipe import jsoncodec
from alertpipe.message import new_message_id
from alertpipe.store import SQLiteStore
from alertpipe.store import sqlite_sql as q
from alertpipe.store.base import MessageQuery
from alertpipe.store.search import search_text

CACHE = Path(__file__).resolve().parent / "results" / "tmp" / "search-cache"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
NAMES = 50_000


def _body(i: int, rng: random.Random) -> dict[str, Any]:
    high = i % 20 == 0
    amount = f"{rng.randint(301, 900)}.{rng.randint(0, 99):02d}" if high else \
        f"{rng.randint(5, 299)}.{rng.randint(0, 99):02d}"
    n = rng.randrange(NAMES)
    return {"order_id": f"S-{i}", "amount": amount, "currency": "USD",
            "customer_name": f"Customer{n} Family{n % 997}",
            "customer_phone": f"+1555{n:07d}", "created_at": "2026-11-20T12:30:00Z",
            "items": [{"sku": f"SKU-{i % 5000}", "qty": 1 + i % 3}],
            "customer": f"Customer{n} Family{n % 997}", "high_value": high}


def build(path: Path, n: int) -> float:
    """Write ``n`` orders with the engine's schema; return the seconds it took."""
    t0 = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # a scratch build; the engine runs FULL
    q.migrate(conn)
    rng = random.Random(7)
    start_us = int((NOW - SPAN).timestamp() * 1e6)
    step = int(SPAN.total_seconds() * 1e6) // n
    batch = 20_000
    for lo in range(0, n, batch):
        msgs, dels, atts, texts = [], [], [], []
        for i in range(lo, min(n, lo + batch)):
            at = start_us + i * step
            body = _body(i, rng)
            mid = new_message_id()
            msgs.append((mid, "orders", at, jsoncodec.dumps(body), b"", "{}", "accepted",
                         body["order_id"]))
            texts.append(search_text(body))
            targets = [("audit_sheet", None)] + ([("oncall_sms", "+15550100")]
                                                 if body["high_value"] else [])
            for dest, target in targets:
                dead = rng.random() < 0.001
                dels.append((mid, "orders", dest, target, "dead" if dead else "delivered", 1,
                             at, at, at + 500_000, "SM1" if dest == "oncall_sms" else None))
        conn.execute("BEGIN")
        conn.executemany(q.INSERT_MESSAGE, msgs)
        last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        q.index_texts(conn, list(enumerate(texts, start=last - len(msgs) + 1)))
        first = conn.execute("SELECT COALESCE(MAX(id), 0) FROM deliveries").fetchone()[0] + 1
        conn.executemany(
            "INSERT INTO deliveries(message_id, channel, destination, target, status, attempts, "
            "created_at, next_attempt_at, updated_at, remote_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
            dels)
        for k, d in enumerate(dels):
            atts.append((first + k, 1, d[8] - 200_000, d[8], "delivered" if d[4] == "delivered"
                         else "dead", d[9], None if d[4] == "delivered" else "boom", None, 0,
                         "bench"))
        conn.executemany(q.INSERT_ATTEMPT, atts)
        conn.execute("COMMIT")
    conn.execute("INSERT OR REPLACE INTO time_marks(minute, min_rowid, max_rowid) "
                 "SELECT received_at / 60000000, MIN(rowid), MAX(rowid) FROM messages GROUP BY 1")
    conn.execute("PRAGMA optimize")
    conn.close()
    return time.monotonic() - t0


QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("order id (exact)", {"ref": "S-{probe}"}),
    ("customer name (2 words)", {"text": "customer{name} family{family}"}),
    ("one common word (USD), newest page", {"text": "usd"}),
    ("word prefix (sku-12)", {"text": "sku-12"}),
    ("state = dead", {"state": "dead"}),
    ("state = delivered, newest page", {"state": "delivered"}),
    ("destination = oncall_sms", {"destination": "oncall_sms"}),
    ("text + a 1-day window", {"text": "family{family}", "since": "-15d", "until": "-14d"}),
    ("a common word, the request for page 3", {"text": "usd", "pages": 3}),
]


async def measure(path: Path, repeat: int) -> list[dict[str, Any]]:
    store = SQLiteStore(path)
    await store.open()
    rng = random.Random(11)
    n = await store._read(lambda c: c.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
    out = []
    try:
        for label, spec in QUERIES:
            times, found = [], 0
            for _ in range(repeat):
                name = rng.randrange(NAMES)
                kw = {k: (v.format(probe=rng.randrange(n), name=name, family=name % 997)
                          if isinstance(v, str) else v)
                      for k, v in spec.items() if k != "pages"}
                for key in ("since", "until"):
                    if key in kw:
                        kw[key] = NOW + timedelta(days=int(kw[key][:-1]))
                cursor = None  # earlier pages: reached untimed, as a user clicks through
                for _page in range(spec.get("pages", 1) - 1):
                    cursor = (await store.search_messages(
                        MessageQuery(cursor=cursor, **kw))).next_cursor
                t0 = time.perf_counter()  # one request: the page the user asked for
                page = await store.search_messages(MessageQuery(cursor=cursor, **kw))
                times.append((time.perf_counter() - t0) * 1000)
                found = len(page.messages)
            out.append({"query": label, "median_ms": round(statistics.median(times), 1),
                        "max_ms": round(max(times), 1), "results_last": found})
    finally:
        await store.close()
    return out


def run(messages: int, repeat: int = 5) -> dict[str, Any]:
    path = CACHE / f"search-{messages}-v{len(q.MIGRATIONS)}.db"
    built = None
    if not path.exists():
        built = round(build(path, messages), 1)
    results = asyncio.run(measure(path, repeat))
    return {"messages": messages, "build_seconds": built, "repeat": repeat,
            "store_bytes": path.stat().st_size, "queries": results,
            "worst_ms": max(r["max_ms"] for r in results)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    res = run(a.messages, a.repeat)
    for r in res["queries"]:
        print(f"{r['query']:<40} median {r['median_ms']:7.1f} ms  max {r['max_ms']:7.1f} ms")
    print(json.dumps({k: v for k, v in res.items() if k != "queries"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
