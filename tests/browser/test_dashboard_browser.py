"""The dashboard in headless chromium, against the engine as a process and the emulators: log
in, find an order by search, open it, resend it and see the new attempt; roles, CSRF, the audit
log and demo mode. Saves the screenshots that docs/dashboard.md shows."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from browser_support import ON_CALL, REPO, USERS, Site, chromium_path, site
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from alertpipe.emulators import EmulatorState

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = REPO / "docs" / "img"
VIEWPORT = {"width": 1200, "height": 860}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with site(tmp_path_factory.mktemp("browser")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


def log_in(ctx: BrowserContext, stack: Site, user: str) -> Page:
    page = ctx.new_page()
    page.goto(f"{stack.url}/ui/")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(USERS[user][1])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Channels")).to_be_visible()
    expect(page.locator("header .user")).to_have_text(user)
    return page


def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    """A PNG small enough to commit. It replaces docs/dashboard.md's picture only when
    ALERTPIPE_SCREENSHOTS=1 (``make screenshots``), so a test run leaves the tree clean."""
    data = page.screenshot(full_page=full_page)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 400_000, (name, len(data))
    if os.environ.get("ALERTPIPE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / name).write_bytes(data)


def find_order(page: Page, order_id: str) -> None:
    page.get_by_role("link", name="Messages", exact=True).click()
    page.get_by_label("Search").fill(order_id.lower())
    page.get_by_role("button", name="Find").click()
    rows = page.locator("table.messages tbody tr")
    expect(rows).to_have_count(1)
    rows.get_by_role("link", name=order_id).click()
    expect(page.locator("h1 .order-id")).to_have_text(order_id)


def test_operator_finds_an_order_resends_it_and_sees_the_new_attempt(
        stack: Site, context: BrowserContext) -> None:
    page = log_in(context, stack, "otto")
    channel = page.locator("#channel-orders")
    expect(channel.locator(".state")).to_have_text("running")
    expect(channel.locator("table.destinations tbody tr")).to_have_count(2)
    expect(channel.locator("svg.chart")).to_be_visible()
    screenshot(page, "dashboard-channels.png")

    find_order(page, "A-1001")
    deliveries = page.locator("section.delivery")
    expect(deliveries).to_have_count(3)  # the Sheet row and one SMS per on-call number
    expect(page.locator("tr.attempt.delivered")).to_have_count(3)
    texts_before = stack.sms_count()

    page.get_by_label("Resend to").select_option("oncall_sms")
    page.get_by_role("button", name="Resend").click()
    # The page after a resend waits (on the engine's outcome events) for the new attempts.
    expect(page.get_by_role("status")).to_contain_text("Resent")
    expect(deliveries).to_have_count(5)
    expect(page.locator("tr.attempt.delivered")).to_have_count(5)

    def texted_again(state: EmulatorState) -> bool:
        return len(state.sms_log) == texts_before + len(ON_CALL)

    stack.emu.state.wait_until(texted_again, timeout=5)  # both on-call phones, once each
    new = deliveries.nth(4)
    expect(new).to_contain_text("oncall_sms")
    expect(new.locator("tr.attempt.delivered")).to_contain_text(re.compile(r"SM[0-9a-f]{32}"))
    screenshot(page, "dashboard-message.png", full_page=True)


def test_viewer_has_no_resend_button_and_a_forged_post_is_refused(
        stack: Site, context: BrowserContext) -> None:
    page = log_in(context, stack, "vera")
    find_order(page, "A-1002")
    expect(page.get_by_role("button", name="Resend")).to_have_count(0)
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    token = page.locator("header form.who input[name=csrf_token]").get_attribute("value")
    assert token
    mid = stack.message_ids["A-1002"]
    forged = page.request.post(f"{stack.url}/ui/messages/{mid}/resend",
                               form={"csrf_token": token, "destination": "audit_sheet"},
                               max_redirects=0)
    assert forged.status == 403
    page.reload()
    expect(page.locator("section.delivery")).to_have_count(1)


def test_a_post_without_the_csrf_token_is_refused(stack: Site,
                                                  context: BrowserContext) -> None:
    page = log_in(context, stack, "otto")
    mid = stack.message_ids["A-1003"]
    for form in ({"destination": "audit_sheet"},
                 {"destination": "audit_sheet", "csrf_token": "forged"}):
        r = page.request.post(f"{stack.url}/ui/messages/{mid}/resend", form=form,
                              max_redirects=0)
        assert r.status == 403, form
        assert "CSRF" in r.text()
    page.goto(f"{stack.url}/ui/messages/{mid}")
    expect(page.locator("section.delivery")).to_have_count(3)


def test_admin_sees_who_viewed_and_resent(stack: Site, browser: Browser) -> None:
    with_operator = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    with_admin = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        page = log_in(with_operator, stack, "otto")
        expect(page.get_by_role("link", name="Audit log")).to_have_count(0)
        find_order(page, "A-1003")
        page.get_by_label("Resend to").select_option("audit_sheet")
        page.get_by_role("button", name="Resend").click()
        expect(page.get_by_role("status")).to_contain_text("Resent")
        assert page.request.get(f"{stack.url}/ui/audit").status == 403

        admin = log_in(with_admin, stack, "ada")
        admin.get_by_role("link", name="Audit log").click()
        mid = stack.message_ids["A-1003"]
        rows = admin.locator("tr.audit-entry").filter(has_text="otto").filter(has_text=mid)
        expect(rows.filter(has_text="resend")).to_have_count(1)
        expect(rows.filter(has_text="view").first).to_be_visible()
        expect(admin.locator("tr.audit-entry").filter(has_text="login").first).to_be_visible()
    finally:
        with_operator.close()
        with_admin.close()


def test_demo_mode_shows_the_sms_inbox_and_the_sheet(stack: Site,
                                                     context: BrowserContext) -> None:
    page = log_in(context, stack, "vera")
    page.get_by_role("link", name="Demo: SMS").click()
    expect(page.locator(".sms .bubble").filter(
        has_text="High-value order A-1001: $349.99 USD from Ada L.").first).to_be_visible()
    page.get_by_role("link", name="Demo: Sheet").click()
    grid = page.locator("table.grid")
    expect(grid.locator("tbody tr").filter(has_text="A-1002")).to_have_count(1)
    expect(grid.locator("thead")).to_contain_text("order_id")
    assert stack.token not in page.content()


def test_wrong_password_is_refused(stack: Site, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(f"{stack.url}/ui/login")
    page.get_by_label("User name").fill("ada")
    page.get_by_label("Password").fill("not-her-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    assert not any(c["name"] == "alertpipe_session" for c in context.cookies())


def test_no_secret_reaches_the_logs_the_store_or_the_pages(stack: Site,
                                                            context: BrowserContext) -> None:
    page = log_in(context, stack, "ada")
    find_order(page, "A-1001")
    html = page.content()
    page.goto(f"{stack.url}/ui/audit")
    html += page.content()
    logins = [e for e in stack.engine.events("logged in") if e.get("user") == "ada"]
    assert logins and logins[-1]["role"] == "admin"
    logs = "".join(stack.engine.lines)
    store = b"".join(p.read_bytes() for p in stack.workdir.glob("alertpipe.db*"))
    cookie = next(c["value"] for c in context.cookies() if c["name"] == "alertpipe_session")
    for secret in (stack.token, stack.session_secret, cookie,
                   *(pw for _, pw in USERS.values())):
        assert secret not in logs
        assert secret.encode() not in store
        assert secret not in html

