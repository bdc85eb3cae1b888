"""The demo provider's pages (oidc-provider-mock with templates/demo-provider/): local files only, a
labelled user-name field, and an end-session page that sends the browser straight back."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from gateway.demo import demo_provider

REDIRECT = "http://127.0.0.1:9/auth/demo/callback"


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    with demo_provider() as url:
        yield url


def urls_in(html: str) -> list[str]:
    return re.findall(r'(?:href|src|action)="([^"]*)"', html)


def test_the_sign_in_page_loads_only_its_own_files_and_labels_the_field(issuer: str) -> None:
    page = httpx.get(f"{issuer}/oauth2/authorize", params={
        "client_id": "gateway-demo", "redirect_uri": REDIRECT, "response_type": "code", "scope": "openid"})
    assert page.status_code == 200
    assert '<label for="sub">User name</label>' in page.text and 'id="sub"' in page.text and 'name="sub"' in page.text
    assert all(url.startswith("/") for url in urls_in(page.text)), urls_in(page.text)
    for url in urls_in(page.text):
        assert httpx.get(f"{issuer}{url}").status_code == 200, url


def test_only_the_pages_files_are_served_from_the_gateways_static(issuer: str) -> None:
    assert httpx.get(f"{issuer}/gateway-static/chat.js").status_code == 404
    assert httpx.get(f"{issuer}/gateway-static/..%2Fdemo.py").status_code == 404


def test_end_session_submits_itself_back_to_the_gateway(issuer: str) -> None:
    page = httpx.post(f"{issuer}/oauth2/end_session", data={"post_logout_redirect_uri": "http://127.0.0.1:9/login"})
    assert page.status_code == 200
    assert '<form id="end-session"' in page.text and 'src="/gateway-static/logout.js"' in page.text
    assert all(url.startswith(("/", "http://127.0.0.1:9/")) for url in urls_in(page.text))
    back = httpx.post(f"{issuer}/oauth2/end_session/confirm", data={"redirect_uri": "http://127.0.0.1:9/login"})
    assert back.status_code == 302 and back.headers["location"] == "http://127.0.0.1:9/login"


def test_errors_are_our_pages_too(issuer: str) -> None:
    page = httpx.get(f"{issuer}/oauth2/authorize", params={"client_id": "x", "redirect_uri": REDIRECT,
                                                           "response_type": "token"})
    assert page.status_code == 400 and "cdn" not in page.text and 'href="/gateway-static/gateway.css"' in page.text
