"""examples/*.py as users run them: against the embedded demo provider (each example a child process, as
`python examples/x.py`) and against a respx-mocked provider (the example imported here, served by uvicorn in
a thread). Sign-in, 401 without credentials, and a socket closed with 4401 once its token is revoked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ISSUER, FakeIdP
from tests.examples_support import as_process, example_env, in_process
from tests.live import free_port

# oidc-provider-mock 0.3.4, run in a thread here, issues ID tokens through an authlib API authlib deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config.*:DeprecationWarning")


@dataclass
class Provider:
    """What a test does at the provider: sign a browser in, and revoke a user's tokens."""

    sign_in: Callable[[httpx.Client, str], httpx.Response]
    revoke: Callable[[str], None]
    set_groups: Callable[[str, list[str]], None]
    run: Callable[[str], Any]  # example file name -> context manager yielding the base URL


@pytest.fixture(params=["demo", "respx"])
def provider(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Provider]:
    port = free_port()
    if request.param == "demo":
        from gateway.demo import demo_provider

        with demo_provider() as issuer:
            def sign_in(browser: httpx.Client, user: str) -> httpx.Response:
                to_provider = browser.get("/login/demo")
                assert to_provider.status_code == 302, to_provider.text
                answer = httpx.post(to_provider.headers["location"], data={"sub": user}, timeout=10)
                assert answer.status_code == 302, answer.text
                return browser.get(httpx.URL(answer.headers["location"]).raw_path.decode())

            def revoke(user: str) -> None:
                assert httpx.post(f"{issuer}/users/{user}/revoke-tokens", timeout=10).status_code == 204

            def set_groups(user: str, groups: list[str]) -> None:
                assert httpx.put(f"{issuer}/users/{user}", json={"groups": groups}, timeout=10).status_code == 204

            env = example_env(port, issuer, "demo", tmp_path)
            yield Provider(sign_in, revoke, set_groups, lambda example: as_process(example, env, tmp_path))
        return
    import respx

    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        idp = FakeIdP(mock)
        groups: dict[str, list[str]] = {}

        def fake_sign_in(browser: httpx.Client, user: str) -> httpx.Response:
            to_provider = browser.get("/login/idp")
            assert to_provider.status_code == 302, to_provider.text
            return browser.get(idp.authorize(to_provider.headers["location"], user, groups=groups.get(user, [])))

        def fake_revoke(user: str) -> None:
            for token in [token for token, claims in idp.tokens.items() if claims["sub"] == user]:
                del idp.tokens[token]

        env = example_env(port, ISSUER, "idp", tmp_path)
        yield Provider(fake_sign_in, fake_revoke, groups.__setitem__,
                       lambda example: in_process(example, env, tmp_path, monkeypatch))


def cookie_header(browser: httpx.Client) -> str:
    return "; ".join(f"{name}={value}" for name, value in browser.cookies.items())


async def revoked_socket(url: str, browser: httpx.Client, origin: str, say: str | None, revoke: Callable[[], None],
                         subprotocols: list[str] | None = None) -> tuple[str, list[str], int]:
    """Open a cookie socket, read its first frame (after sending `say`), revoke, and read until it closes:
    (first frame, frames after the revocation, close code)."""
    async with connect(url, additional_headers={"Cookie": cookie_header(browser)}, origin=origin,  # type: ignore[arg-type]
                       subprotocols=subprotocols) as ws:  # type: ignore[arg-type]
        if say is not None:
            await ws.send(say)
        first = str(await asyncio.wait_for(ws.recv(), 5))
        revoke()
        frames = []
        with pytest.raises(ConnectionClosed):
            while True:
                frames.append(str(await asyncio.wait_for(ws.recv(), 5)))
        assert ws.close_code is not None
        return first, frames, ws.close_code


def test_secured_ws(provider: Provider) -> None:
    with provider.run("secured_ws.py") as base, httpx.Client(base_url=base, timeout=10) as browser:
        assert browser.get("/me").status_code == 401
        done = provider.sign_in(browser, "alice")
        assert done.status_code == 303 and done.headers["location"] == "/me"
        assert browser.get("/me").json()["name"].lower() == "alice"
        first, _, code = asyncio.run(revoked_socket(base.replace("http", "ws", 1) + "/secured-ws", browser, base,
                                                    "hello", lambda: provider.revoke("alice")))
        assert first.lower() == "alice: hello"
        assert code == 4401
        assert browser.get("/me").status_code == 401


def test_api_and_chat(provider: Provider) -> None:
    provider.set_groups("boss", ["staff"])
    with provider.run("api_and_chat.py") as base, httpx.Client(base_url=base, timeout=10) as browser:
        assert browser.get("/").json() == {"signed_in": False, "sign_in": "/login?next=/"}
        assert browser.get("/api/notes").status_code == 401
        done = provider.sign_in(browser, "bob")
        assert done.status_code == 303 and done.headers["location"] == "/"
        assert browser.get("/").json()["signed_in"] is True
        assert browser.post("/api/notes", json={"text": "hi"}).status_code == 403  # a cookie POST, no Origin
        added = browser.post("/api/notes", json={"text": "hi"}, headers={"Origin": base})
        assert added.status_code == 201 and added.json() == ["hi"]
        assert browser.get("/api/stats").status_code == 403  # bob is not staff
        assert browser.get("/chat").status_code == 200
        first, frames, code = asyncio.run(revoked_socket(base.replace("http", "ws", 1) + "/ws/lobby", browser, base,
                                                         None, lambda: provider.revoke("bob"), ["gateway.chat.v1"]))
        assert json.loads(first)["type"] == "welcome"
        assert code == 4401
        assert {"type": "error", "code": "token_expired"}.items() <= json.loads(frames[-1]).items()
    with provider.run("api_and_chat.py") as base, httpx.Client(base_url=base, timeout=10) as boss:
        provider.sign_in(boss, "boss")
        assert boss.get("/api/stats").status_code == 200
