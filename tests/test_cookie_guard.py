"""The duplicate-cookie guard (gateway.cookie_guard): names counted as Starlette splits them, only the
gateway's own names, every copy expired where a sibling host could have put it. The attacks themselves
are in tests/security/test_cookie_tossing.py."""

from __future__ import annotations

import pytest
from starlette.responses import Response

from gateway.cookie_guard import DuplicateCookieGuard, duplicated
from gateway.cookies import SessionCookie
from gateway.sealing import Sealer
from tests.conftest import SECRET


def headers(*lines: str) -> list[tuple[bytes, bytes]]:
    return [(b"cookie", line.encode("latin-1")) for line in lines]


@pytest.mark.parametrize(("lines", "found"), [
    (["gateway_token=a; gateway_token=b"], ["gateway_token"]),
    (["gateway_token=a;gateway_token =b"], ["gateway_token"]),  # Starlette strips the name
    (["\xa0gateway_token=a; gateway_token=b"], ["gateway_token"]),  # str.strip(): a no-break space too
    (["gateway_token=a", "gateway_token=b"], ["gateway_token"]),  # two header lines count together
    (["__Secure-gateway_refresh=a; x=1; __Secure-gateway_refresh=b"], ["__Secure-gateway_refresh"]),
    (["__Host-gateway_token.1=a; __Host-gateway_token.1=b; gateway_session=c; gateway_session=d"],
     ["__Host-gateway_token.1", "gateway_session"]),
    (["gateway_token=a; __Host-gateway_token=b"], []),  # two names, not two copies of one
    (["_ga=1; _ga=2; session=a; session=b"], []),  # not ours
    (["gateway_token=a; gateway_token"], []),  # a chunk without '=' is a value without a name
    ([], []),
])
def test_duplicated_names(lines: list[str], found: list[str]) -> None:
    assert duplicated(headers(*lines)) == found


def test_the_refusal_expires_every_copy_where_a_sibling_could_have_set_it() -> None:
    guard = DuplicateCookieGuard(lambda s, r, w: None, templates=None,  # type: ignore[arg-type]
                                 public_url="https://chat.corp.example.com")
    response = Response()
    guard._expire(response, ["__Secure-gateway_refresh", "__Host-gateway_token"], "/auth/refresh")
    cleared = response.headers.getlist("set-cookie")
    refresh = [h for h in cleared if h.startswith("__Secure-gateway_refresh=")]
    for domain in ("chat.corp.example.com", "corp.example.com", "example.com"):
        assert any(f"Domain={domain}" in h and "Path=/auth/refresh" in h for h in refresh), domain
    assert any("Domain" not in h and "Path=/;" in h for h in refresh)  # the host-only one too
    assert not any("Domain=com" in h for h in cleared)
    host = [h for h in cleared if h.startswith("__Host-gateway_token=")]
    assert len(host) == 1 and "Domain" not in host[0] and "Path=/" in host[0]  # all a __Host- cookie may be
    assert all("Max-Age=0" in h and "Secure" in h for h in cleared)


@pytest.mark.parametrize("path", ["/ws/lobby%0A", "/auth/x;Domain=evil", "/" + "a/" * 50])
def test_odd_request_paths_never_reach_a_set_cookie_attribute(path: str) -> None:
    guard = DuplicateCookieGuard(lambda s, r, w: None, templates=None,  # type: ignore[arg-type]
                                 public_url="http://127.0.0.1:8000")
    response = Response()
    guard._expire(response, ["gateway_token"], path)
    cleared = response.headers.getlist("set-cookie")
    assert not any("evil" in h or "%0A" in h or "Domain" in h for h in cleared)  # an IP host: no parents
    assert len(cleared) <= 8


def test_the_session_cookie_is_host_prefixed_on_https() -> None:
    sealer = Sealer([SECRET], "session cookie")
    assert SessionCookie(sealer, https=True, max_age=60).name == "__Host-gateway_session"
    assert SessionCookie(sealer, https=False, max_age=60).name == "gateway_session"
