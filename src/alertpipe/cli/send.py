"""``alertpipe send``: POST a JSON order (or a JSON array of orders) from a file or stdin."""

from __future__ import annotations

import argparse
import json
import sys

import httpx


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("send", help="post JSON orders to a running engine", description=__doc__)
    p.add_argument("file", nargs="?", default="-", help="JSON file (default: stdin)")
    p.add_argument("--url", default="http://127.0.0.1:8080/orders")
    p.add_argument("--wait", type=float, default=0,
                   help="ask for the delivery outcome, waiting up to N seconds (Prefer: wait=N)")
    p.add_argument("--api-key", help="sent as X-API-Key")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.file == "-":
        text = sys.stdin.read()
    else:
        with open(args.file, encoding="utf-8") as fh:
            text = fh.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    bodies = [json.dumps(o).encode() for o in data] if isinstance(data, list) else [
        text.encode()]
    headers = {"Content-Type": "application/json"}
    if args.wait:
        headers["Prefer"] = f"wait={args.wait:g}"
    if args.api_key:
        headers["X-API-Key"] = args.api_key
    failures = 0
    with httpx.Client(timeout=args.wait + 15) as client:
        for body in bodies:
            try:
                r = client.post(args.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                print(f"alertpipe: cannot reach {args.url}: {exc}", file=sys.stderr)
                return 1
            print(f"{r.status_code} {r.text}")
            failures += r.status_code >= 300
    return 1 if failures else 0
