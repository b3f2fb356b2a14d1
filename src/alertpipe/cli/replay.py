"""``alertpipe replay``: send stored messages of a channel again, as new deliveries.

Selects the channel's messages received in [--since, --until), keeps those for which --where
(the expression language of channel configs, over the message body and the channel's vars) is
true, and adds new pending deliveries for each: to --to, or else to every destination the
message originally had deliveries for, with the destination's current targets (for an SMS
destination, today's on-call list). Replays bypass de-duplication: they are new deliveries of an
existing message, not new messages. Run with --dry-run first: it prints what would be sent to
whom and writes nothing.

Times are ISO 8601 (2024-05-01, 2024-05-01T12:00, 2024-05-01T12:00+02:00; naive means UTC),
"now", or relative: 2h, 30m, 1d, 1w ago (write --since=-2h with an "=", or --since 2h).
The store named by engine.store is opened directly, so a running engine (SQLite in WAL mode)
sends the new deliveries within its poll interval.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from alertpipe.cli.dlq import add_config_arg, cell, console, order_id, store_for, when
from alertpipe.config import load_config
from alertpipe.destinations.base import Delivery
from alertpipe.engine import Engine
from alertpipe.engine.channel import ChannelRuntime
from alertpipe.errors import AlertpipeError, UsageError
from alertpipe.message import Message
from alertpipe.steps.expr import Expr, ExprError, compile_expr
from alertpipe.store import NewDelivery, Store, StoredMessage

_RELATIVE = re.compile(r"^-?\s*(\d+)\s*([smhdw])(?:\s+ago)?$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PAGE = 500


def parse_time(text: str, now: datetime, option: str = "time") -> datetime:
    """An ISO 8601 date or datetime (naive means UTC), ``now``, or ``-2h``/``2h``/``2h ago``
    (``s m h d w``) meaning that long before ``now``. Always timezone-aware UTC."""
    value = text.strip().lower()
    if value == "now":
        return now
    m = _RELATIVE.match(value)
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected an ISO 8601 date or datetime "
                         "(2024-05-01, 2024-05-01T12:00Z), 'now', or a relative time such as "
                         "-2h, -30m, -1d") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="send stored messages again (dry run first)",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(p)
    p.add_argument("--channel", required=True, help="the channel whose messages to replay")
    window = p.add_mutually_exclusive_group()
    window.add_argument("--since", help="first received_at to include (required unless "
                        "--all-time)")
    window.add_argument("--all-time", action="store_true",
                        help="no lower bound: consider the channel's whole history")
    p.add_argument("--until", help="received_at to stop before (default: now)")
    p.add_argument("--where", help="keep only messages for which this expression is true, "
                   "e.g. 'amount > 300'")
    p.add_argument("--to", metavar="DESTINATION",
                   help="send to this destination of the channel instead of the message's "
                        "original destinations")
    p.add_argument("--dry-run", action="store_true", help="print what would be sent; write "
                   "nothing")
    p.add_argument("--limit", type=int, default=1000,
                   help="replay at most the N oldest matching messages (default: 1000)")
    p.set_defaults(func=run)


@dataclass(frozen=True, slots=True)
class Planned:
    """One delivery a replay adds (or, in a dry run, would add)."""

    message: Message
    destination: str
    target: str | None
    summary: str


@dataclass(slots=True)
class Plan:
    rows: list[Planned]
    messages: int  # messages with at least one row
    matched: int  # messages that passed --where (before --limit)
    unsendable: int  # matched messages with nothing to resend (filtered at intake)
    next_since: datetime | None  # received_at of the first message left out by --limit
    missing: set[str]  # original destinations no longer in the config


def run(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    if args.since is None and not args.all_time:
        raise UsageError("refusing to replay without --since (give --since, e.g. "
                         "--since=-2h, or --all-time to consider the whole history)")
    since = parse_time(args.since, now, "--since") if args.since else None
    until = parse_time(args.until, now, "--until") if args.until else now
    if since is not None and since >= until:
        raise UsageError(f"--since {when(since)} is not before --until {when(until)}")
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    where = _compile_where(args.where) if args.where else None

    path = Path(args.config)
    settings = load_config(path)
    if args.channel not in settings.channels:
        raise UsageError(f"no channel named {args.channel!r}; the config has: "
                         + ", ".join(sorted(settings.channels)))
    dests = settings.channels[args.channel].destinations
    if args.to is not None and args.to not in dests:
        raise UsageError(f"--to {args.to!r}: channel {args.channel!r} has no such destination; "
                         "its destinations are: " + ", ".join(dests))
    engine = Engine(settings, store=store_for(path, settings), base_dir=path.resolve().parent)
    channel = engine.channels[args.channel]

    async def go() -> int:
        await engine.store.open()
        try:
            plan = await _plan(engine.store, channel, since, until, where, args.to, args.limit)
            return await _execute(engine.store, plan, args, since, until)
        finally:
            await engine.store.close()

    return asyncio.run(go())


def _compile_where(text: str) -> Expr:
    try:
        return compile_expr(text)
    except ExprError as exc:
        raise ExprError(f"--where: {exc.reason}") from None


async def _scan(store: Store, channel: str, since: datetime | None,
                until: datetime) -> AsyncIterator[StoredMessage]:
    """Every message of the channel in [since, until), newest first, each once. Pages overlap
    by the last page's oldest timestamp, so messages sharing a microsecond are never skipped."""
    seen: set[str] = set()
    before: datetime | None = None
    while True:
        page = await store.list_messages(channel, limit=_PAGE, before=before, since=since,
                                         until=until)
        fresh = [s for s in page if s.message.id not in seen]
        for s in fresh:
            seen.add(s.message.id)
            yield s
        if len(page) < _PAGE:
            return
        oldest = page[-1].message.received_at
        nxt = oldest + timedelta(microseconds=1)
        before = oldest if not fresh or nxt == before else nxt


async def _plan(store: Store, channel: ChannelRuntime, since: datetime | None, until: datetime,
                where: Expr | None, to: str | None, limit: int) -> Plan:
    matched: list[StoredMessage] = []
    async for stored in _scan(store, channel.name, since, until):
        if where is None or _truthy(where, stored.message, channel.vars):
            matched.append(stored)
    matched.reverse()  # oldest first: a replay resends in the order messages arrived
    chosen, rest = matched[:limit], matched[limit:]
    plan = Plan(rows=[], messages=0, matched=len(matched), unsendable=0,
                next_since=rest[0].message.received_at if rest else None, missing=set())
    for stored in chosen:
        names = [to] if to is not None else list(dict.fromkeys(
            d.destination for d in sorted(stored.deliveries, key=lambda d: d.id)))
        rows = []
        for name in names:
            dest = channel.destinations.get(name)
            if dest is None:
                plan.missing.add(name)
                continue
            for target in dest.targets(stored.message):
                probe = Delivery(id=0, message=stored.message, destination=name, target=target,
                                 attempts=0)
                rows.append(Planned(stored.message, name, target, dest.describe(probe)))
        if rows:
            plan.rows.extend(rows)
            plan.messages += 1
        else:
            plan.unsendable += 1
    return plan


def _truthy(where: Expr, message: Message, vars: Mapping[str, Any]) -> bool:
    try:  # the same names a channel's steps see: body fields, then the channel's vars
        return bool(where.evaluate({**message.body, **vars}))
    except ExprError as exc:
        raise ExprError(f"--where on message {message.id}: {exc.reason}") from None


async def _execute(store: Store, plan: Plan, args: argparse.Namespace, since: datetime | None,
                   until: datetime) -> int:
    out = console()
    window = f"[{when(since) if since else 'the beginning'}, {when(until)})"
    if plan.missing:
        print("alertpipe: warning: skipped destinations no longer in the config: "
              + ", ".join(sorted(plan.missing)), file=sys.stderr)
    if not plan.rows:
        out.print(f"nothing to replay: {plan.matched} message(s) of channel {args.channel!r} "
                  f"received in {window} matched"
                  + (f", {plan.unsendable} with no delivery to repeat (use --to)"
                     if plan.unsendable else ""), markup=False)
        return 0
    ids: list[int] = []
    if not args.dry_run:
        by_message: dict[str, list[Planned]] = {}
        for row in plan.rows:
            by_message.setdefault(row.message.id, []).append(row)
        try:
            for mid, rows in by_message.items():
                ids.extend(await store.add_deliveries(
                    mid, [NewDelivery(r.destination, r.target) for r in rows]))
        except AlertpipeError:
            _table(out, plan.rows[:len(ids)], ids)
            print(f"alertpipe: replay stopped after adding {len(ids)} of {len(plan.rows)} "
                  "deliveries (those listed above)", file=sys.stderr)
            raise
    _table(out, plan.rows, ids if not args.dry_run else None)
    n, m = len(plan.rows), plan.messages
    summary = (f"{n} deliver{'y' if n == 1 else 'ies'} for {m} message{'' if m == 1 else 's'} "
               f"of channel {args.channel!r} received in {window}")
    if args.dry_run:
        out.print(f"dry run: would add {summary}; nothing was written", markup=False)
    else:
        out.print(f"added {summary}", markup=False)
    if plan.unsendable:
        out.print(f"{plan.unsendable} matching message(s) had no delivery to repeat "
                  "(filtered at intake); use --to to send them", markup=False)
    if plan.next_since is not None:
        out.print(f"--limit {args.limit} reached: {plan.matched - args.limit} more matching "
                  f"message(s); continue with --since {plan.next_since.isoformat()}",
                  markup=False)
    return 0


def _table(out: Console, rows: Sequence[Planned], ids: Sequence[int] | None) -> None:
    table = Table(title="replay" if ids is not None else "replay (dry run)",
                  title_justify="left")
    for name in ("message", "order id", "received", "destination", "target", "sends"):
        table.add_column(name, no_wrap=True)
    if ids is not None:
        table.add_column("delivery id", justify="right")
    for i, r in enumerate(rows):
        values = [cell(r.message.id), cell(order_id(r.message.body)),
                  cell(when(r.message.received_at)), cell(r.destination), cell(r.target),
                  cell(r.summary)]
        if ids is not None:
            values.append(cell(ids[i]))
        table.add_row(*values)
    out.print(table)
