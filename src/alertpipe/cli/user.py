"""``alertpipe user hash``: make the ``password_hash`` of a dashboard user.

Asks for the password twice on a terminal, or reads it from the first line of standard input
(``… | alertpipe user hash``). Prints the hash (scrypt with a random salt) and, with ``--name``,
the config entry to add under ``engine.users``. The password is never printed or stored.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from alertpipe.config.model import ROLES
from alertpipe.errors import UsageError
from alertpipe.web.passwords import hash_password

MIN_LENGTH = 8


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("user", help="make a dashboard user's password hash",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["hash"])
    p.add_argument("--name", help="the user name, to print the whole config entry")
    p.add_argument("--role", choices=ROLES, default="viewer",
                   help="the role for the printed entry (default: viewer)")
    p.set_defaults(func=run)


def read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise UsageError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def run(args: argparse.Namespace) -> int:
    password = read_password()
    if len(password) < MIN_LENGTH:
        raise UsageError(f"the password must have at least {MIN_LENGTH} characters")
    digest = hash_password(password)
    if args.name:
        print("add to alertpipe.yaml under engine.users:")
        print(f"  - name: {args.name}\n    role: {args.role}\n    password_hash: '{digest}'")
    else:
        print(digest)
    return 0
