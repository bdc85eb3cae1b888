"""Attacks on the chat socket's handshake (docs/sessions.md), against a real uvicorn: cross-site WebSocket
hijacking, Origin tricks, and handshake floods from one address or one user.

Each refusal is checked for its reason too: a 403 from the Origin policy comes before the token is even
looked at (no provider call), and the same credentials with a good Origin are accepted.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from tests.conftest import FakeIdP
from tests.security.conftest import ALLOWED_ORIGIN, Live, StartGateway, browser_sign_in, handshake, provider_calls

pytestmark = pytest.mark.anyio


def _refused_by_origin_policy(response_body: bytes) -> bool:
    return "Origin" in json.loads(response_body)["detail"]


async def test_cswsh_foreign_origin_with_cookie_is_403(live: Live, idp: FakeIdP) -> None:
    # A page on evil.test opens our socket; the browser attaches the victim's cookie (SameSite=Lax does not
    # stop a WebSocket) and sends the page's own Origin.
    cookie = await browser_sign_in(live, idp, "victim")
    calls = provider_calls(idp)
    hijack = await handshake(live.ws(), additional_headers={"Cookie": cookie},
                             origin="http://evil.test")  # type: ignore[arg-type]
    assert hijack.status_code == 403
    assert "sec-websocket-accept" not in hijack.headers
    assert _refused_by_origin_policy(hijack.content)
    assert provider_calls(idp) == calls  # refused before the token was looked at
    own_page = await handshake(live.ws(), additional_headers={"Cookie": cookie},
                               origin=live.origin)  # type: ignore[arg-type]
    assert own_page.status_code == 101  # the same cookie from our own page is fine


ORIGIN_TRICKS = [
    "null",  # sandboxed iframes, data: and file: pages
    "http://{address}.evil.test",  # our origin as a prefix
    "http://evil.test.{address}",
    "http://{address}@evil.test",  # userinfo
    "http://evil.test/http://{address}",  # our origin in the path
    "http://evil.test#{address}",
    "https://{address}",  # other scheme
    "ws://{address}",
    "http://127.0.0.1",  # other port
    "http://127.0.0.1:{port}0",
    "http://localhost:{port}",  # another name for the same host is another origin
    "http://[::1]:{port}",
    "http://{address}/",  # an origin has no path
    "http://{address}, http://evil.test",  # a list
    "http://evil.test, http://{address}",
    "*",
    "",
    "http://app.allowed.test.evil.net",  # the allowed extra origin as a prefix
    "http://evil.app.allowed.test",  # a subdomain of it
    "https://app.allowed.test",
    "http://app.allowed.test:80",
    "http://xn--pp-7ka.allowed.test",  # a look-alike (IDN) name
]


async def test_origin_tricks_with_cookie_are_403(live: Live, idp: FakeIdP) -> None:
    cookie = await browser_sign_in(live, idp, "victim")
    passed = {}
    for trick in ORIGIN_TRICKS:
        origin = trick.format(address=live.address, port=live.port)
        response = await handshake(live.ws(), additional_headers={"Cookie": cookie, "Origin": origin})
        if response.status_code != 403 or not _refused_by_origin_policy(response.content):
            passed[origin] = response.status_code
    assert passed == {}
    for good in (live.origin, live.origin.upper(), ALLOWED_ORIGIN):  # exact matches still work
        response = await handshake(live.ws(), additional_headers={"Cookie": cookie, "Origin": good})
        assert response.status_code == 101, good


async def test_missing_origin_with_cookie_is_403(live: Live, idp: FakeIdP) -> None:
    # Browsers always send Origin on a WebSocket; a cookie without one is a non-browser replaying it.
    cookie = await browser_sign_in(live, idp, "victim")
    calls = provider_calls(idp)
    response = await handshake(live.ws(), additional_headers={"Cookie": cookie})
    assert response.status_code == 403
    assert _refused_by_origin_policy(response.content)
    assert provider_calls(idp) == calls
    # Programs with a header token may omit Origin: they carry no ambient credential.
    bot = await handshake(live.ws(), additional_headers={"Authorization": f"Bearer {idp.issue_token('bot')}"})
    assert bot.status_code == 101


async def test_foreign_origin_with_bearer_token_is_403(live: Live, idp: FakeIdP) -> None:
    # A header token is no ambient credential, but a browser page that holds one is still someone else's.
    token = idp.issue_token("erin")
    response = await handshake(live.ws(), additional_headers={"Authorization": f"Bearer {token}"},
                               origin="http://evil.test")  # type: ignore[arg-type]
    assert response.status_code == 403
    assert _refused_by_origin_policy(response.content)


async def test_per_ip_handshake_flood_is_429_before_the_provider(start_gateway: StartGateway,
                                                                 idp: FakeIdP) -> None:
    # One address guessing tokens: after the burst of failures every further try is 429 + Retry-After,
    # answered without asking the provider, sequential or all at once.
    with start_gateway(failed_auth_burst=5, failed_auth_rate=0.1) as live:
        for attempt in range(5):
            response = await handshake(live.ws(), additional_headers={"Authorization": f"Bearer guess-{attempt}"})
            assert response.status_code == 401
        calls = provider_calls(idp)
        flood = await asyncio.gather(*(
            handshake(live.ws(), additional_headers={"Authorization": f"Bearer flood-{i}"}) for i in range(50)))
        assert {r.status_code for r in flood} == {429}
        assert all(int(r.headers["retry-after"]) >= 1 for r in flood)
        assert provider_calls(idp) == calls
        valid = await handshake(live.ws(), additional_headers={"Authorization": f"Bearer {idp.issue_token('amy')}"})
        assert valid.status_code == 429  # the address is cooling down, whatever it sends


async def test_concurrent_handshake_flood_is_capped_at_the_burst(start_gateway: StartGateway,
                                                                 idp: FakeIdP) -> None:
    # The same flood, all at once from the start: the failures have not been counted yet when the
    # handshakes arrive, so the limit must count the provider calls still running too.
    with start_gateway(failed_auth_burst=5, failed_auth_rate=0.1) as live:
        flood = await asyncio.gather(*(
            handshake(live.ws(), additional_headers={"Authorization": f"Bearer flood-{i}"}) for i in range(60)))
        statuses = [r.status_code for r in flood]
        assert set(statuses) <= {401, 429}
        assert provider_calls(idp) <= 5, statuses


async def test_one_user_opening_many_sockets_is_429(start_gateway: StartGateway, idp: FakeIdP) -> None:
    token = idp.issue_token("hog")
    headers = {"Authorization": f"Bearer {token}"}
    with start_gateway(max_sockets_per_user=3) as live:
        async with connect(live.ws(), additional_headers=headers), connect(live.ws(), additional_headers=headers), \
                connect(live.ws(), additional_headers=headers):
            fourth = await handshake(live.ws(), additional_headers=headers)
            assert fourth.status_code == 429
            assert int(fourth.headers["retry-after"]) >= 1
