"""``alertpipe apikey new``: make an API key. The key is printed once; the config keeps only its
SHA-256 hash, so neither the config nor the store ever holds a usable key."""

from __future__ import annotations

import argparse

from alertpipe.auth import new_key


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("apikey", help="make an API key (printed once) and its config entry",
                       description=__doc__)
    p.add_argument("action", choices=["new"])
    p.add_argument("--id", required=True, help="a name for the key, e.g. shop-eu")
    p.add_argument("--channel", action="append", dest="channels",
                   help="a channel the key may use (repeatable; default: all)")
    p.add_argument("--right", action="append", dest="rights",
                   choices=["ingest", "read", "admin"], help="repeatable; default: ingest")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    key, digest = new_key()
    channels = args.channels or ["*"]
    rights = args.rights or ["ingest"]
    print(f"key (shown once; give it to the client): {key}\n")
    print("add to alertpipe.yaml under engine.api_keys:")
    print(f"  - id: {args.id}\n    sha256: {digest}\n"
          f"    channels: [{', '.join(channels)}]\n    rights: [{', '.join(rights)}]")
    return 0
