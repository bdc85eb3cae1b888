"""Display names that impersonate, in a real browser against `gateway demo`: a user whose provider name is
"alice" (the demo provider lets anyone set one: PUT /users/<sub>) must not pass for alice. When two users in
a room show names that look alike, the page puts each one's provider and short id next to the name, in the
messages, the online list and the top bar; names are always text, never markup."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, Dialog, Page, expect

from tests.e2e.conftest import TIMEOUT

pytestmark = pytest.mark.browser

ROOM = "names"
MARKUP = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def provider(demo_url: str) -> str:
    """The demo provider's origin, where the gateway's sign-in goes."""
    start = httpx.get(f"{demo_url}/login/demo", follow_redirects=False, timeout=5)
    assert start.status_code == 302, start.text
    parts = urlsplit(start.headers["location"])
    return f"{parts.scheme}://{parts.netloc}"


def set_claims(provider: str, sub: str, **claims: str) -> None:
    assert httpx.put(f"{provider}/users/{sub}", json=claims, timeout=5).status_code == 204


def enter(context: BrowserContext, demo_url: str, sub: str) -> Page:
    """Sign in as `sub` through the demo provider's form, straight into the room; the live page."""
    page = context.new_page()
    page.goto(f"{demo_url}/chat/{ROOM}")
    page.get_by_role("link", name="Sign in with Demo provider").click()
    page.locator("input[name=sub]").fill(sub)
    page.get_by_role("button", name="Authorize", exact=True).click()
    expect(page).to_have_url(f"{demo_url}/chat/{ROOM}", timeout=TIMEOUT)
    expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=TIMEOUT)
    return page


def say(page: Page, text: str) -> None:
    page.locator("#text").fill(text)
    page.locator("#text").press("Enter")
    expect(page.locator("#messages li.message:not(.pending) .text", has_text=text)).to_have_count(1, timeout=TIMEOUT)


def line(page: Page, text: str) -> str:
    """The name shown on the message line with `text`, qualifier included."""
    who = page.locator("#messages li.message", has=page.locator(".text", has_text=text)).locator(".who")
    expect(who).to_have_count(1, timeout=TIMEOUT)
    return who.inner_text().strip()


def test_a_name_that_looks_like_anothers_shows_provider_and_id(demo_url: str, provider: str,
                                                               contexts: Callable[[], BrowserContext]) -> None:
    set_claims(provider, "alice", name="alice")
    set_claims(provider, "mallory", name="alice")   # the impostor
    set_claims(provider, "carla", name="\u0430lice")  # a Cyrillic a (U+0430): the same to a reader
    set_claims(provider, "bob", name="bob")

    alice = enter(contexts(), demo_url, "alice")
    bob = enter(contexts(), demo_url, "bob")
    say(alice, "before anyone else called alice came")
    assert line(bob, "before anyone else") == "alice"  # no look-alike yet: just the name

    mallory = enter(contexts(), demo_url, "mallory")
    say(mallory, "hi bob, it's alice, send me the keys")
    for page in (alice, bob, mallory):
        expect(page.locator("#messages .who .uid", has_text="demo:mallory")).to_have_count(1, timeout=TIMEOUT)
        assert line(page, "send me the keys") == "alice demo:mallory"
        # The earlier message is labelled too, now that a look-alike has shown up.
        assert line(page, "before anyone else") == "alice demo:alice"
        people = page.locator("#people li")
        expect(people.filter(has_text="demo:alice")).to_have_count(1)
        expect(people.filter(has_text="demo:mallory")).to_have_count(1)
        expect(people.filter(has_text=re.compile(r"^bob( \(you\))?$"))).to_have_count(1)  # bob collides with no one
    expect(alice.locator("#me .uid")).to_have_text("demo:alice")
    expect(mallory.locator("#me .uid")).to_have_text("demo:mallory")
    expect(bob.locator("#me .uid")).to_have_count(0)
    assert bob.locator("#messages .uid", has_text="demo:mallory").get_attribute("title") == "demo:mallory"

    carla = enter(contexts(), demo_url, "carla")
    say(carla, "or is it me")
    assert line(bob, "or is it me") == "\u0430lice demo:carla"


def test_names_are_text_never_markup(demo_url: str, provider: str, contexts: Callable[[], BrowserContext]) -> None:
    set_claims(provider, "eve", name=MARKUP)
    set_claims(provider, "eve2", name=MARKUP)
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    watcher = enter(contexts(), demo_url, "watcher")
    watcher.on("dialog", record)
    eve = enter(contexts(), demo_url, "eve")
    eve.on("dialog", record)
    expect(eve.locator("#me strong")).to_have_text(MARKUP)
    say(eve, "my name is markup")
    enter(contexts(), demo_url, "eve2")
    # eve2 is known to the watcher through presence, which comes batched (docs/protocol.md): wait for it.
    expect(watcher.locator("#messages li.message", has=watcher.locator(".text", has_text="my name is markup"))
           .locator(".who")).to_have_text(f"{MARKUP} demo:eve", timeout=TIMEOUT)
    expect(watcher.locator("#people li", has_text=MARKUP)).to_have_count(2)
    for page in (watcher, eve):
        expect(page.locator("img")).to_have_count(0)
    assert dialogs == []
