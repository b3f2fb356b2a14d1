"""``alertpipe emulate``: serve the Google OAuth + Sheets and Twilio emulators.

Settings come from the engine's environment variables (``EmulatorSettings.from_env``), refined
by the flags. With ``--write-credentials PATH`` a service-account key file whose ``token_uri``
points at this emulator is written (a key file written by an earlier run is reused).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from alertpipe.emulators.server import bind, serve, url_of
from alertpipe.emulators.settings import EmulatorSettings
from alertpipe.emulators.state import EmulatorState
from alertpipe.errors import AlertpipeError

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``emulate`` subcommand to the main CLI's subparsers."""
    parser = subparsers.add_parser(
        "emulate", help="serve local Google Sheets + OAuth and Twilio emulators",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8099, help="port to bind (8099; 0 = any)")
    parser.add_argument("--write-credentials", metavar="PATH",
                        help="write a service-account JSON for this emulator, then serve")
    parser.add_argument("--spreadsheet", metavar="ID", action="append", default=[],
                        help="a spreadsheet to host, with sheets Sheet1 and Orders (repeatable)")
    parser.add_argument("--quota", metavar="N", type=int,
                        help="Sheets write requests per minute per service account (60)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 0 on a clean stop, 2 on a configuration error."""
    try:
        settings = EmulatorSettings.from_env()
        for spreadsheet_id in args.spreadsheet:
            settings.add_spreadsheet(spreadsheet_id)
        if args.quota is not None:
            settings = dataclasses.replace(settings, sheets_write_quota_per_minute=args.quota)
        state = EmulatorState(settings)
        sock = bind(args.host, args.port)
    except (AlertpipeError, OSError) as exc:
        print(f"alertpipe emulate: {exc}", file=sys.stderr)
        return 2
    url = url_of(sock, settings)
    line = f"alertpipe emulator listening on {url}"
    if args.write_credentials:
        try:
            state.write_credentials(args.write_credentials, url)
        except AlertpipeError as exc:
            sock.close()
            print(f"alertpipe emulate: {exc}", file=sys.stderr)
            return 2
        line += f" (service-account credentials written to {args.write_credentials})"
    try:
        serve(settings, sock, state, on_started=lambda: print(line, flush=True))
    finally:
        sock.close()
    return 0
