"""Behind a reverse proxy: X-Forwarded-For/-Proto are believed only from GATEWAY_TRUSTED_PROXIES, and
GATEWAY_PUBLIC_URL (never X-Forwarded-Host) decides redirect URIs and cookie flags."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gateway.app import create_app
from tests.conftest import FakeIdP, SettingsFactory
from tests.live import free_port, live_server

PUBLIC_CLIENT = "203.0.113.7"
Serve = Callable[[list[str]], AbstractContextManager[str]]


@pytest.fixture
def serve(idp: FakeIdP, make_settings: SettingsFactory) -> Serve:
    """A live server trusting `trusted_proxies`; the tests' requests come from 127.0.0.1."""

    @contextmanager
    def run(trusted_proxies: list[str]) -> Iterator[str]:
        port = free_port()
        settings = make_settings(public_url=f"http://127.0.0.1:{port}", trusted_proxies=trusted_proxies)
        with live_server(create_app(settings), port, trusted_proxies=settings.trusted_proxies) as address:
            yield address

    return run


def access_clients(caplog: pytest.LogCaptureFixture, path: str) -> list[str]:
    """The client address of each of our access log lines for `path`."""
    return [str(record.args[0]) for record in caplog.records
            if record.name == "gateway.access" and isinstance(record.args, tuple) and record.args[2] == path]


def get(address: str, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"http://{address}{path}", headers=headers, follow_redirects=False)


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(serve: Serve,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    with serve(["127.0.0.1"]) as address:
        assert get(address, "/healthz", **{"X-Forwarded-For": PUBLIC_CLIENT}).status_code == 200
        # A chain: the proxy appended the peer it saw; the right-most untrusted entry is the client.
        assert get(address, "/healthz", **{"X-Forwarded-For": f"198.51.100.1, {PUBLIC_CLIENT}"}).status_code == 200
        # /metrics is for loopback peers: the forwarded client is not one, the proxy's own request is.
        assert get(address, "/metrics", **{"X-Forwarded-For": PUBLIC_CLIENT}).status_code == 404
        assert get(address, "/metrics").status_code == 200
    assert access_clients(caplog, "/healthz") == [PUBLIC_CLIENT, PUBLIC_CLIENT]
    assert access_clients(caplog, "/metrics") == [PUBLIC_CLIENT, "127.0.0.1"]


@pytest.mark.parametrize("trusted", [[], ["10.0.0.0/8"]], ids=["no-trusted-proxies", "another-proxy"])
def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(serve: Serve,
                                                           caplog: pytest.LogCaptureFixture,
                                                           trusted: list[str]) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    with serve(trusted) as address:
        assert get(address, "/healthz", **{"X-Forwarded-For": PUBLIC_CLIENT}).status_code == 200
        # Anyone on loopback could claim to be anyone; without trust, the peer address stands.
        assert get(address, "/metrics", **{"X-Forwarded-For": PUBLIC_CLIENT}).status_code == 200
    assert access_clients(caplog, "/healthz") == ["127.0.0.1"]
    assert access_clients(caplog, "/metrics") == ["127.0.0.1"]


def test_the_public_url_not_forwarded_host_or_proto_decides_redirects_and_cookies(
        serve: Serve) -> None:
    with serve(["127.0.0.1"]) as address:
        start = get(address, "/login/idp", **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.test",
                                              "X-Forwarded-For": PUBLIC_CLIENT})
    assert start.status_code == 302
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert query["redirect_uri"] == [f"http://{address}/auth/idp/callback"]
    login_state = start.headers["set-cookie"]
    assert login_state.startswith("gateway_login=")  # the http name: no __Host- prefix
    assert "secure" not in login_state.lower()
