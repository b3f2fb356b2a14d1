"""The dashboard over a started engine: log-in, sessions, roles, CSRF, pages, actions, audit."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from web_support import (
    PASSWORDS,
    SECRET,
    client_for,
    csrf,
    dest,
    hidden,
    login,
    post_order,
    settings,
    settle,
)

from alertpipe.emulators import EmulatorSettings, running_emulator
from alertpipe.emulators.settings import DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN
from alertpipe.engine import Engine
from alertpipe.errors import PermanentError
from alertpipe.store import MemoryStore


def listed(page: str) -> list[str]:
    """The message ids a list page links to, in order, once each."""
    return list(dict.fromkeys(re.findall(r'href="/ui/messages/([0-9a-f-]{36})"', page)))


def delivery_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'id="delivery-(\d+)"', page)]


async def test_pages_need_a_session(client: httpx.AsyncClient) -> None:
    for path in ("/ui/", "/ui/messages?q=A-1", "/ui/messages/abc", "/ui/audit",
                 "/ui/demo/sms"):
        r = await client.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/ui/login?next=%2Fui%2F"), path
    assert (await client.get("/ui")).headers["location"] == "/ui/"


async def test_login_sets_a_safe_session_cookie(engine: Engine,
                                                client: httpx.AsyncClient) -> None:
    r = await login(client, "ada")
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    cookie = next(h for h in r.headers.get_list("set-cookie")
                  if h.startswith("alertpipe_session="))
    attrs = {a.strip().split("=")[0].lower(): a for a in cookie.split(";")[1:]}
    assert "httponly" in attrs and attrs["samesite"].strip().lower() == "samesite=lax"
    assert attrs["path"].strip() == "Path=/ui" and "secure" not in attrs
    page = await client.get("/ui/")
    assert page.status_code == 200 and "orders" in page.text and "ada" in page.text
    [entry] = await engine.store.list_audit()
    assert (entry.actor, entry.role, entry.action) == ("ada", "admin", "login")
    for secret in (PASSWORDS["ada"], SECRET):
        assert secret not in page.text and secret not in cookie


async def test_cookie_is_secure_over_https(engine: Engine) -> None:
    async with client_for(engine, "https://dash.example") as client:
        r = await login(client, "vera")
        cookie = next(h for h in r.headers.get_list("set-cookie")
                      if h.startswith("alertpipe_session="))
        assert "secure" in cookie.lower()


async def test_wrong_password_and_unknown_user_look_alike(
        engine: Engine, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    wrong = await login(client, "ada", "not-the-password")
    typed_in_name = "my-secret-password-typed-as-name"
    unknown = await login(client, typed_in_name, "whatever-1")
    for r in (wrong, unknown):
        assert r.status_code == 401
        assert "Wrong user name or password." in r.text
        assert not any(h.startswith("alertpipe_session=")
                       for h in r.headers.get_list("set-cookie"))
    assert (await client.get("/ui/")).status_code == 303
    failures = [rec for rec in caplog.records if rec.getMessage() == "log-in failed"]
    assert len(failures) == 2
    assert getattr(failures[0], "user", None) == "ada"
    logs = " ".join(f"{rec.getMessage()} {rec.__dict__}" for rec in caplog.records)
    for text in ("not-the-password", "whatever-1", typed_in_name):
        assert text not in logs
    assert await engine.store.list_audit() == []


async def test_login_form_token_is_required(client: httpx.AsyncClient) -> None:
    r = await client.post("/ui/login", data={"username": "ada", "password": PASSWORDS["ada"]})
    assert r.status_code == 403
    assert not any(h.startswith("alertpipe_session=") for h in r.headers.get_list("set-cookie"))


async def test_login_attempts_are_rate_limited(client: httpx.AsyncClient) -> None:
    codes = [(await login(client, "otto", "wrong-password")).status_code for _ in range(11)]
    assert codes[:10] == [401] * 10 and codes[10] == 429
    limited = await login(client, "otto")  # even the right password waits now
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


async def test_login_redirects_only_within_the_dashboard(client: httpx.AsyncClient) -> None:
    form = await client.get("/ui/login", params={"next": "https://evil.example/"})
    r = await client.post("/ui/login", data={
        "username": "vera", "password": PASSWORDS["vera"], "next": "//evil.example/",
        "login_token": hidden(form.text, "login_token")})
    assert r.headers["location"] == "/ui/"


async def test_tampered_cookie_is_no_session(client: httpx.AsyncClient) -> None:
    await login(client, "vera")
    value = client.cookies["alertpipe_session"]
    assert (await client.get("/ui/")).status_code == 200
    client.cookies.clear()
    client.cookies.set("alertpipe_session", value[:-3] + ("xyz" if value[-3:] != "xyz" else "abc"))
    assert (await client.get("/ui/")).status_code == 303


async def test_viewer_sees_no_actions_and_a_forged_post_is_refused(
        engine: Engine, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    mid = await post_order(client, "V-1", "500")
    await settle(engine, mid)
    await login(client, "vera")
    page = await client.get(f"/ui/messages/{mid}")
    assert page.status_code == 200 and "V-1" in page.text
    assert "/resend" not in page.text and "Resend" not in page.text
    channels = await client.get("/ui/")
    assert "/ui/channels/orders/stop" not in channels.text
    token = await csrf(client)
    forged = await client.post(f"/ui/messages/{mid}/resend",
                               data={"csrf_token": token, "destination": "sms"})
    assert forged.status_code == 403 and "operator" in forged.text
    assert (await client.post("/ui/channels/orders/stop",
                              data={"csrf_token": token})).status_code == 403
    stored = await engine.store.get_message(mid)
    assert stored is not None and len(stored.deliveries) == 3
    assert engine.channels and await engine.channel_state("orders") == "running"
    assert any(r.getMessage() == "action refused" for r in caplog.records)


async def test_posts_without_the_sessions_csrf_token_are_refused(
        engine: Engine, client: httpx.AsyncClient) -> None:
    mid = await post_order(client, "C-1")
    await settle(engine, mid)
    await login(client, "otto")
    async with client_for(engine) as other:  # another session's token is no good here
        await login(other, "otto")
        foreign = await csrf(other)
    for data in ({"destination": "sheet"}, {"destination": "sheet", "csrf_token": ""},
                 {"destination": "sheet", "csrf_token": "guess"},
                 {"destination": "sheet", "csrf_token": foreign}):
        r = await client.post(f"/ui/messages/{mid}/resend", data=data)
        assert r.status_code == 403, data
        assert "CSRF" in r.text
    r = await client.post(f"/ui/messages/{mid}/resend", content=b'{"destination": "sheet"}',
                          headers={"content-type": "application/json"})
    assert r.status_code == 403
    assert (await client.post("/ui/logout")).status_code == 403
    stored = await engine.store.get_message(mid)
    assert stored is not None and len(stored.deliveries) == 1
    assert [e.action for e in await engine.store.list_audit()] == ["login", "login"]


async def test_no_session_post_is_refused(engine: Engine, client: httpx.AsyncClient) -> None:
    mid = await post_order(client, "C-2")
    r = await client.post(f"/ui/messages/{mid}/resend", data={"destination": "sheet",
                                                              "csrf_token": "x"})
    assert r.status_code == 403 and "log in" in r.text


async def test_operator_resends_and_sees_the_new_attempt(
        engine: Engine, client: httpx.AsyncClient) -> None:
    mid = await post_order(client, "A-1001", "349.99", customer_name="Ada L.")
    await settle(engine, mid)
    await login(client, "otto")
    found = await client.get("/ui/messages", params={"q": "a-1001"})
    assert f"/ui/messages/{mid}" in found.text
    page = await client.get(f"/ui/messages/{mid}")
    before = delivery_ids(page.text)
    assert len(before) == 3 and page.text.count('class="attempt delivered"') == 3
    r = await client.post(f"/ui/messages/{mid}/resend",
                          data={"csrf_token": hidden(page.text, "csrf_token"),
                                "destination": "sheet"})
    location = r.headers["location"]
    assert r.status_code == 303 and location == f"/ui/messages/{mid}?notice=resent&wait=5"
    after = await client.get(location)  # waits, on the engine's events, for the outcome
    assert "Resent" in after.text
    new = [i for i in delivery_ids(after.text) if i not in before]
    assert len(new) == 1
    section = after.text.split(f'id="delivery-{new[0]}"')[1].split("</section>")[0]
    assert 'class="attempt delivered"' in section and f"r-{new[0]}" in section
    actions = [(e.actor, e.action, e.target) for e in await engine.store.list_audit()]
    assert ("otto", "resend", mid) in actions
    assert actions.count(("otto", "view", mid)) == 2


async def test_dead_letters_retry_and_discard_from_the_page(
        engine: Engine, client: httpx.AsyncClient) -> None:
    dest(engine, "sheet").fail = PermanentError("400 INVALID_ARGUMENT: bad row", code=400)
    mid = await post_order(client, "DL-1")
    await settle(engine, mid)
    await login(client, "otto")
    dead = await client.get("/ui/messages", params={"status": "dead"})
    assert "DL-1" in dead.text
    page = await client.get(f"/ui/messages/{mid}")
    [did] = delivery_ids(page.text)
    assert "400 INVALID_ARGUMENT" in page.text
    assert f"/ui/deliveries/{did}/retry" in page.text
    assert f"/ui/deliveries/{did}/discard" in page.text
    token = hidden(page.text, "csrf_token")
    r = await client.post(f"/ui/deliveries/{did}/discard", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"].endswith("notice=discarded")
    rec = await engine.store.get_delivery(did)
    assert rec is not None and rec.status == "discarded"
    again = await client.post(f"/ui/deliveries/{did}/discard", data={"csrf_token": token})
    assert again.status_code == 409
    dest(engine, "sheet").fail = None
    r = await client.post(f"/ui/deliveries/{did}/retry", data={"csrf_token": token})
    assert r.status_code == 303
    await settle(engine, mid)
    rec = await engine.store.get_delivery(did)
    assert rec is not None and rec.status == "delivered"
    assert (await client.post("/ui/deliveries/424242/retry",
                              data={"csrf_token": token})).status_code == 404


async def test_operator_stops_and_starts_a_channel(engine: Engine,
                                                  client: httpx.AsyncClient) -> None:
    await login(client, "otto")
    token = await csrf(client)
    r = await client.post("/ui/channels/orders/stop", data={"csrf_token": token})
    assert r.status_code == 303
    page = await client.get(r.headers["location"])
    assert "The channel is stopped" in page.text
    assert 'class="state stopped"' in page.text and "/ui/channels/orders/start" in page.text
    assert (await client.post("/orders", json={"order_id": "X", "amount": "1"})
            ).status_code == 503
    await client.post("/ui/channels/orders/start", data={"csrf_token": token})
    assert await engine.channel_state("orders") == "running"


async def test_audit_log_is_for_admins(engine: Engine, client: httpx.AsyncClient) -> None:
    mid = await post_order(client, "AU-1")
    await settle(engine, mid)
    await login(client, "otto")
    await client.get(f"/ui/messages/{mid}")
    page = await client.get(f"/ui/messages/{mid}")
    await client.post(f"/ui/messages/{mid}/resend",
                      data={"csrf_token": hidden(page.text, "csrf_token"),
                            "destination": "sheet"})
    assert (await client.get("/ui/audit")).status_code == 403
    async with client_for(engine) as admin:
        await login(admin, "ada")
        audit = await admin.get("/ui/audit")
        assert audit.status_code == 200
        rows = re.findall(r'<tr class="audit-entry">(.*?)</tr>', audit.text, re.S)
        text = [re.sub(r"<[^>]+>|\s+", " ", row).split() for row in rows]
        assert [t[t.index("otto") + 2] for t in text if "otto" in t][:3] == [
            "resend", "view", "view"]
        assert f"/ui/messages/{mid}" in audit.text
        assert "Audit log" in (await admin.get("/ui/")).text
    assert "Audit log" not in (await client.get("/ui/")).text


async def test_message_detail_redacts_secrets_and_escapes_html(
        engine: Engine, client: httpx.AsyncClient) -> None:
    body = {"order_id": "SEC-1", "amount": "10", "customer_name": "<script>alert(1)</script>",
            "api_key": "sk_live_body_secret"}
    raw = (b'{"order_id": "SEC-1", "amount": "10", "api_key": "sk_live_body_secret", '
           b'"customer_name": "<script>alert(1)</script>"}')
    meta = {"remote_addr": "127.0.0.1", "Authorization": "Bearer tok_header_secret",
            "X-Shopify-Hmac-Sha256": "hmac_header_secret", "Cookie": "sid=cookie_secret",
            "X-Shopify-Event-Id": "evt-77"}
    accepted = await engine.accept("orders", body, raw, meta)
    await login(client, "vera")
    page = await client.get(f"/ui/messages/{accepted.message_id}")
    assert page.status_code == 200
    for secret in ("sk_live_body_secret", "tok_header_secret", "hmac_header_secret",
                   "cookie_secret", "<script>alert(1)</script>"):
        assert secret not in page.text, secret
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "[redacted]" in page.text and "evt-77" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


async def test_messages_page_filters_and_pages(engine: Engine,
                                              client: httpx.AsyncClient) -> None:
    mids = [await post_order(client, f"PG-{i}") for i in range(53)]
    await login(client, "vera")
    first = await client.get("/ui/messages", params={"q": "PG-"})
    assert listed(first.text) == list(reversed(mids))[:50]
    links = re.findall(r'href="(/ui/messages\?[^"]*cursor=[^"]+)"', first.text)
    assert len(links) == 1
    second = await client.get(links[0].replace("&amp;", "&"))
    assert listed(second.text) == list(reversed(mids))[50:]
    assert "cursor=" not in second.text
    bad = await client.get("/ui/messages", params={"since": "last tuesday"})
    assert bad.status_code == 400 and "ISO 8601" in bad.text
    filtered = await client.get("/ui/messages", params={"destination": "sms"})
    assert "PG-" not in filtered.text and "No message matches" in filtered.text


async def test_logout_ends_the_session_in_the_browser(engine: Engine,
                                                      client: httpx.AsyncClient) -> None:
    await login(client, "vera")
    r = await client.post("/ui/logout", data={"csrf_token": await csrf(client)})
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert "alertpipe_session" not in client.cookies
    assert (await client.get("/ui/")).status_code == 303
    assert [e.action for e in await engine.store.list_audit()] == ["logout", "login"]


async def test_demo_pages(engine: Engine, client: httpx.AsyncClient) -> None:
    await login(client, "vera")
    assert (await client.get("/ui/demo/sms")).status_code == 404
    assert "Demo: SMS" not in (await client.get("/ui/")).text
    with running_emulator(EmulatorSettings()) as emu:
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{emu.url}/2010-04-01/Accounts/{DEMO_ACCOUNT_SID}/Messages.json",
                                auth=(DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN),
                                data={"To": "+15558675310", "From": "+15017122661",
                                      "Body": "High-value order A-9: $500"})
            assert r.status_code == 201, r.text
        demo = Engine(settings(demo_emulator_url=emu.url), store=MemoryStore())
        async with client_for(demo) as c:
            await login(c, "vera")
            assert "Demo: SMS" in (await c.get("/ui/")).text
            sms = await c.get("/ui/demo/sms")
            assert sms.status_code == 200
            assert "High-value order A-9: $500" in sms.text and "+15558675310" in sms.text
            assert DEMO_AUTH_TOKEN not in sms.text
            sheet = await c.get("/ui/demo/sheet")
            assert sheet.status_code == 200 and "No channel writes to a Google Sheet" in (
                sheet.text)
    async with client_for(demo) as c:  # the emulator is gone
        await login(c, "vera")
        gone = await c.get("/ui/demo/sms")
        assert gone.status_code == 502 and "did not answer" in gone.text


@pytest.fixture
async def no_users() -> AsyncIterator[httpx.AsyncClient]:
    eng = Engine(settings(users=[]), store=MemoryStore())
    async with client_for(eng) as c:
        yield c


async def test_without_users_nobody_can_log_in(no_users: httpx.AsyncClient) -> None:
    page = await no_users.get("/ui/login")
    assert "No dashboard users are configured" in page.text
    assert (await login(no_users, "ada", "admin-password-1")).status_code == 401


async def test_detail_page_waits_no_longer_than_asked(engine: Engine,
                                                      client: httpx.AsyncClient) -> None:
    mid = await post_order(client, "W-1")
    await settle(engine, mid)
    await login(client, "otto")
    engine.stop_channel("orders")  # the resent delivery stays pending
    page = await client.get(f"/ui/messages/{mid}")
    r = await client.post(f"/ui/messages/{mid}/resend",
                          data={"csrf_token": hidden(page.text, "csrf_token"),
                                "destination": "sheet"})
    assert r.status_code == 303
    waited = await client.get(f"/ui/messages/{mid}", params={"wait": "1"})
    assert waited.status_code == 200
    assert 'class="chip pending"' in waited.text and len(delivery_ids(waited.text)) == 2
    engine.start_channel("orders")
    done = await client.get(f"/ui/messages/{mid}", params={"wait": "5"})
    assert done.text.count('class="attempt delivered"') == 2


async def test_a_store_that_refuses_writes_shows_a_503_page(
        engine: Engine, client: httpx.AsyncClient) -> None:
    mid = await post_order(client, "U-2")
    await settle(engine, mid)
    await login(client, "otto")
    page = await client.get(f"/ui/messages/{mid}")
    assert isinstance(engine.store, MemoryStore)
    engine.store.fail_writes = True
    try:
        r = await client.post(f"/ui/messages/{mid}/resend",
                              data={"csrf_token": hidden(page.text, "csrf_token"),
                                    "destination": "sheet"})
        assert r.status_code == 503 and "store cannot accept" in r.text
        assert (await client.get(f"/ui/messages/{mid}")).status_code == 503  # its audit entry
    finally:
        engine.store.fail_writes = False
