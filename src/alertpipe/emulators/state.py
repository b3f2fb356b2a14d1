"""The mutable state behind one emulator app (``app.state.emulator``).

All mutation happens on the server's event loop; inspection may come from another thread (a test
driving ``running_emulator``), so every access takes one re-entrant lock, and ``wait_until`` lets
such a thread block on a condition instead of sleeping.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alertpipe.emulators.accounts import ServiceAccount, read_service_account, write_credentials
from alertpipe.emulators.faults import FaultBook
from alertpipe.emulators.grid import Sheet
from alertpipe.emulators.settings import EmulatorSettings

__all__ = ["EmulatorState", "Spreadsheet", "TokenGrant"]

T = TypeVar("T")
QUOTA_WINDOW_SECONDS = 60.0


@dataclass(slots=True)
class TokenGrant:
    """An access token the emulated token endpoint issued."""

    client_email: str
    scopes: frozenset[str]
    expires_at: float


@dataclass(slots=True)
class Spreadsheet:
    """An emulated spreadsheet: its sheets in order, and the sheet that first received rows."""

    spreadsheet_id: str
    sheets: list[Sheet]
    default_sheet: str | None = None

    def titles(self) -> list[str]:
        """Sheet titles in tab order."""
        return [sheet.title for sheet in self.sheets]

    def sheet(self, title: str) -> Sheet:
        """The sheet called ``title`` (exact match; ranges are resolved before this)."""
        return next(sheet for sheet in self.sheets if sheet.title == title)


def _new_spreadsheet(spreadsheet_id: str, titles: list[str]) -> Spreadsheet:
    return Spreadsheet(spreadsheet_id,
                       [Sheet(title, 0 if i == 0 else 100000 + i, i) for i, title in
                        enumerate(titles)])


class EmulatorState:
    """Accounts, tokens, spreadsheets, messages, counters and faults of one emulator."""

    def __init__(self, settings: EmulatorSettings,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.faults = FaultBook()
        self.accounts: dict[str, ServiceAccount] = {}
        self._default_account: ServiceAccount | None = None
        for path in settings.service_account_files:
            self.add_account(read_service_account(path))
        self.tokens: dict[str, TokenGrant] = {}
        self.spreadsheets = {sid: _new_spreadsheet(sid, list(titles))
                             for sid, titles in settings.spreadsheets.items()}
        self.messages: dict[str, dict[str, Any]] = {}
        self.sms_log: list[dict[str, Any]] = []
        self.calls: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.faults_fired: Counter[str] = Counter()
        self.quota_violations = 0
        self.tokens_issued = 0
        self._write_windows: defaultdict[str, deque[float]] = defaultdict(deque)
        self._background: set[asyncio.Task[Any]] = set()

    # -- service accounts and tokens ---------------------------------------------------------
    @property
    def default_account(self) -> ServiceAccount:
        """The emulator's own service account (generated on first use)."""
        with self.lock:
            if self._default_account is None:
                self.add_account(ServiceAccount.generate())
            assert self._default_account is not None
            return self._default_account

    def add_account(self, account: ServiceAccount) -> None:
        """Accept JWTs signed by ``account``; the first emulator-owned one becomes the default."""
        with self.lock:
            self.accounts[account.client_email] = account
            if self._default_account is None or (
                    account.is_emulator_owned
                    and account.client_email == self._default_account.client_email):
                self._default_account = account

    def write_credentials(self, path: str | os.PathLike[str], base_url: str) -> ServiceAccount:
        """Write a key file for this emulator (reusing a key file it wrote before) and trust it."""
        existing = Path(path).exists()
        account = write_credentials(path, base_url, None if existing else self.default_account)
        self.add_account(account)
        return account

    def issue_token(self, client_email: str, scopes: frozenset[str]) -> str:
        """Mint an access token for ``client_email``, valid ``token_lifetime_seconds``."""
        token = "ya29." + secrets.token_urlsafe(72)
        with self.lock:
            self.tokens[token] = TokenGrant(
                client_email, scopes, self.clock() + self.settings.token_lifetime_seconds)
            self.tokens_issued += 1
        return token

    def token_grant(self, token: str) -> TokenGrant | None:
        """The live grant behind ``token``; ``None`` when unknown, revoked or expired."""
        with self.lock:
            grant = self.tokens.get(token)
            if grant is None or grant.expires_at <= self.clock():
                return None
            return grant

    def revoke_tokens(self) -> int:
        """Forget every issued token (clients then see 401 and must refresh)."""
        with self.lock:
            count = len(self.tokens)
            self.tokens.clear()
            return count

    # -- counters and quota -------------------------------------------------------------------
    def count_call(self, api: str, method: str) -> None:
        """Record one request to ``api``'s ``method``."""
        with self.lock:
            self.calls[api][method] += 1

    def take_write_quota(self, client_email: str) -> bool:
        """Spend one write for ``client_email`` in the rolling minute; False (and a violation
        counted) when the quota is used up."""
        now = self.clock()
        with self.lock:
            window = self._write_windows[client_email]
            while window and window[0] <= now - QUOTA_WINDOW_SECONDS:
                window.popleft()
            if len(window) >= self.settings.sheets_write_quota_per_minute:
                self.quota_violations += 1
                return False
            window.append(now)
            return True

    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot of every counter."""
        with self.lock:
            return {
                "calls": {api: dict(methods) for api, methods in self.calls.items()},
                "quota_violations": self.quota_violations,
                "tokens_issued": self.tokens_issued,
                "faults_fired": dict(self.faults_fired),
                "faults_fired_total": sum(self.faults_fired.values()),
                "faults_pending": self.faults.pending(),
                "messages": len(self.sms_log),
                "rows": {sid: sum(len(sheet.rows) for sheet in book.sheets)
                         for sid, book in self.spreadsheets.items()},
            }

    def reset(self) -> None:
        """Clear messages, rows, counters, quota windows and faults; keep accounts, tokens and
        the spreadsheets themselves."""
        with self.lock:
            self.spreadsheets = {sid: _new_spreadsheet(sid, book.titles())
                                 for sid, book in self.spreadsheets.items()}
            self.messages.clear()
            self.sms_log.clear()
            self.calls.clear()
            self.faults_fired.clear()
            self.quota_violations = 0
            self.tokens_issued = 0
            self._write_windows.clear()
            self.faults.clear()
            self.changed.notify_all()

    def add_spreadsheet(self, spreadsheet_id: str, titles: list[str]) -> Spreadsheet:
        """Create (or return the existing) spreadsheet ``spreadsheet_id``."""
        with self.lock:
            if spreadsheet_id not in self.spreadsheets:
                self.spreadsheets[spreadsheet_id] = _new_spreadsheet(spreadsheet_id, titles)
            return self.spreadsheets[spreadsheet_id]

    # -- synchronisation ----------------------------------------------------------------------
    def notify(self) -> None:
        """Wake threads blocked in ``wait_until`` (call after every visible effect)."""
        with self.changed:
            self.changed.notify_all()

    def wait_until(self, predicate: Callable[[EmulatorState], T], timeout: float = 5.0) -> T:
        """Block the calling thread until ``predicate(state)`` is truthy; raise TimeoutError.

        Meant for threads other than the server's loop (tests using ``running_emulator``).
        """
        with self.changed:
            result = self.changed.wait_for(lambda: predicate(self), timeout)
        if not result:
            raise TimeoutError("emulator state did not reach the expected condition")
        return result

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` as a task that outlives a cancelled request (kept referenced)."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
