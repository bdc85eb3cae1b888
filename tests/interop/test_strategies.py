"""Each validation strategy against oidc-provider (PKCE required, introspection, revocation, JWT access
tokens): sign in through the gateway, then validate that session's token as the page and as a program
would; tokens straight from the provider; bots; and revocation ending an open socket.

Plus the interop side of three fixes: client secrets holding '+' and '%' (RFC 6749 §2.3.1), an ID token
presented as an access token under jwt validation, and jwt sign-in asking for the AUDIENCE's token.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.interop.conftest import (
    CLIENT_ID,
    PROVIDER_NAME,
    RESOURCE,
    RESOURCE_SCOPE,
    USER_SCOPE,
    GatewayFactory,
    ProviderClient,
    ProviderPool,
    bearer_refused,
    bearer_welcome,
    cookie_socket,
    frames_until_closed,
    pong,
    session_access_token,
    sign_in_through_gateway,
    welcome,
    ws_url,
)

CACHE_TTL = 0.5  # GATEWAY_VALIDATION_CACHE_TTL where an open socket must notice a revocation
CLOSE_WITHIN = 4.0  # seconds from revocation to close: the cache lapsing (0.5 s) and one provider call
SHORT_TTL = 5  # seconds: PROVIDER_ACCESS_TOKEN_TTL where a JWT must expire while its socket is open
# Every character RFC 6749 §2.3.1 form-encoding changes: '+' (a space once decoded), '%' (an escape, here a
# valid one, %2F, and a bare one), ':' (Basic's separator) and a space.
ODD_SECRET = "gate+way%2Fsecret%:x y"



@dataclass(frozen=True)
class Strategy:
    """A way the gateway checks tokens, and the tokens that go with it."""

    id: str
    settings: dict[str, str]  # the gateway's provider settings besides issuer and client
    env: dict[str, str] = field(default_factory=dict)  # provider.mjs variables (see its header)
    resource: str | None = None  # what a program asks the provider for, to get a token this gateway takes
    foreign: str | None = None  # ... and a token kind this gateway must refuse (proves the strategy is on)
    bots: bool = True  # can a client-credentials token pass at all?
    revocable: bool = True  # does a revocation at the provider show, once the gateway's cache lapses?

    def scope(self, resource: str | None) -> str:
        return f"{USER_SCOPE} {RESOURCE_SCOPE}" if resource else USER_SCOPE


STRATEGIES = [
    # Opaque tokens without an audience, the only kind oidc-provider's userinfo takes; a JWT for urn:gateway
    # (an audience) it refuses. Client-credentials tokens have no user: userinfo refuses them too (401).
    Strategy("userinfo", {}, foreign=RESOURCE, bots=False),
    # The same opaque tokens, introspected. A JWT access token oidc-provider calls inactive.
    Strategy("introspection", {"validation": "introspection"}, foreign=RESOURCE),
    # The gateway asks for resource=urn:gateway at sign-in; this provider issues opaque tokens for it (what
    # introspection needs). A token without an audience, though active, is not for the gateway.
    Strategy("introspection-audience", {"validation": "introspection", "audience": RESOURCE},
             env={"PROVIDER_ACCESS_TOKEN_FORMAT": "opaque"}, resource=RESOURCE, foreign=None),
    # RFC 9068 JWTs for urn:gateway, checked locally: an opaque token is no JWT. A revocation cannot be seen
    # locally (test_jwt_socket_outlives_revocation_and_closes_at_exp instead).
    Strategy("jwt", {"validation": "jwt", "audience": RESOURCE}, resource=RESOURCE, foreign=None, revocable=False),
]


@pytest.fixture(params=STRATEGIES, ids=[s.id for s in STRATEGIES])
def strategy(request: pytest.FixtureRequest) -> Strategy:
    chosen: Strategy = request.param
    return chosen


@pytest.fixture
def idp(provider_pool: ProviderPool, strategy: Strategy) -> ProviderClient:
    """The provider this strategy is tested against."""
    return ProviderClient(provider_pool.issuer(**strategy.env))


@pytest.fixture
def start(start_gateway: GatewayFactory, strategy: Strategy, idp: ProviderClient) -> GatewayFactory:
    """start_gateway for this strategy's provider and settings; keywords are further gateway settings."""

    def with_strategy(**settings: Any) -> Any:
        return start_gateway(provider={"issuer": idp.issuer, **strategy.settings}, **settings)

    return with_strategy


def is_jwt(token: str) -> bool:
    return token.count(".") == 2


def check_session_token(strategy: Strategy, idp: ProviderClient, token: str, user: str) -> None:
    """The token a sign-in left in the cookie is the kind this strategy expects."""
    if strategy.id == "jwt":
        claims = idp.decode_jwt(token).claims
        assert claims["aud"] == RESOURCE and claims["sub"] == user
        return
    assert not is_jwt(token), "expected an opaque access token"
    answer = idp.introspect(token)
    assert answer["active"] is True and answer["sub"] == user
    if strategy.resource:
        assert answer["aud"] == RESOURCE
    else:
        assert "aud" not in answer


@pytest.mark.anyio
async def test_browser_signs_in_and_chats(strategy: Strategy, idp: ProviderClient, start: GatewayFactory) -> None:
    with start() as gateway:
        cookie = sign_in_through_gateway(gateway, "alice")
        async with httpx.AsyncClient(base_url=gateway, cookies={"gateway_token": cookie}) as browser:
            page = await browser.get("/chat")
            assert page.status_code == 200, page.headers.get("location")
            assert "Signed in as <strong>Alice</strong>" in page.text
        async with cookie_socket(gateway, cookie) as ws:
            assert (await welcome(ws))["user"] == {"id": f"{PROVIDER_NAME}:alice", "name": "Alice"}
        # The same session's token, as a program presents it.
        token = session_access_token(cookie)
        check_session_token(strategy, idp, token, "alice")
        assert (await bearer_welcome(gateway, token))["user"]["name"] == "Alice"


@pytest.mark.anyio
async def test_provider_token_as_bearer(strategy: Strategy, idp: ProviderClient, start: GatewayFactory) -> None:
    good = idp.user_tokens("bob", resource=strategy.resource, scope=strategy.scope(strategy.resource))
    bad = idp.user_tokens("bob", resource=strategy.foreign, scope=strategy.scope(strategy.foreign))
    with start() as gateway:
        assert (await bearer_welcome(gateway, good["access_token"]))["user"] == {
            "id": f"{PROVIDER_NAME}:bob", "name": "Bob"}
        refused = await bearer_refused(gateway, bad["access_token"])
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


@pytest.mark.anyio
async def test_client_credentials_token(strategy: Strategy, idp: ProviderClient, start: GatewayFactory) -> None:
    scope = RESOURCE_SCOPE if strategy.resource else None
    bot = idp.client_credentials(resource=strategy.resource, scope=scope)["access_token"]
    with start() as gateway:
        without = await bearer_refused(gateway, bot)
    with start(allow_bots=True) as gateway:
        if strategy.bots:
            assert (await bearer_welcome(gateway, bot))["user"] == {"id": f"{PROVIDER_NAME}:{CLIENT_ID}",
                                                                    "name": CLIENT_ID}
        else:
            with_bots = await bearer_refused(gateway, bot)
            assert with_bots.status_code == 401  # the userinfo endpoint knows no such (user) token
    assert without.status_code == (403 if strategy.bots else 401)


@pytest.mark.anyio
@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s.revocable],
                         ids=[s.id for s in STRATEGIES if s.revocable], indirect=True)
async def test_revocation_closes_the_open_sockets(strategy: Strategy, idp: ProviderClient,
                                                  start: GatewayFactory) -> None:
    # jwt is not here: a revocation cannot be seen locally (test_jwt_socket_outlives_revocation_...).
    with start(validation_cache_ttl=CACHE_TTL) as gateway:
        cookie = sign_in_through_gateway(gateway, "carol")
        token = session_access_token(cookie)
        # The page's socket (cookie) and a program's (the same session's token as Bearer).
        async with cookie_socket(gateway, cookie) as page, connect(
                ws_url(gateway), additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5) as program:
            for ws in (page, program):
                assert (await welcome(ws))["user"]["name"] == "Carol"
            await asyncio.sleep(3 * CACHE_TTL)  # re-checked at the provider since, and still good
            for ws in (page, program):
                await pong(ws)
            idp.revoke(token)
            endings = await asyncio.gather(*(frames_until_closed(ws, CLOSE_WITHIN) for ws in (page, program)))
            for ws, frames in zip((page, program), endings, strict=True):
                assert ws.close_code == 4401, (ws.close_code, frames)
                assert [f["code"] for f in frames if f["type"] == "error"] == ["token_expired"], frames
                assert frames[-1]["type"] == "error", frames  # the error frame, then the close
        assert (await bearer_refused(gateway, token)).status_code == 401  # and refused at the door


@pytest.mark.anyio
async def test_jwt_socket_outlives_revocation_and_closes_at_exp(provider_pool: ProviderPool,
                                                                 start_gateway: GatewayFactory) -> None:
    # oidc-provider answers 200 to revoking a JWT access token, which stays good until it expires; the
    # gateway checks it locally and cannot know. What it must do is end the socket at the token's exp.
    idp = ProviderClient(provider_pool.issuer(PROVIDER_ACCESS_TOKEN_TTL=str(SHORT_TTL)))
    settings = {"issuer": idp.issuer, "validation": "jwt", "audience": RESOURCE}
    with start_gateway(provider=settings, validation_cache_ttl=CACHE_TTL) as gateway:
        cookie = sign_in_through_gateway(gateway, "dora")
        token = session_access_token(cookie)
        exp = idp.decode_jwt(token).claims["exp"]
        assert exp - time.time() <= SHORT_TTL
        async with cookie_socket(gateway, cookie) as ws:
            await welcome(ws)
            idp.revoke(token)
            await asyncio.sleep(3 * CACHE_TTL)  # re-checked since, and still good
            await pong(ws)
            assert time.time() < exp - 0.5, "the sign-in took too long for this test's short tokens"
            frames = await frames_until_closed(ws, SHORT_TTL + 2)
            closed_at = time.time()
            assert ws.close_code == 4401, (ws.close_code, frames)
        assert [f["code"] for f in frames if f["type"] == "error"] == ["token_expired"], frames
        assert frames[-1]["type"] == "error", frames
        # At exp: the cookie's own expiry (the token response's expires_in) may round a second earlier.
        assert exp - 1.5 <= closed_at <= exp + 1.5, (closed_at, exp)


# -- the three fixes, against a provider that follows the RFCs ------------------------------------------------

@pytest.mark.anyio
async def test_client_secret_with_plus_and_percent(provider_pool: ProviderPool,
                                                   start_gateway: GatewayFactory) -> None:
    # RFC 6749 §2.3.1: id and secret are form-urlencoded, then put in HTTP Basic. oidc-provider decodes
    # them, so a client that sends the secret raw is refused: check that first, or this test proves nothing.
    idp = ProviderClient(provider_pool.issuer(PROVIDER_CLIENT_SECRET=ODD_SECRET), client_secret=ODD_SECRET)
    async with httpx.AsyncClient(timeout=10) as client:
        raw = await client.post(idp.metadata["introspection_endpoint"], data={"token": "x"},
                                auth=(CLIENT_ID, ODD_SECRET))
    assert raw.status_code == 400, raw.text  # "not properly encoded": the bare '%' does not decode
    # Sign-in (the token request) and introspection both authenticate the gateway with that secret.
    settings = {"issuer": idp.issuer, "client_secret": ODD_SECRET, "validation": "introspection"}
    with start_gateway(provider=settings) as gateway:
        cookie = sign_in_through_gateway(gateway, "erin")
        async with httpx.AsyncClient(base_url=gateway, cookies={"gateway_token": cookie}) as browser:
            page = await browser.get("/chat")
            assert page.status_code == 200, page.headers.get("location")
            assert "Signed in as <strong>Erin</strong>" in page.text
        access = idp.user_tokens("frank")["access_token"]
        assert (await bearer_welcome(gateway, access))["user"]["name"] == "Frank"
        async with httpx.AsyncClient(base_url=gateway) as client:
            ready = await client.get("/readyz")  # no "refuses the gateway's client credentials"
        assert ready.status_code == 200, ready.text


@pytest.mark.anyio
async def test_id_token_is_no_access_token(provider: ProviderClient, start_gateway: GatewayFactory) -> None:
    # No AUDIENCE: a JWT must have been issued to the gateway's client, and an ID token is, with aud
    # "gateway" and the provider's signature. It must still be refused: it is not an access token.
    tokens = provider.user_tokens("gina", resource=RESOURCE, scope=f"{USER_SCOPE} {RESOURCE_SCOPE}")
    refreshed = provider.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    id_tokens = [tokens["id_token"], refreshed.json()["id_token"]]
    for id_token in id_tokens:
        claims = provider.decode_jwt(id_token).claims
        assert claims["aud"] == CLIENT_ID and claims["iss"] == provider.issuer and claims["sub"] == "gina"
    with start_gateway(provider={"validation": "jwt"}) as gateway:
        # The same sign-in's access token passes (issued to our client: client_id "gateway").
        assert (await bearer_welcome(gateway, tokens["access_token"]))["user"]["name"] == "Gina"
        for id_token in id_tokens:
            refused = await bearer_refused(gateway, id_token)
            assert refused.status_code == 401
            assert 'error="invalid_token"' in refused.headers["www-authenticate"]


@pytest.mark.anyio
async def test_jwt_sign_in_asks_for_the_audience(provider: ProviderClient, start_gateway: GatewayFactory) -> None:
    # AUDIENCE=urn:gateway under jwt validation: the sign-in must ask for that resource (RFC 8707), or the
    # provider issues an opaque token for userinfo and /chat sends the user back to /login forever.
    with start_gateway(provider={"validation": "jwt", "audience": RESOURCE}) as gateway:
        async with httpx.AsyncClient(base_url=gateway) as browser:
            start = await browser.get(f"/login/{PROVIDER_NAME}")
        assert httpx.URL(start.headers["location"]).params.get("resource") == RESOURCE
        cookie = sign_in_through_gateway(gateway, "hank")
        token = provider.decode_jwt(session_access_token(cookie))
        assert token.header["typ"] == "at+jwt" and token.claims["aud"] == RESOURCE
        async with httpx.AsyncClient(base_url=gateway, cookies={"gateway_token": cookie}) as browser:
            page = await browser.get("/chat")
        assert page.status_code == 200, page.headers.get("location")
        assert "Signed in as <strong>Hank</strong>" in page.text
        async with cookie_socket(gateway, cookie) as ws:
            assert (await welcome(ws))["user"]["name"] == "Hank"

