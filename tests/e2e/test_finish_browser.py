"""What makes the chat feel finished, in a real browser against `gateway demo`: a whole session that loads
nothing from outside 127.0.0.1, HTML error pages with a link that fits, the empty state and the composer's
focus, safe rich text under hostile input, the phone layout, and names for every control."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Response, expect

from tests.e2e.conftest import TIMEOUT, stay_on_loopback
from tests.e2e.test_browser import say, sign_in

pytestmark = pytest.mark.browser

expect.set_options(timeout=TIMEOUT)
# The screenshots of docs/ and the README are rewritten only when asked (GATEWAY_UPDATE_SCREENSHOTS=1): a
# test run leaves the checkout as it found it; otherwise they go to test-results/ (ignored by git).
ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / ("docs" if os.environ.get("GATEWAY_UPDATE_SCREENSHOTS") == "1" else "test-results")


def test_a_whole_demo_session_loads_nothing_from_outside_loopback(
        demo_url: str, contexts: Callable[[], BrowserContext]) -> None:
    context = contexts()
    hosts: set[str] = set()
    failed: list[str] = []
    context.on("request", lambda request: hosts.add(urlsplit(request.url).hostname or request.url))

    def answered(response: Response) -> None:
        if response.status >= 400:
            failed.append(f"{response.status} {response.url}")

    context.on("response", answered)
    page = sign_in(context, demo_url, "nadia")
    say(page, "see https://example.com/docs and `code`")
    expect(page.locator("#messages a[href='https://example.com/docs']")).to_have_count(1)
    page.goto(f"{demo_url}/chat/elsewhere")
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    page.get_by_role("button", name="Log out", exact=True).click()
    expect(page).to_have_url(f"{demo_url}/login")
    assert hosts == {"127.0.0.1"}, hosts
    assert failed == []  # no favicon 404, no missing stylesheet on any page, the provider's included


def test_the_demo_providers_page_is_local_and_labelled(demo_url: str, contexts: Callable[[], BrowserContext]) -> None:
    page = contexts().new_page()
    page.goto(f"{demo_url}/login")
    page.get_by_role("link", name="Sign in with Demo provider").click()
    expect(page.get_by_label("User name")).to_be_focused()
    assert page.evaluate("getComputedStyle(document.body).fontFamily").startswith("system-ui")  # our stylesheet


def test_error_pages_are_html_for_browsers_with_a_link_that_fits(
        demo_url: str, contexts: Callable[[], BrowserContext]) -> None:
    page = contexts().new_page()
    answer = page.goto(f"{demo_url}/no-such-page")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(page.get_by_role("link", name="Go to sign-in")).to_have_attribute("href", "/login")

    signed_in = sign_in(contexts(), demo_url, "omar")
    for path, status, heading in (("/no-such-page", 404, "Page not found"), ("/logout", 405, "Not a page"),
                                  ("/chat/no%20such%20room", 400, "No such room")):
        answer = signed_in.goto(f"{demo_url}{path}")
        assert answer is not None and answer.status == status
        expect(signed_in.get_by_role("heading", name=heading)).to_be_visible()
        signed_in.get_by_role("link", name="Back to the chat").click()
        expect(signed_in.locator("#status")).to_have_attribute("data-state", "live")
    # Programs keep JSON.
    json_answer = signed_in.request.get(f"{demo_url}/no-such-page")
    assert json_answer.status == 404 and json_answer.json() == {"detail": "Not Found"}


def test_a_new_room_shows_its_empty_state_and_the_composer_takes_the_keyboard(
        demo_url: str, contexts: Callable[[], BrowserContext]) -> None:
    page = sign_in(contexts(), demo_url, "pia")
    page.goto(f"{demo_url}/chat/brand-new-room")
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#empty")).to_contain_text("No messages in #brand-new-room yet")
    expect(page.locator("#text")).to_be_focused()
    page.keyboard.type("first words")
    page.keyboard.press("Enter")
    expect(page.locator("#empty")).to_be_hidden()
    # "(n) " first when other rooms hold unread messages (this module's other tests wrote in #lobby).
    expect(page).to_have_title(re.compile(r"^(\(\d+\) )?#brand-new-room — gateway$"))


def test_rich_text_renders_and_nothing_typed_becomes_markup(
        demo_url: str, contexts: Callable[[], BrowserContext]) -> None:
    hostile = '<img src=x onerror="alert(1)">'
    dialogs: list[str] = []
    mallory = sign_in(contexts(), demo_url, hostile)
    reader = sign_in(contexts(), demo_url, "rita")
    for page in (mallory, reader):
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    say(mallory, "*look* at `<script>alert(2)</script>` on https://example.com/a_(b). "
                 "javascript:alert(3) <a href=javascript:alert(4)>x</a> **")
    line = reader.locator("#messages li.message:not(.pending)").last
    expect(line.locator("em")).to_have_text("look")
    expect(line.locator("code")).to_have_text("<script>alert(2)</script>")
    link = line.locator("a")
    expect(link).to_have_count(1)
    expect(link).to_have_attribute("href", "https://example.com/a_(b)")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(line.locator(".who")).to_contain_text(hostile)  # the name is text
    for page in (mallory, reader):
        assert page.locator("#messages img, #messages script, #people img, #me img").count() == 0
        assert page.locator("a[href^='javascript']").count() == 0
    assert dialogs == []
    answer = reader.goto(f"{demo_url}/chat/%3Cscript%3Ealert(5)%3C%2Fscript%3E")
    assert answer is not None and answer.status in (400, 404)
    assert reader.locator("script:not([src])").count() == 0
    assert dialogs == []


def test_the_phone_layout_has_a_one_line_header_and_a_drawer(demo_url: str, browser: Browser,
                                                            contexts: Callable[[], BrowserContext]) -> None:
    # The screenshots in docs/ and the README: a short conversation in a room of its own.
    DOCS.mkdir(exist_ok=True)
    ann = sign_in(contexts(), demo_url, "ann")
    ann.goto(f"{demo_url}/chat/design")
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    context.set_default_timeout(TIMEOUT)
    stay_on_loopback(context)
    try:
        page = sign_in(context, demo_url, "phoebe")
        page.goto(f"{demo_url}/chat/design")
        expect(page.locator("#status")).to_have_attribute("data-state", "live")
        say(ann, "Morning! The *new* sign-in page is on https://example.com/preview")
        say(ann, "@phoebe can you try it on your phone? Start it with `./dev demo`")
        say(page, "On it: the header stays one line, rooms and people fold into the drawer.")
        expect(page.locator("#messages li.message:not(.pending)")).to_have_count(3)
        header = page.locator(".topbar").bounding_box()
        assert header is not None and header["height"] < 56
        expect(page.locator("#sidebar")).to_be_hidden()
        expect(page.get_by_role("button", name="Log out", exact=True)).to_be_hidden()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(DOCS / "chat-390.png"))
        toggle = page.get_by_role("button", name="Rooms and people")
        toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        expect(page.locator("#sidebar")).to_be_visible()
        expect(page.locator("#people li", has_text="phoebe")).to_be_visible()
        expect(page.get_by_role("button", name="Log out", exact=True)).to_be_visible()
        page.screenshot(path=str(DOCS / "chat-390-drawer.png"))
        page.keyboard.press("Escape")
        expect(page.locator("#sidebar")).to_be_hidden()
    finally:
        context.close()
    desktop = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
    desktop.set_default_timeout(TIMEOUT)
    stay_on_loopback(desktop)
    try:
        page = sign_in(desktop, demo_url, "phoebe")
        page.goto(f"{demo_url}/chat/design")
        expect(page.locator("#status")).to_have_attribute("data-state", "live")
        say(ann, "Looks good here too. Shipping it after lunch.")
        expect(page.locator("#messages li.message")).to_have_count(4)
        expect(page.get_by_role("button", name="Rooms and people")).to_be_hidden()
        expect(page.locator("#sidebar")).to_be_visible()
        header = page.locator(".topbar").bounding_box()
        assert header is not None and header["height"] < 56
        page.screenshot(path=str(DOCS / "chat-desktop.png"))
    finally:
        desktop.close()


def test_every_control_has_a_name_and_a_visible_focus(demo_url: str, contexts: Callable[[], BrowserContext]) -> None:
    page = sign_in(contexts(), demo_url, "quinn")
    tree = page.locator("body").aria_snapshot()
    unnamed = [line for line in tree.splitlines()
               if re.fullmatch(r"\s*- (button|textbox|link|combobox)(\s*\[[^\]]*\])?:?\s*", line)]
    assert unnamed == [], tree
    page.keyboard.press("Tab")
    focused = page.evaluate("""() => { const s = getComputedStyle(document.activeElement);
        return [document.activeElement.tagName, s.outlineStyle, s.outlineWidth]; }""")
    assert focused[1] != "none" and focused[2] != "0px", focused
