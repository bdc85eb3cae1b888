"""Old cookies after a restart: with the memory broker, a signed-out sign-in must stay signed out when the
gateway comes back with the same keys (the deny-list is kept in the SQLite file next to the history)."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_app
from tests.conftest import FakeIdP, SettingsFactory
from tests.live import free_port, live_server
from tests.security.conftest import Live, handshake
from tests.security.sessions import REFRESH_HEADER, issue_refresh_tokens
from tests.test_logout import csrf_of


@pytest.mark.anyio
async def test_a_signed_out_cookie_stays_refused_after_a_restart(idp: FakeIdP,
                                                                  make_settings: SettingsFactory) -> None:
    issue_refresh_tokens(idp)
    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}")
    assert settings.broker_url == "memory://"
    with live_server(create_app(settings), port) as address:
        live = Live(address, settings)
        async with httpx.AsyncClient(base_url=live.origin, follow_redirects=False) as browser:
            start = await browser.get("/login/idp")
            assert (await browser.get(idp.authorize(start.headers["location"], "vic"))).status_code == 303
            copy = dict(browser.cookies.items())  # every cookie, whatever its Path
            socket_cookies = "; ".join(f"{c.name}={c.value}" for c in browser.cookies.jar if c.path == "/")
            assert (await handshake(live.ws(), additional_headers={"Cookie": socket_cookies},
                                    origin=live.origin)).status_code == 101
            csrf = csrf_of((await browser.get("/chat")).text)
            assert (await browser.post("/logout", data={"csrf": csrf})).status_code == 200

    with live_server(create_app(settings), port) as address:  # the same keys, the same SQLite file
        live = Live(address, settings)
        refused = await handshake(live.ws(), additional_headers={"Cookie": socket_cookies}, origin=live.origin)
        assert refused.status_code == 401
        async with httpx.AsyncClient(base_url=live.origin, cookies=copy) as attacker:
            refresh = await attacker.post("/auth/refresh", headers={"Origin": live.origin, REFRESH_HEADER: "1"})
        assert refresh.status_code == 401
