"""``alertpipe`` — the command line: run, emulate, send, demo, dlq, replay, apikey, user."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alertpipe.errors import AlertpipeError


def build_parser() -> argparse.ArgumentParser:
    from alertpipe.cli import apikey, demo, dlq, emulate, replay, run, send, user

    parser = argparse.ArgumentParser(
        prog="alertpipe", description="An integration engine for alerting pipelines.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in (run, emulate, send, demo, dlq, replay, apikey, user):
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AlertpipeError as exc:
        print(f"alertpipe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
