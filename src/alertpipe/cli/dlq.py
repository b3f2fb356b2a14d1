"""``alertpipe dlq``: list, inspect, retry and discard dead-lettered deliveries.

The command opens the store named by ``engine.store`` in the config file directly, so it works
whether or not the engine is running. With SQLite (WAL mode) a running engine picks requeued
deliveries up within its poll interval (``engine.poll_interval_seconds``). Nothing from the
config is printed; message bodies hold no secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import simplejson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from alertpipe import jsoncodec
from alertpipe.config import load_config
from alertpipe.config.model import AppSettings
from alertpipe.errors import ConfigError, UsageError
from alertpipe.store import DeliveryRecord, SQLiteStore, Store, open_store

ERROR_WIDTH = 60


# -- helpers shared with ``alertpipe replay`` ------------------------------------------------
def console() -> Console:
    """A console on stdout; when stdout is not a terminal, wide enough that tables do not
    squeeze their columns into ellipses (output piped to a file or captured by a test)."""
    return Console(width=None if sys.stdout.isatty() else 240, highlight=False)


def cell(value: object) -> Text:
    """Table cell text: never interpreted as rich markup (an error such as ``[Errno 111]``)."""
    return Text("" if value is None else str(value))


def when(dt: datetime | None) -> str:
    return "" if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def order_id(body: Mapping[str, Any]) -> str:
    value = body.get("order_id")
    return "" if value is None else str(value)


def truncate(text: str | None, width: int = ERROR_WIDTH) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def store_for(config_path: Path, settings: AppSettings) -> Store:
    """The store named in the config. A SQLite file that does not exist is an error (rather than
    a new empty database created beside a mistyped config path)."""
    store = open_store(settings.engine.store, base_dir=config_path.resolve().parent)
    if isinstance(store, SQLiteStore) and not store.path.exists():
        raise ConfigError(f"the SQLite store file {store.path} does not exist (has the engine "
                          "ever run with this config?)", file=str(config_path),
                          key="engine.store")
    return store


def with_store(config: str, fn: Callable[[Store, AppSettings], Awaitable[int]]) -> int:
    """Load the config, open its store, run ``fn`` and close the store."""
    path = Path(config)
    settings = load_config(path)
    store = store_for(path, settings)

    async def go() -> int:
        await store.open()
        try:
            return await fn(store, settings)
        finally:
            await store.close()

    return asyncio.run(go())


def add_config_arg(p: argparse.ArgumentParser, *, nested: bool = False) -> None:
    """``-c/--config``. On a nested subcommand the option has no default of its own, so that
    ``dlq -c x.yaml list`` and ``dlq list -c x.yaml`` both work (argparse lets a subparser's
    default override the value its parent parsed)."""
    p.add_argument("-c", "--config", default=argparse.SUPPRESS if nested else "alertpipe.yaml",
                   help="config file naming the store (default: alertpipe.yaml)")


# -- the command -----------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dlq", help="list, show, retry or discard dead-lettered deliveries",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(p)
    dsub = p.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)

    ls = dsub.add_parser("list", help="list dead deliveries, newest first")
    add_config_arg(ls, nested=True)
    ls.add_argument("--channel", help="only this channel")
    ls.add_argument("--limit", type=_positive, default=50, help="at most N rows (default: 50)")
    ls.set_defaults(func=run, action=_list)

    show = dsub.add_parser("show", help="a delivery, its message and every attempt")
    add_config_arg(show, nested=True)
    show.add_argument("id", type=int, help="delivery id")
    show.set_defaults(func=run, action=_show)

    retry = dsub.add_parser(
        "retry", help="requeue dead deliveries (due now)",
        description="Make dead (or discarded) deliveries pending again, due now. A running "
                    "engine picks them up within engine.poll_interval_seconds.")
    add_config_arg(retry, nested=True)
    retry.add_argument("ids", type=int, nargs="*", metavar="ID", help="delivery ids")
    retry.add_argument("--all", action="store_true", help="requeue every dead delivery")
    retry.add_argument("--channel", help="with --all: only this channel")
    retry.set_defaults(func=run, action=_retry)

    discard = dsub.add_parser("discard", help="give up on dead deliveries for good")
    add_config_arg(discard, nested=True)
    discard.add_argument("ids", type=int, nargs="+", metavar="ID", help="delivery ids")
    discard.set_defaults(func=run, action=_discard)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(args: argparse.Namespace) -> int:
    action: Callable[[argparse.Namespace, Store], Awaitable[int]] = args.action

    async def fn(store: Store, settings: AppSettings) -> int:
        return await action(args, store)

    return with_store(args.config, fn)


async def _list(args: argparse.Namespace, store: Store) -> int:
    dead = await store.list_dead(args.channel, limit=args.limit)
    out = console()
    if not dead:
        scope = f" in channel {args.channel!r}" if args.channel else ""
        out.print(f"no dead deliveries{scope}", markup=False)
        return 0
    bodies: dict[str, Mapping[str, Any]] = {}
    for d in dead:
        if d.message_id not in bodies:
            stored = await store.get_message(d.message_id)
            bodies[d.message_id] = stored.message.body if stored else {}
    table = Table(title="dead deliveries", title_justify="left")
    for name in ("id", "channel", "destination", "target", "attempts", "code", "last error",
                 "order id", "updated"):
        table.add_column(name, no_wrap=name != "last error",
                         justify="right" if name in ("id", "attempts") else "left")
    for d in dead:
        table.add_row(cell(d.id), cell(d.channel), cell(d.destination), cell(d.target),
                      cell(d.attempts), cell(d.last_error_code), cell(truncate(d.last_error)),
                      cell(order_id(bodies[d.message_id])), cell(when(d.updated_at)))
    out.print(table)
    more = " (limit reached; use --limit for more)" if len(dead) == args.limit else ""
    out.print(f"{len(dead)} dead deliver{'y' if len(dead) == 1 else 'ies'}{more}", markup=False)
    return 0


async def _show(args: argparse.Namespace, store: Store) -> int:
    d = await store.get_delivery(args.id)
    if d is None:
        print(f"alertpipe: delivery {args.id} not found", file=sys.stderr)
        return 1
    out = console()
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for key, value in _facts(d):
        facts.add_row(cell(key), cell(value))
    out.print(Text(f"delivery {d.id}", style="bold"))
    out.print(facts)
    stored = await store.get_message(d.message_id)
    out.print()
    if stored is None:
        out.print(f"message {d.message_id} not found", markup=False)
    else:
        m = stored.message
        out.print(Text(f"message {m.id}", style="bold"))
        out.print(f"channel {m.channel}, received {when(m.received_at)}, status {stored.status}",
                  markup=False)
        out.print(Text(_pretty(m.body)))
    out.print()
    if not d.history:
        out.print("no attempts yet", markup=False)
        return 0
    attempts = Table(title="attempts", title_justify="left")
    for name in ("#", "started", "finished", "outcome", "code", "error", "remote id"):
        attempts.add_column(name, no_wrap=name != "error")
    for h in d.history:
        outcome = h.outcome + (" (ambiguous)" if h.ambiguous else "")
        attempts.add_row(cell(h.number), cell(when(h.started_at)), cell(when(h.finished_at)),
                         cell(outcome), cell(h.error_code), cell(h.error), cell(h.remote_id))
    out.print(attempts)
    return 0


def _facts(d: DeliveryRecord) -> list[tuple[str, object]]:
    return [("status", d.status), ("channel", d.channel), ("destination", d.destination),
            ("target", d.target or "-"), ("attempts", d.attempts),
            ("created", when(d.created_at)), ("updated", when(d.updated_at)),
            ("next attempt", when(d.next_attempt_at) if d.status == "pending" else "-"),
            ("remote id", d.remote_id or "-"),
            ("last error", (f"[{d.last_error_code}] " if d.last_error_code else "")
             + (d.last_error or "-"))]


def _pretty(body: Mapping[str, Any]) -> str:
    """The body as indented JSON with exact money (via the store's own codec)."""
    return str(simplejson.dumps(jsoncodec.loads(jsoncodec.dumps(body)), use_decimal=True,
                                indent=2, ensure_ascii=False))


async def _retry(args: argparse.Namespace, store: Store) -> int:
    out = console()
    if args.all:
        if args.ids:
            raise UsageError("give delivery ids or --all, not both")
        n = await store.requeue_dead(args.channel)
        scope = f" of channel {args.channel!r}" if args.channel else ""
        out.print(f"requeued {n} dead deliver{'y' if n == 1 else 'ies'}{scope}", markup=False)
        return 0
    if not args.ids:
        raise UsageError("give the delivery ids to retry, or --all")
    if args.channel:
        raise UsageError("--channel goes with --all")
    failed = 0
    for i in args.ids:
        d = await store.get_delivery(i)
        if d is None or d.status not in ("dead", "discarded") or not await store.requeue(i):
            failed += 1
            _refuse(i, d, "retry")
            continue
        out.print(f"requeued delivery {i} ({_where(d)})", markup=False)
    return 1 if failed else 0


async def _discard(args: argparse.Namespace, store: Store) -> int:
    out = console()
    failed = 0
    for i in args.ids:
        d = await store.get_delivery(i)
        if d is None or d.status != "dead" or not await store.discard(i):
            failed += 1
            _refuse(i, d, "discard")
            continue
        out.print(f"discarded delivery {i} ({_where(d)})", markup=False)
    return 1 if failed else 0


def _where(d: DeliveryRecord) -> str:
    return f"{d.channel}/{d.destination}" + (f" → {d.target}" if d.target else "")


def _refuse(i: int, d: DeliveryRecord | None, verb: str) -> None:
    if d is None:
        print(f"alertpipe: delivery {i} not found", file=sys.stderr)
    else:
        print(f"alertpipe: delivery {i} is {d.status}, not dead; nothing to {verb}",
              file=sys.stderr)
