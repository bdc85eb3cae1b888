"""Logout in a real browser against `gateway demo`: the page's script posts the end-session form to the
provider (our CSP must let it: only a browser enforces form-action), the ID token goes in the body and in
no URL, and the provider sends the browser back to /login, signed out, with no click on its pages."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Request, expect

from tests.e2e.test_browser import TIMEOUT, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT)
    yield context
    context.close()


def test_logout_posts_to_the_provider_and_comes_back_signed_out(demo_url: str, context: BrowserContext) -> None:
    page = sign_in(context, demo_url, "lou")
    urls: list[str] = []
    posted: list[str] = []
    blocked: list[str] = []

    def record(request: Request) -> None:
        urls.append(request.url)
        if request.method == "POST" and "/end_session" in request.url:
            posted.append(request.post_data or "")

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            blocked.append(message.text)

    page.on("request", record)
    page.on("console", console)
    page.get_by_role("button", name="Log out", exact=True).click()
    # No click on any button: logout.js submitted the form (our CSP let it leave for the provider), and on
    # the demo provider's own page it submitted its confirmation, which sends the browser back to us.
    expect(page).to_have_url(f"{demo_url}/login")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert any("/oauth2/end_session/confirm" in url for url in urls)
    assert len(posted) == 2 and "id_token_hint=ey" in posted[0] and "client_id=" in posted[0]
    assert not any("id_token_hint" in url for url in urls)
    page.goto(f"{demo_url}/chat")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    assert blocked == []


def test_the_pages_own_posts_carry_our_origin(demo_url: str, context: BrowserContext) -> None:
    """POST /auth/refresh and POST /logout check Origin: the page's own must pass them. Under
    `Referrer-Policy: no-referrer` Chromium sends `Origin: null` with every POST, and both were refused."""
    page = sign_in(context, demo_url, "rhea")
    origins: list[str | None] = []
    page.on("request", lambda request: origins.append(request.all_headers().get("origin"))
            if request.method == "POST" else None)
    status = page.evaluate("""async () => (await fetch("/auth/refresh", {method: "POST",
        credentials: "same-origin", headers: {"X-Gateway-Refresh": "1"}})).status""")
    assert status != 403  # the demo provider may give no refresh token (401): never "not our page"
    page.get_by_role("button", name="Log out of all my sessions").click()
    expect(page).not_to_have_url(f"{demo_url}/chat")
    expect(page.get_by_role("heading", name="Logout refused")).to_have_count(0)
    assert origins[:2] == [demo_url, demo_url]


def test_log_out_of_all_sessions_ends_another_browsers_sign_in(demo_url: str, browser: Browser) -> None:
    first, second = browser.new_context(), browser.new_context()
    try:
        for context in (first, second):
            context.set_default_timeout(TIMEOUT)
        page_one, page_two = sign_in(first, demo_url, "ines"), sign_in(second, demo_url, "ines")
        page_one.get_by_role("button", name="Log out of all my sessions").click()
        expect(page_one).not_to_have_url(f"{demo_url}/chat")
        expect(page_one.get_by_role("heading", name="Logout refused")).to_have_count(0)
        # The other browser's socket closes (4401) and its page finds its sign-in refused: to sign-in.
        page_two.wait_for_url(re.compile(r".*/login.*"), timeout=TIMEOUT)
    finally:
        first.close()
        second.close()
