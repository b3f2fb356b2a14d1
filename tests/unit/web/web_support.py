"""A started engine over the in-memory store, its HTTP app through ``httpx.ASGITransport``
(same event loop as the engine's workers), and dashboard users of each role."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import pytest

from alertpipe.config.model import AppSettings
from alertpipe.destinations import REGISTRY
from alertpipe.engine import Engine
from alertpipe.web import create_app
from alertpipe.web.passwords import hash_password
from recording import Recorder, running, settle

PASSWORDS = {"vera": "viewer-password-1", "otto": "operator-password-1",
             "ada": "admin-password-1"}
ROLES = {"vera": "viewer", "otto": "operator", "ada": "admin"}
# Cheap work factor for tests; the format and the check are the production ones.
HASHES = {name: hash_password(pw, n=2**10) for name, pw in PASSWORDS.items()}
SECRET = "s" * 40
__all__ = ["WebRecorder", "client", "client_for", "csrf", "dest", "engine", "hidden", "login",
           "post_order", "settings", "settle"]


class WebRecorder(Recorder):
    """The Recorder under the type name the web tests' channels (and their assertions) use."""

    type_name: ClassVar[str] = "web_recorder"


REGISTRY["web_recorder"] = WebRecorder


def settings(**engine: Any) -> AppSettings:
    def channel(path: str) -> dict[str, Any]:
        return {"source": {"type": "http_json", "path": path}, **common}

    common = {
        "steps": [{"validate": "order"},
                  {"route": [{"to": "sheet"}, {"to": "sms", "when": "amount > 300"}]}],
        "destinations": {"sheet": {"type": "web_recorder"},
                         "sms": {"type": "web_recorder", "targets": ["+15550001", "+15550002"]}},
        "retry": {"base_delay_seconds": 0.01, "max_delay_seconds": 0.02, "max_attempts": 2},
    }
    return AppSettings.model_validate({
        "engine": {"store": "memory://", "poll_interval_seconds": 0.05,
                   "users": [{"name": n, "role": ROLES[n], "password_hash": HASHES[n]}
                             for n in PASSWORDS],
                   "session_secret": SECRET, **engine},
        "channels": {"orders": channel("/orders"), "refunds": channel("/refunds")}})


def dest(engine: Engine, name: str, channel: str = "orders") -> WebRecorder:
    d = engine.channels[channel].destinations[name]
    assert isinstance(d, WebRecorder)
    return d


async def post_order(client: httpx.AsyncClient, order_id: str, amount: str = "10",
                     channel_path: str = "/orders", **fields: Any) -> str:
    r = await client.post(channel_path, json={"order_id": order_id, "amount": amount, **fields})
    assert r.status_code == 202, r.text
    return str(r.json()["message_id"])


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with running(settings()) as eng:
        yield eng


def client_for(engine: Engine, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(engine)),
                             base_url=base_url)


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(engine) as c:
        yield c


_HIDDEN = re.compile(r'name="(login_token|csrf_token)" value="([^"]+)"')


def hidden(html: str, name: str) -> str:
    for field, value in _HIDDEN.findall(html):
        if field == name:
            return value
    raise AssertionError(f"no hidden {name} in the page")


async def login(client: httpx.AsyncClient, user: str,
                password: str | None = None) -> httpx.Response:
    """Log in through the form, as a browser would; returns the answer to the POST."""
    form = await client.get("/ui/login")
    token = hidden(form.text, "login_token")
    return await client.post("/ui/login", data={
        "username": user, "password": PASSWORDS.get(user, "") if password is None else password,
        "login_token": token, "next": "/ui/"})


async def csrf(client: httpx.AsyncClient) -> str:
    """The CSRF token of the logged-in session, read from a page's forms."""
    page = await client.get("/ui/messages")
    assert page.status_code == 200, page.text
    return hidden(page.text, "csrf_token")
