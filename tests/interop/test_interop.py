"""The gateway against a certified OpenID provider (panva's oidc-provider on Node.js): the browser sign-in,
the chat socket with the cookie and with a bearer token, and revocation taking effect."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.interop.conftest import (
    CLIENT_ID,
    OPAQUE_RESOURCE,
    PROVIDER_NAME,
    RESOURCE,
    RESOURCE_SCOPE,
    USER_SCOPE,
    GatewayFactory,
    ProviderClient,
    bearer_refused,
    bearer_welcome,
    sign_in_through_gateway,
    welcome,
    ws_url,
)

CACHE_TTL = 0.5



@pytest.mark.anyio
async def test_browser_signs_in_and_chats(gateway: str) -> None:
    cookie = sign_in_through_gateway(gateway, "alice")
    async with httpx.AsyncClient(base_url=gateway, cookies={"gateway_token": cookie}) as browser:
        page = await browser.get("/chat")
        assert page.status_code == 200
        assert "Signed in as <strong>Alice</strong>" in page.text
        session = (await browser.get("/auth/session")).json()
        assert session["user"]["email"] == "alice@example.com" and session["user"]["provider"] == PROVIDER_NAME
    async with connect(ws_url(gateway), additional_headers={"Cookie": f"gateway_token={cookie}"},
                       origin=gateway) as ws:  # type: ignore[arg-type]
        assert (await welcome(ws))["user"] == {"id": f"{PROVIDER_NAME}:alice", "name": "Alice"}


@pytest.mark.anyio
async def test_user_access_token_works_as_bearer(gateway: str, provider: ProviderClient) -> None:
    tokens = provider.user_tokens("bob")
    assert (await bearer_welcome(gateway, tokens["access_token"]))["user"]["name"] == "Bob"


@pytest.mark.anyio
async def test_revoked_token_is_refused(start_gateway: GatewayFactory, provider: ProviderClient) -> None:
    # The gateway keeps a provider's "valid" for GATEWAY_VALIDATION_CACHE_TTL: a revocation at the provider
    # shows once that lapses. A short TTL here, and a real wait (the live server's clock is its own).
    with start_gateway(validation_cache_ttl=CACHE_TTL) as gateway:
        access = provider.user_tokens("carol")["access_token"]
        assert (await bearer_welcome(gateway, access))["user"]["name"] == "Carol"
        provider.revoke(access)
        await asyncio.sleep(CACHE_TTL)
        response = await bearer_refused(gateway, access)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.anyio
async def test_token_for_a_resource_is_refused_by_userinfo_validation(gateway: str,
                                                                      provider: ProviderClient) -> None:
    # oidc-provider's userinfo endpoint refuses tokens with an audience ("token audience prevents accessing
    # the userinfo endpoint"): resource-bound tokens need jwt or introspection validation.
    for resource in (RESOURCE, OPAQUE_RESOURCE):
        access = provider.user_tokens("dave", resource=resource)["access_token"]
        assert (await bearer_refused(gateway, access)).status_code == 401


# The test bed itself: the tokens the introspection and jwt validators are to be tested with.

def test_resource_tokens_are_signed_jwts_for_the_gateway(provider: ProviderClient) -> None:
    tokens = provider.user_tokens("erin", resource=RESOURCE, scope=f"{USER_SCOPE} {RESOURCE_SCOPE}")
    token = provider.decode_jwt(tokens["access_token"])
    assert token.header["typ"] == "at+jwt"  # RFC 9068
    claims = token.claims
    assert claims["iss"] == provider.issuer and claims["aud"] == RESOURCE and claims["sub"] == "erin"
    assert claims["client_id"] == CLIENT_ID and claims["scope"] == RESOURCE_SCOPE
    assert claims["name"] == "Erin" and claims["email"] == "erin@example.com"
    bot = provider.decode_jwt(provider.client_credentials(resource=RESOURCE, scope=RESOURCE_SCOPE)["access_token"])
    assert bot.claims["aud"] == RESOURCE and bot.claims["sub"] == CLIENT_ID  # RFC 9068 §2.2: sub is the client


def test_opaque_tokens_introspect(provider: ProviderClient) -> None:
    user = provider.introspect(provider.user_tokens("frank", auth="client_secret_post")["access_token"])
    assert user["active"] is True and user["sub"] == "frank" and user["name"] == "Frank" and "aud" not in user
    scoped = provider.user_tokens("frank", resource=OPAQUE_RESOURCE, scope=f"{USER_SCOPE} {RESOURCE_SCOPE}")
    answer = provider.introspect(scoped["access_token"])
    assert answer["active"] is True and answer["aud"] == RESOURCE and answer["scope"] == RESOURCE_SCOPE
    bot = provider.introspect(provider.client_credentials()["access_token"])
    assert bot["active"] is True and bot["client_id"] == CLIENT_ID and "sub" not in bot


def test_refresh_token_is_issued_and_works(provider: ProviderClient) -> None:
    tokens = provider.user_tokens("gina")
    refreshed = provider.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["access_token"] != tokens["access_token"]
