"""Safe `next`: oauth2-proxy's open-redirect corpus, unit by unit and through the login flow."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_from_bytes, unquote_to_bytes

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.redirects import DEFAULT_NEXT, safe_next
from tests.conftest import PUBLIC_URL, FakeIdP, SettingsFactory, SignIn

TESTDATA = Path(__file__).parent / "fixtures" / "redirects"
# oauth2-proxy's validator_test.go BeforeEach, as quoted in both data files' headers.
ALLOWED = [
    "foo.bar", ".bar.foo", "port.bar:8080", ".sub.port.bar:8080", "anyport.bar:*", ".sub.anyport.bar:*",
    "www.whitelisteddomain.tld", "*.wildcard.sub.port.bar:8080", "*.wildcard.sub.anyport.bar:*",
    "*.wildcard.bar", "*.wildcard.proxy.foo.bar",
]


def _vector_lines(name: str) -> list[str]:
    # split("\n"), not splitlines(): a vector may hold \v or \x1c, which splitlines() would cut on.
    text = (TESTDATA / name).read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line and not line.startswith("#")]


def _hostile_bytes() -> list[bytes]:
    """Decoded as the Go test does (url.QueryUnescape), plus the empty string the file cannot hold."""
    return [unquote_to_bytes(line.replace("+", " ")) for line in _vector_lines("open-redirects.txt")] + [b""]


HOSTILE_BYTES = _hostile_bytes()
HOSTILE = [raw.decode("utf-8", errors="surrogateescape") for raw in HOSTILE_BYTES]
ALLOWED_VALUES = _vector_lines("redirects-allowed.txt")


def test_corpus_sizes_match_the_file_headers() -> None:
    assert len(HOSTILE) == 591
    assert len(set(HOSTILE)) > 500  # decoded, not collapsed into a handful of values
    assert "" in HOSTILE
    assert len(ALLOWED_VALUES) == 24


def test_every_hostile_value_falls_back_to_chat() -> None:
    leaked = [value for value in HOSTILE if safe_next(value, allowed_domains=ALLOWED) != DEFAULT_NEXT]
    assert leaked == []


def test_every_hostile_value_falls_back_to_chat_without_allow_list() -> None:
    leaked = [value for value in HOSTILE if safe_next(value) != DEFAULT_NEXT]
    assert leaked == []


def test_every_allowed_value_is_kept_unchanged() -> None:
    changed = {value: safe_next(value, allowed_domains=ALLOWED) for value in ALLOWED_VALUES}
    assert {value: kept for value, kept in changed.items() if kept != value} == {}


@pytest.mark.parametrize("path", ["/chat", "/chat/room-1", "/redirect", "/chat?x=1", "/chat/room-1?a=b&c=d"])
def test_local_paths_are_kept(path: str) -> None:
    assert safe_next(path) == path
    assert safe_next(path, allowed_domains=ALLOWED) == path


@pytest.mark.parametrize("value", [v for v in ALLOWED_VALUES if not v.startswith("/")])
def test_absolute_urls_need_an_allow_list(value: str) -> None:
    assert safe_next(value) == DEFAULT_NEXT
    assert safe_next(value, allowed_domains=["other.example"]) == DEFAULT_NEXT


@pytest.mark.parametrize("value", [None, "", "chat", "/" + "a" * 2048])
def test_missing_relative_or_oversized_next_is_chat(value: str | None) -> None:
    assert safe_next(value) == DEFAULT_NEXT


@pytest.fixture
def guarded_client(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[TestClient]:
    app = create_app(make_settings(allowed_redirect_domains=ALLOWED))
    with TestClient(app, base_url=PUBLIC_URL, follow_redirects=False) as test_client:
        yield test_client


def _login_url(path: str, raw_next: bytes) -> str:
    # Percent-encode the raw bytes ourselves: two vectors are not UTF-8 (0xA0), which httpx's params
    # could not encode, and a browser would send them exactly like this.
    return f"{path}?next={quote_from_bytes(raw_next, safe='')}"


def test_hostile_next_never_survives_the_login_flow(guarded_client: TestClient, idp: FakeIdP) -> None:
    escaped = {}
    for raw in HOSTILE_BYTES:
        start = guarded_client.get(_login_url("/login/idp", raw))
        assert start.status_code == 302, (raw, start.text)
        done = guarded_client.get(idp.authorize(start.headers["location"]))
        if done.status_code != 303 or done.headers["location"] != DEFAULT_NEXT:
            escaped[raw] = (done.status_code, done.headers.get("location"))
    assert escaped == {}
    assert idp.mock.routes["token"].call_count == len(HOSTILE_BYTES)


def test_hostile_next_never_reaches_the_login_page_links(guarded_client: TestClient) -> None:
    carried = {}
    for raw in HOSTILE_BYTES:
        page = guarded_client.get(_login_url("/login", raw))
        assert page.status_code == 200
        hrefs = re.findall(r'href="(/login/[^"]*)"', page.text)
        if hrefs != ["/login/idp?next=%2Fchat"]:
            carried[raw] = hrefs
    assert carried == {}


def test_allowed_next_survives_the_login_flow(guarded_client: TestClient, sign_in: SignIn) -> None:
    for value in ["/chat/room-1", "/chat?x=1", "http://foo.bar/redirect", "https://baz.bar.foo/redirect",
                  "http://anyport.bar:8081/redirect"]:
        done = sign_in(guarded_client, next=value)
        assert done.status_code == 303
        assert done.headers["location"] == value


def test_absolute_next_without_allow_list_is_chat(client: TestClient, sign_in: SignIn) -> None:
    done = sign_in(client, next="http://foo.bar/redirect")
    assert done.status_code == 303
    assert done.headers["location"] == DEFAULT_NEXT
