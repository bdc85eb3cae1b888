"""GATEWAY_COOKIE_DOMAIN: the token cookie (every chunk) shared with sibling hosts, `__Secure-` instead of
`__Host-` on https, cleared on the same domain; and the setting's checks."""

from __future__ import annotations

import secrets
import time

import pytest
from starlette.requests import Request
from starlette.responses import Response

from gateway.config import load_settings
from gateway.cookies import TokenCookie, TokenSession
from gateway.errors import ConfigError
from gateway.sealing import Sealer
from tests.conftest import CLIENT_ID, ISSUER, SECRET

PURPOSE = "token cookie"


def cookie(https: bool, domain: str | None = "example.com") -> TokenCookie:
    return TokenCookie(Sealer([SECRET], PURPOSE), https=https, max_age=3600, domain=domain)


def attributes(header: str) -> tuple[str, dict[str, str]]:
    pair, *rest = (part.strip() for part in header.split(";"))
    return pair.partition("=")[0], {k.lower(): v for k, _, v in (part.partition("=") for part in rest)}


def set_cookie_headers(response: Response) -> list[str]:
    return [value.decode("latin-1") for key, value in response.raw_headers if key == b"set-cookie"]


def big_session() -> TokenSession:
    return TokenSession("idp", secrets.token_urlsafe(4608), time.time() + 600, time.time())  # two chunks


@pytest.mark.parametrize(("https", "domain", "name"), [
    (True, None, "__Host-gateway_token"),
    (True, "example.com", "__Secure-gateway_token"),
    (False, None, "gateway_token"),
    (False, "example.com", "gateway_token"),
])
def test_cookie_name(https: bool, domain: str | None, name: str) -> None:
    assert cookie(https, domain).name == name


@pytest.mark.parametrize("https", [True, False])
def test_every_chunk_carries_the_domain(https: bool) -> None:
    token_cookie = cookie(https)
    response = Response()
    token_cookie.set(response, big_session())
    headers = [attributes(h) for h in set_cookie_headers(response)]
    assert [name for name, _ in headers] == [token_cookie.name, f"{token_cookie.name}.1"]
    for _, attrs in headers:
        assert attrs["domain"] == "example.com"
        assert ("secure" in attrs) == https


def test_clearing_uses_the_same_domain() -> None:
    response = Response()
    cookie(True).clear(response)
    headers = [attributes(h) for h in set_cookie_headers(response)]
    assert headers and all(a["domain"] == "example.com" and a["max-age"] == "0" for _, a in headers)
    assert headers[0][0] == "__Secure-gateway_token"


def test_a_leftover_chunk_is_expired_on_the_domain_too() -> None:
    token_cookie = cookie(True)
    request = Request({"type": "http", "headers": [(b"cookie", b"__Secure-gateway_token.1=old")]})
    response = Response()
    token_cookie.set(response, TokenSession("idp", "small-token", time.time() + 600, time.time()), request)
    (_, first), (stale, attrs) = (attributes(h) for h in set_cookie_headers(response))
    assert first["domain"] == "example.com"
    assert stale == "__Secure-gateway_token.1" and attrs["max-age"] == "0" and attrs["domain"] == "example.com"


# --- the setting ---------------------------------------------------------------------------------------

def settings_with(public_url: str, cookie_domain: str) -> str | None:
    try:
        settings = load_settings(env_file=None, public_url=public_url, secret_keys=[SECRET],
                                 cookie_domain=cookie_domain,
                                 providers={"idp": {"issuer": ISSUER, "client_id": CLIENT_ID}})
    except ConfigError as exc:
        assert len(exc.problems) == 1, exc.problems
        assert exc.problems[0].startswith("GATEWAY_COOKIE_DOMAIN: ")
        return None
    return settings.cookie_domain


@pytest.mark.parametrize(("public_url", "value", "kept"), [
    ("https://auth.example.com", "example.com", "example.com"),
    ("https://auth.example.com", ".Example.COM", "example.com"),  # browsers ignore the dot; names ignore case
    ("https://example.com", "example.com", "example.com"),
    ("https://a.b.example.co.uk:8443", "b.example.co.uk", "b.example.co.uk"),
    ("https://auth.example.com", "", None),
])
def test_good_cookie_domains(public_url: str, value: str, kept: str | None) -> None:
    assert settings_with(public_url, value) == kept


@pytest.mark.parametrize(("public_url", "value"), [
    ("https://auth.example.com", "https://example.com"),
    ("https://auth.example.com", "example.com:443"),
    ("https://auth.example.com", "example.com/"),
    ("https://auth.example.com", "exa mple.com"),
    ("https://auth.example.com", "*.example.com"),
    ("https://auth.example.com", "com"),  # a top-level domain: browsers refuse it
    ("https://auth.example.com", "other.com"),  # not a parent of the gateway's host
    ("https://auth.example.com", "ample.com"),  # a suffix, but not a parent domain
    ("https://auth.example.com", "app.example.com"),  # a sibling, not a parent
    ("https://10.0.0.5", "0.0.5"),
    ("https://10.0.0.5", "example.com"),  # the gateway on an IP address cannot share a domain cookie
    ("https://auth.example.com", "10.0.0.5"),
])
def test_bad_cookie_domains_are_refused_by_name(public_url: str, value: str) -> None:
    assert settings_with(public_url, value) is None
