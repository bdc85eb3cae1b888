"""Security headers (issue: headers and logs) on pages, auth responses and error pages: a CSP that allows
scripts from our origin only and no framing, no Referer (the callback URL holds the code and state), no
caching of anything personal, HSTS on https. And no inline script in our pages, which that CSP would block.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from tests.conftest import PAGE_REFRESH, FakeIdP, SettingsFactory, SignIn

HTTPS_URL = "https://gateway.test"


def _csp(response: httpx.Response) -> dict[str, list[str]]:
    policy = response.headers["content-security-policy"]
    directives = {}
    for part in policy.split(";"):
        name, *values = part.split()
        directives[name.lower()] = values
    return directives


def _responses(test_client: TestClient, sign_in: SignIn) -> dict[str, httpx.Response]:
    """One of each kind: pages, the callback, the session probe, error pages, a redirect to sign in."""
    answers = {"login page": test_client.get("/login", params={"next": "/chat"}),
               "chat without cookie": test_client.get("/chat")}
    test_client.get("/login/idp")
    answers["callback without state"] = test_client.get("/auth/idp/callback", params={"code": "x"})
    answers["callback"] = sign_in(test_client)
    answers["chat page"] = test_client.get("/chat")
    answers["session probe"] = test_client.get("/auth/session")
    answers["unknown room"] = test_client.get("/chat/no.such.room")
    answers["refresh"] = test_client.post("/auth/refresh", headers=PAGE_REFRESH)
    assert answers["callback"].status_code == 303 and answers["chat page"].status_code == 200
    assert answers["callback without state"].status_code == answers["unknown room"].status_code == 400
    return answers


def _assert_hardened(name: str, response: httpx.Response) -> None:
    csp = _csp(response)
    assert csp["script-src"] == ["'self'"], name  # no 'unsafe-inline', 'unsafe-eval', hosts or data:
    assert csp["frame-ancestors"] == ["'none'"], name
    assert csp.get("object-src", csp["default-src"]) in (["'none'"], ["'self'"]), name
    assert csp["base-uri"] == ["'none'"], name
    # No Referer to other origins; the callback's URL (code, state) to none at all.
    expected = "no-referrer" if name.startswith("callback") else "same-origin"
    assert response.headers["referrer-policy"] == expected, name
    assert "no-store" in response.headers["cache-control"], name
    assert response.headers["x-content-type-options"] == "nosniff", name


@pytest.fixture
def https_client(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(public_url=HTTPS_URL)), base_url=HTTPS_URL,
                    follow_redirects=False) as test_client:
        yield test_client


def test_security_headers_on_pages_and_auth_responses(client: TestClient, sign_in: SignIn) -> None:
    for name, response in _responses(client, sign_in).items():
        _assert_hardened(name, response)
        assert "strict-transport-security" not in response.headers, name  # http: HSTS would be ignored


def test_hsts_and_security_headers_on_https(https_client: TestClient, sign_in: SignIn) -> None:
    for name, response in _responses(https_client, sign_in).items():
        _assert_hardened(name, response)
        hsts = response.headers["strict-transport-security"]
        max_age = re.search(r"max-age=(\d+)", hsts)
        assert max_age is not None and int(max_age.group(1)) >= 180 * 24 * 3600, (name, hsts)
    assert "__Host-gateway_token" in https_client.cookies  # and the cookie took its https name


@pytest.mark.parametrize("page", ["/login", "/chat", "/auth/idp/callback"])
def test_pages_hold_no_inline_script(client: TestClient, sign_in: SignIn, page: str) -> None:
    # The CSP would block an inline script: none is needed, and none is there to be blocked.
    sign_in(client)
    html = client.get(page).text
    assert "<html" in html
    scripts: Callable[[str], list[str]] = re.compile(r"<script\b[^>]*>", re.I).findall
    assert all(re.search(r'\bsrc="/static/', tag) for tag in scripts(html)), scripts(html)
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html, re.I)  # no inline body
    assert not re.search(r"\son[a-z]+\s*=", html, re.I)  # no inline event handlers
    assert "javascript:" not in html.lower()
