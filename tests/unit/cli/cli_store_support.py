"""What the ``dlq`` and ``replay`` CLI tests share: a config naming a SQLite store under a temp
directory with the order channel's two destinations, and a way to reach that store directly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from alertpipe.emulators import write_credentials
from alertpipe.store import SQLiteStore

T = TypeVar("T")
ON_CALL = ["+15558675310", "+15558675311"]


def write_config(tmp: Path, token: str, *, threshold: int | None = None) -> Path:
    """``tmp/alertpipe.yaml`` (store ``tmp/a.db``, credentials ``tmp/sa.json``); the Twilio auth
    token is ``token``, and with ``threshold`` the channel sets ``vars: {threshold: ...}``."""
    write_credentials(tmp / "sa.json", "http://127.0.0.1:1")
    channel_vars = "" if threshold is None else f"""
    vars:
      threshold: {threshold}"""
    cfg = tmp / "alertpipe.yaml"
    cfg.write_text(f"""
engine:
  store: "sqlite:///{tmp}/a.db"
channels:
  orders:{channel_vars}
    destinations:
      audit_sheet:
        type: google_sheets
        spreadsheet_id: sheet-1
        range: Orders!A:G
        credentials_file: {tmp}/sa.json
      oncall_sms:
        type: twilio_sms
        account_sid: AC{"0" * 32}
        auth_token: {token}
        from_number: "+15017122661"
        to: {ON_CALL}
""", encoding="utf-8")
    return cfg


def with_store(db: Path, fn: Callable[[SQLiteStore], Awaitable[T]]) -> T:
    """``fn(store)`` on the SQLite store at ``db``, opened and closed around it."""
    async def go() -> T:
        s = SQLiteStore(db)
        await s.open()
        try:
            return await fn(s)
        finally:
            await s.close()

    return asyncio.run(go())
