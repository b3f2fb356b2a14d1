"""The bridge between google-auth (synchronous) and the engine's shared ``httpx.AsyncClient``.

google-auth refreshes a token synchronously through a ``google.auth.transport.Request``
callable. :class:`AsyncClientRequest` is that callable: it is meant to run in a worker thread
(``await asyncio.to_thread(creds.refresh, request)``) and it hands each HTTP call back to the
engine's event loop with ``asyncio.run_coroutine_threadsafe``, so token traffic goes through the
one injected client (and through ``MockTransport``/``ASGITransport`` in tests). The loop stays
free while the worker thread waits, so an in-process ASGI emulator can answer.

:class:`TokenSource` caches the token in the credentials object (google-auth refreshes ahead of
expiry), serialises refreshes with an ``asyncio.Lock`` so a burst fetches one token, and
translates google-auth's exceptions at the boundary::

    RefreshError (retryable)      -> RetryableError
    RefreshError (invalid_grant…) -> PermanentError
    TransportError                -> RetryableError (token endpoint 429/5xx carry retry_after)

google-auth retries a token request itself (with sleeps) when the endpoint answers 5xx/429 or
``temporarily_unavailable``. The engine owns retries, so :class:`AsyncClientRequest` turns such
answers into :class:`TokenEndpointUnavailable` (a ``TransportError``), which ends google-auth's
loop at once. No message produced here contains a token, an assertion or a private key.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import google.auth.exceptions
import google.auth.transport
import httpx
from google.oauth2 import service_account

from alertpipe.destinations._http import parse_retry_after
from alertpipe.errors import CredentialsError, PermanentError, RetryableError, UsageError

#: Token-endpoint answers that google-auth would retry by itself; we end its loop instead.
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_RETRYABLE_OAUTH_ERRORS = frozenset({"internal_failure", "server_error", "temporarily_unavailable"})
_REQUIRED_KEYS = ("client_email", "private_key", "token_uri")


class TokenEndpointUnavailable(google.auth.exceptions.TransportError):
    """The token endpoint answered with a transient failure (429, 5xx, ``server_error``)."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            f"token endpoint answered HTTP {status}", retryable=True)
        self.status = status
        self.retry_after = retry_after


class HttpxResponse(google.auth.transport.Response):
    """An ``httpx.Response`` in the shape google-auth reads (``status``, ``headers``, ``data``)."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class AsyncClientRequest(google.auth.transport.Request):
    """A google-auth ``Request`` that performs its HTTP call on ``loop`` through ``http``.

    Call it from a worker thread only; calling it on the loop's own thread would deadlock, so
    that raises :class:`~alertpipe.errors.UsageError`.
    """

    def __init__(
        self, http: httpx.AsyncClient, loop: asyncio.AbstractEventLoop, *, timeout: float = 10.0
    ) -> None:
        self.http = http
        self.loop = loop
        self.timeout = timeout

    def __call__(
        self, url: str, method: str = "GET", body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None, timeout: float | None = None, **kwargs: Any,
    ) -> HttpxResponse:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise UsageError("AsyncClientRequest must be called from a worker thread "
                             "(asyncio.to_thread), not on the event loop it targets")
        limit = timeout if timeout is not None else self.timeout
        host = urlsplit(url).netloc or url
        coro = self.http.request(method, url, content=body, headers=dict(headers or {}),
                                 timeout=limit)
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            # A little slack so that httpx's own timeout fires first and is reported precisely.
            response = future.result(timeout=limit + 1.0)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise google.auth.exceptions.TransportError(  # type: ignore[no-untyped-call]
                f"token request to {host} timed out after {limit:g}s", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise google.auth.exceptions.TransportError(  # type: ignore[no-untyped-call]
                f"token request to {host} failed: {type(exc).__name__}", retryable=True) from exc
        if response.status_code in _RETRYABLE_STATUSES or _is_retryable_oauth_error(response):
            raise TokenEndpointUnavailable(
                response.status_code, parse_retry_after(response.headers.get("retry-after")))
        return HttpxResponse(response)


def _is_retryable_oauth_error(response: httpx.Response) -> bool:
    if response.is_success:
        return False
    try:
        data = response.json()
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    return any(data.get(k) in _RETRYABLE_OAUTH_ERRORS for k in ("error", "error_description"))


def load_service_account(path: str, scopes: list[str]) -> service_account.Credentials:
    """Load a service-account key file with google-auth; raise ``CredentialsError`` if unusable.

    Errors name the file and what is wrong with it, never the key.
    """
    if not path:
        raise CredentialsError("google_sheets: credentials_file is missing (set "
                               "GOOGLE_APPLICATION_CREDENTIALS to a service-account JSON key)",
                               key="credentials_file")
    where = f"credentials_file {path}"
    file = Path(path)
    if not file.is_file():
        raise CredentialsError(f"{where}: no such file", key="credentials_file")
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CredentialsError(f"{where}: cannot be read ({type(exc).__name__})",
                               key="credentials_file") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CredentialsError(f"{where}: is not valid JSON", key="credentials_file") from exc
    if not isinstance(info, dict):
        raise CredentialsError(f"{where}: is not a JSON object", key="credentials_file")
    if info.get("type") != "service_account":
        kind = info.get("type")
        raise CredentialsError(
            f"{where}: has type {kind!r}, expected 'service_account'" if isinstance(kind, str)
            else f"{where}: has no \"type\": \"service_account\"", key="credentials_file")
    missing = [k for k in _REQUIRED_KEYS if not isinstance(info.get(k), str) or not info[k]]
    if missing:
        raise CredentialsError(f"{where}: missing {', '.join(missing)}", key="credentials_file")
    try:
        creds: service_account.Credentials = (
            service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                path, scopes=scopes))
    except (ValueError, TypeError, KeyError, google.auth.exceptions.GoogleAuthError) as exc:
        # The library's message may quote key material; report only the kind of failure.
        raise CredentialsError(f"{where}: private_key could not be loaded "
                               f"({type(exc).__name__})", key="credentials_file") from exc
    return creds


class TokenSource:
    """An OAuth access token for one service account, fetched through the engine's client."""

    def __init__(self, credentials: service_account.Credentials, *, timeout: float = 10.0) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self._lock = asyncio.Lock()

    @property
    def email(self) -> str:
        return str(self.credentials.service_account_email)

    async def token(self, http: httpx.AsyncClient) -> str:
        """The cached token, refreshed first if it is missing or about to expire."""
        async with self._lock:
            if not self.credentials.valid:
                await self._refresh(http)
            return str(self.credentials.token)

    async def refresh_rejected(self, http: httpx.AsyncClient, rejected: str) -> str:
        """Force a new token after ``rejected`` got a 401; skip it if another caller already did."""
        async with self._lock:
            if self.credentials.token == rejected or not self.credentials.valid:
                await self._refresh(http)
            return str(self.credentials.token)

    async def _refresh(self, http: httpx.AsyncClient) -> None:
        request = AsyncClientRequest(http, asyncio.get_running_loop(), timeout=self.timeout)
        who = f"Google token refresh for {self.email}"
        try:
            await asyncio.to_thread(self.credentials.refresh, request)
        except TokenEndpointUnavailable as exc:
            raise RetryableError(f"{who} failed: token endpoint answered HTTP {exc.status}",
                                 retry_after=exc.retry_after, code=exc.status) from exc
        except google.auth.exceptions.TransportError as exc:
            raise RetryableError(f"{who} failed: {_summary(exc)}") from exc
        except google.auth.exceptions.RefreshError as exc:
            if getattr(exc, "retryable", False):
                raise RetryableError(f"{who} failed: {_summary(exc)}") from exc
            raise PermanentError(f"{who} failed: {_summary(exc)}") from exc
        except google.auth.exceptions.GoogleAuthError as exc:
            raise PermanentError(f"{who} failed: {type(exc).__name__}") from exc


def _summary(exc: Exception) -> str:
    """The first argument of a google-auth error ("invalid_grant: …"), short and single-line."""
    first = exc.args[0] if exc.args else type(exc).__name__
    text = " ".join(str(first).split())
    return text[:200] or type(exc).__name__


__all__ = ["AsyncClientRequest", "TokenEndpointUnavailable", "TokenSource",
           "load_service_account", "parse_retry_after"]
