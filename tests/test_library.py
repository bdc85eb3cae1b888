"""The public API (docs/library.md) in an app of one's own: statuses over HTTP, refusals before accept on a
real server, live_session's closes, rules, Origin on cookie POSTs, and what `install` leaves alone."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request, WebSocket
from starlette.testclient import TestClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import gateway
from gateway import CurrentUser, Gateway, OptionalUser, Principal, live_session, require
from tests.conftest import PUBLIC_URL, FakeIdP, SettingsFactory, SignIn
from tests.live import free_port, live_server
from tests.test_logout import issue_refresh_tokens

ended: list[int | None] = []  # close codes the /proto endpoint saw after its block


def make_app(gw: Gateway) -> FastAPI:
    app = gw.install(FastAPI())
    app.include_router(gw.auth_router)

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return user.public()

    @app.post("/me")
    async def change(user: CurrentUser) -> dict[str, str]:
        return user.public()

    @app.get("/maybe")
    async def maybe(user: OptionalUser) -> dict[str, Any]:
        return {"user": user.public() if user else None}

    @app.get("/staff")
    async def staff(user: Annotated[Principal, Depends(require(groups=["staff"]))]) -> dict[str, str]:
        return user.public()

    @app.get("/scoped", dependencies=[Depends(require(scopes=["notes:write"]))])
    async def scoped() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/csrf")
    async def csrf(request: Request) -> dict[str, str]:
        return {"csrf": gw.logout_token(request)}

    @app.websocket("/echo")
    async def echo(websocket: WebSocket, user: CurrentUser) -> None:
        async with live_session(websocket, user):
            while True:
                await websocket.send_text(f"{user.name}: {await websocket.receive_text()}")

    @app.websocket("/proto")
    async def proto(websocket: WebSocket, user: CurrentUser) -> None:
        async with live_session(websocket, user, subprotocol="echo.v1") as session:
            await websocket.send_text(str(websocket.scope.get("subprotocols")))
            await websocket.receive_text()
        ended.append(session.close_code)  # after the block: it ended without an exception

    @app.websocket("/staff-echo")
    async def staff_echo(websocket: WebSocket,
                         user: Annotated[Principal, Depends(require(groups=["staff"]))]) -> None:
        async with gw.live_session(websocket, user):
            while True:
                await websocket.send_text(await websocket.receive_text())

    return app


@pytest.fixture
def client(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[TestClient]:
    with TestClient(make_app(Gateway(make_settings(), home="/me")), base_url=PUBLIC_URL,
                    follow_redirects=False) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_instance_offers_the_same_dependencies() -> None:
    assert Gateway.CurrentUser is CurrentUser and Gateway.OptionalUser is OptionalUser
    assert Gateway.require is require and Gateway.live_session is live_session


def test_the_public_names_are_what_all_lists() -> None:
    assert sorted(gateway.__all__) == sorted(set(gateway.__all__))
    for name in gateway.__all__:
        assert getattr(gateway, name) is not None
    with pytest.raises(AttributeError):
        gateway.__getattr__("build_gateway")


def test_importing_the_public_api_pulls_no_flask_no_redis_and_the_cores_no_fastapi() -> None:
    script = (
        "import sys\n"
        "import gateway.tokens, gateway.validators, gateway.jwt_validator, gateway.rules, gateway.access, "
        "gateway.chat.hub, gateway.chat.watch\n"
        "assert 'fastapi' not in sys.modules and 'starlette' not in sys.modules, 'a core loaded a web framework'\n"
        "from gateway import Gateway, CurrentUser, OptionalUser, Principal, require, live_session\n"
        "assert 'fastapi' in sys.modules\n"
        "loaded = sorted(m for m in ('flask', 'werkzeug', 'oidc_provider_mock', 'redis') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", script],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # not even authlib's warning about httpx2


def test_no_credentials_is_401_with_a_challenge(client: TestClient) -> None:
    response = client.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="gateway"'


def test_a_bearer_token_is_checked_at_the_provider(client: TestClient, idp: FakeIdP) -> None:
    assert client.get("/me", headers=bearer(idp.issue_token("bob"))).json() == {"id": "idp:bob", "name": "Bob"}
    rejected = client.get("/me", headers=bearer("unknown-token"))
    assert rejected.status_code == 401 and 'error="invalid_token"' in rejected.headers["www-authenticate"]


def test_provider_trouble_is_503_with_retry_after(client: TestClient, idp: FakeIdP) -> None:
    idp.mock.routes["userinfo"].side_effect = httpx.ConnectTimeout
    response = client.get("/me", headers=bearer("some-token"))
    assert response.status_code == 503 and response.headers["retry-after"]


def test_sign_in_lands_on_home_and_the_cookie_works(client: TestClient, sign_in: SignIn) -> None:
    done = sign_in(client, "carol", next=None)
    assert done.status_code == 303 and done.headers["location"] == "/me"
    assert client.get("/me").json()["name"] == "Carol"


def test_optional_user_is_none_signed_out_and_for_a_dead_cookie_but_a_bad_header_is_refused(
        client: TestClient, idp: FakeIdP, sign_in: SignIn) -> None:
    assert client.get("/maybe").json() == {"user": None}
    assert client.get("/maybe", headers=bearer(idp.issue_token("dan"))).json()["user"]["name"] == "Dan"
    assert client.get("/maybe", headers=bearer("unknown-token")).status_code == 401
    assert client.get("/maybe", headers={"Authorization": "Basic eDp5"}).status_code == 400
    sign_in(client, "erin")
    idp.tokens.clear()  # the provider no longer knows the cookie's token
    client.app.state.gateway.authenticator.cache.clear()  # type: ignore[attr-defined]
    assert client.get("/maybe").json() == {"user": None}


def test_require_groups_scopes(client: TestClient, idp: FakeIdP) -> None:
    assert client.get("/staff", headers=bearer(idp.issue_token("a", groups=["staff"]))).status_code == 200
    refused = client.get("/staff", headers=bearer(idp.issue_token("b", groups=["sales"])))
    assert refused.status_code == 403 and "staff" in refused.json()["detail"]
    scoped = client.get("/scoped", headers=bearer(idp.issue_token("c")))
    assert scoped.status_code == 403 and 'error="insufficient_scope"' in scoped.headers["www-authenticate"]
    assert client.get("/staff").status_code == 401  # the rule comes after who you are


def test_a_rule_of_a_string_is_refused() -> None:
    with pytest.raises(TypeError, match="list of strings"):
        require(groups="staff")


def test_a_cookie_post_needs_our_origin_a_bearer_post_does_not(client: TestClient, idp: FakeIdP,
                                                               sign_in: SignIn) -> None:
    assert client.post("/me", headers=bearer(idp.issue_token("frank"))).status_code == 200
    sign_in(client, "gina")
    assert client.post("/me").status_code == 403
    assert client.post("/me", headers={"Origin": "http://evil.test"}).status_code == 403
    assert client.post("/me", headers={"Origin": PUBLIC_URL}).json()["name"] == "Gina"


def test_security_headers_go_on_the_gateways_paths_only(client: TestClient) -> None:
    assert "content-security-policy" in client.get("/login").headers
    assert "content-security-policy" not in client.get("/me").headers
    assert client.get("/static/gateway.css").status_code == 200


def test_install_keeps_the_apps_own_lifespan(idp: FakeIdP, make_settings: SettingsFactory) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        events.append("start")
        yield {"mine": "kept"}
        events.append("stop")

    gw = Gateway(make_settings())
    app = gw.install(FastAPI(lifespan=lifespan))

    @app.get("/state")
    async def state(request: Request) -> dict[str, str]:
        return {"mine": request.state.mine}

    with TestClient(app, base_url=PUBLIC_URL) as test_client:
        assert test_client.get("/state").json() == {"mine": "kept"}
        assert idp.mock.routes["discovery"].call_count == 1  # the gateway's start-up ran too
    assert events == ["start", "stop"]


def test_the_lifespan_given_to_fastapi_and_installed_runs_once(idp: FakeIdP, make_settings: SettingsFactory) -> None:
    gw = Gateway(make_settings())
    app = gw.install(FastAPI(lifespan=gw.lifespan))
    with TestClient(app, base_url=PUBLIC_URL):
        assert idp.mock.routes["discovery"].call_count == 1


def test_from_env_names_each_missing_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [name for name in os.environ if name.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(gateway.ConfigError) as caught:
        Gateway.from_env()
    assert any(line.startswith("GATEWAY_PUBLIC_URL: ") for line in caught.value.problems)
    assert any(line.startswith("GATEWAY_SECRET_KEYS: ") for line in caught.value.problems)


def test_installing_twice_is_refused(make_settings: SettingsFactory) -> None:
    gw = Gateway(make_settings())
    app = gw.install(FastAPI())
    with pytest.raises(RuntimeError, match="already"):
        Gateway(make_settings()).install(app)


def test_home_must_be_a_path_of_ours(make_settings: SettingsFactory) -> None:
    for home in ("//evil.test", "https://evil.test/", "me", "/a/../b"):
        with pytest.raises(ValueError, match="home"):
            Gateway(make_settings(), home=home)


# On a real server: refusals are HTTP answers before accept, and live_session ends sockets.

@pytest.fixture
def served(idp: FakeIdP, make_settings: SettingsFactory, request: pytest.FixtureRequest) -> Iterator[str]:
    """A live server; validation answers cached for 0.5 s, or as marked with `ttl(seconds)`."""
    port = free_port()
    ttl = request.node.get_closest_marker("ttl")
    settings = make_settings(public_url=f"http://127.0.0.1:{port}", validation_cache_ttl=ttl.args[0] if ttl else 0.5)
    with live_server(make_app(Gateway(settings, home="/me")), port) as address:
        yield address


async def refused_status(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, open_timeout=5, **kwargs):
            pass
    status: int = info.value.response.status_code
    return status


async def closed_with(ws: ClientConnection, within: float = 5) -> int | None:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), within)
    return ws.close_code


@asynccontextmanager
async def browser_sign_in(address: str, idp: FakeIdP, user: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://{address}", follow_redirects=False) as browser:
        start = await browser.get("/login/idp")
        await browser.get(idp.authorize(start.headers["location"], user))
        yield browser


def cookie_header(browser: httpx.AsyncClient) -> str:
    return "; ".join(f"{name}={value}" for name, value in browser.cookies.items())


@pytest.mark.anyio
async def test_socket_refusals_are_statuses_before_accept(served: str, idp: FakeIdP) -> None:
    assert await refused_status(f"ws://{served}/echo") == 401
    assert await refused_status(f"ws://{served}/echo", additional_headers=bearer("unknown-token")) == 401
    outsider = idp.issue_token("hal", groups=["sales"])
    assert await refused_status(f"ws://{served}/staff-echo", additional_headers=bearer(outsider)) == 403
    async with browser_sign_in(served, idp, "ivy") as browser:
        cookie = {"Cookie": cookie_header(browser)}
        assert await refused_status(f"ws://{served}/echo", additional_headers=cookie) == 403  # no Origin
        assert await refused_status(f"ws://{served}/echo", additional_headers=cookie,
                                    origin="http://evil.test") == 403  # type: ignore[arg-type]
        async with connect(f"ws://{served}/echo", additional_headers=cookie,
                           origin=f"http://{served}") as ws:  # type: ignore[arg-type]
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 5) == "Ivy: hi"


@pytest.mark.anyio
async def test_a_revoked_token_closes_the_socket_4401(served: str, idp: FakeIdP) -> None:
    token = idp.issue_token("jo")
    async with connect(f"ws://{served}/echo", additional_headers=bearer(token)) as ws:
        await ws.send("hi")
        assert await asyncio.wait_for(ws.recv(), 5) == "Jo: hi"
        del idp.tokens[token]  # revoked at the provider: the next check (cache TTL 0.5 s) says so
        assert await closed_with(ws) == 4401


@pytest.mark.anyio
async def test_losing_the_group_closes_the_socket_4403(served: str, idp: FakeIdP) -> None:
    token = idp.issue_token("kim", groups=["staff"])
    async with connect(f"ws://{served}/staff-echo", additional_headers=bearer(token)) as ws:
        await ws.send("hi")
        assert await asyncio.wait_for(ws.recv(), 5) == "hi"
        idp.tokens[token]["groups"] = []
        assert await closed_with(ws) == 4403


@pytest.mark.anyio
@pytest.mark.ttl(60)  # no re-check comes before the logout's own signal
async def test_logout_closes_the_users_sockets_4401_at_once(served: str, idp: FakeIdP) -> None:
    async with browser_sign_in(served, idp, "lee") as browser:
        origin = f"http://{served}"
        async with connect(f"ws://{served}/echo", additional_headers={"Cookie": cookie_header(browser)},
                           origin=origin) as ws:  # type: ignore[arg-type]
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 5) == "Lee: hi"
            csrf = (await browser.get("/csrf")).json()["csrf"]
            out = await browser.post("/logout", data={"csrf": csrf}, headers={"Origin": origin})
            assert out.status_code in (200, 303)
            assert await closed_with(ws, within=2) == 4401
        assert (await browser.get("/me")).status_code == 401


@pytest.mark.anyio
async def test_the_block_selects_our_protocol_never_the_token_and_ends_cleanly(
        served: str, idp: FakeIdP, caplog: pytest.LogCaptureFixture) -> None:
    token = idp.issue_token("max")
    entry = "base64url.bearer.authorization.k8s.io." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    ended.clear()
    async with connect(f"ws://{served}/proto", subprotocols=[entry, "echo.v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "echo.v1"
        await asyncio.wait_for(ws.recv(), 5)
    for _ in range(50):  # the client left: the block ends, and the code after it runs
        if ended:
            break
        await asyncio.sleep(0.05)
    assert ended == [None]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.anyio
@pytest.mark.ttl(60)  # the only checks are at the token's expiry
async def test_a_refresh_hands_the_socket_its_new_token(served: str, idp: FakeIdP) -> None:
    issue_refresh_tokens(idp)
    idp.expires_in = 3
    async with browser_sign_in(served, idp, "alice") as browser:
        origin = f"http://{served}"
        async with connect(f"ws://{served}/echo", additional_headers={"Cookie": cookie_header(browser)},
                           origin=origin) as ws:  # type: ignore[arg-type]
            await asyncio.sleep(1.5)
            refreshed = await browser.post("/auth/refresh", headers={"Origin": origin, "X-Gateway-Refresh": "1"})
            assert refreshed.status_code == 204
            await asyncio.sleep(2)  # past the first token's expiry (a socket not refreshed closes), not the new one
            await ws.send("still")
            assert await asyncio.wait_for(ws.recv(), 5) == "Alice: still"
