"""Logout in a real browser against `gateway demo`: the page's script posts the end-session form to the
provider (our CSP must let it: only a browser enforces form-action), the ID token goes in the body and in
no URL, and the provider sends the browser back to /login, signed out."""

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
    # No click on the fallback button: logout.js submitted the form, and our CSP let it leave for the provider.
    expect(page.get_by_role("heading", name="End Session")).to_be_visible()
    assert "/oauth2/end_session" in page.url
    assert len(posted) == 1 and "id_token_hint=ey" in posted[0] and "client_id=" in posted[0]
    assert not any("id_token_hint" in url for url in urls)
    page.get_by_role("button", name="End session").click()
    expect(page).to_have_url(f"{demo_url}/login")
    page.goto(f"{demo_url}/chat")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    assert blocked == []
