"""Provider presets: the env lines a user writes, what they expand to, and each preset's
validator against the provider's documented example answers, quirks included."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.errors import InvalidToken, ProviderUnavailable
from gateway.providers import Provider, Providers
from tests.conftest import PUBLIC_URL, SettingsFactory
from tests.fixtures import load, response

GITHUB_API = "https://api.github.com"
TOKEN = "gho_16C7e42F292c6912E7710c838347Ae178B4a"
KEYCLOAK = "https://sso.example.com/realms/main"
TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
AUTH0_DOMAIN = "dev-example.us.auth0.com"



@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def _provider(make_settings: SettingsFactory, http: httpx.AsyncClient, **conf: Any) -> Provider:
    """The one provider configured by `conf`, the way a user writes it."""
    settings = make_settings(providers={"p": {"client_id": "gateway", "client_secret": "s3cret", **conf}})
    provider = Providers(settings, http).get("p")
    assert provider is not None
    return provider


def _serve_discovery(mock: respx.MockRouter, document: dict[str, Any]) -> None:
    issuer = document["issuer"].rstrip("/")
    mock.get(f"{issuer}/.well-known/openid-configuration", name="discovery").respond(json=document)


def _signing_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


def _b64url(part: dict[str, Any] | str) -> str:
    raw = part.encode() if isinstance(part, str) else json.dumps(part).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _sign(key: RSAKey, claims: dict[str, Any], lifetime: int = 300) -> str:
    now = int(time.time())
    return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": key.kid}, {**claims, "iat": now, "exp": now + lifetime},
                      key)


# --- GitHub: OAuth without OpenID Connect; opaque tokens checked at its REST API -------------------------

@pytest.fixture
def github(mock: respx.MockRouter) -> respx.MockRouter:
    user = load("github_user")
    user["email"] = None  # a private email: /user says null, /user/emails knows
    mock.get(f"{GITHUB_API}/user", name="user").respond(json=user, headers={"x-oauth-scopes": "read:user, user:email"})
    emails = [{"email": "1+octocat@users.noreply.github.com", "primary": False, "verified": True,
               "visibility": None}, *load("github_user_emails")]
    mock.get(f"{GITHUB_API}/user/emails", name="emails").respond(json=emails)
    mock.get(f"{GITHUB_API}/user/teams", name="teams").respond(json=load("github_user_teams"))
    return mock


def test_github_preset_needs_only_the_client(make_settings: SettingsFactory) -> None:
    settings = make_settings(providers={"gh": {"preset": "github", "client_id": "x", "client_secret": "y"}})
    conf = settings.providers["gh"]
    assert (conf.issuer, conf.validation, conf.scopes) == (None, "github", ["read:user", "user:email"])
    provider = Providers(settings, httpx.AsyncClient()).by_name["gh"]
    assert provider.title == "GitHub"
    assert provider.issuer == "https://github.com"
    assert provider.oauth.server_metadata["authorization_endpoint"] == "https://github.com/login/oauth/authorize"
    assert provider.oauth.server_metadata["token_endpoint"] == "https://github.com/login/oauth/access_token"


@pytest.mark.anyio
async def test_github_user_with_private_email(github: respx.MockRouter, make_settings: SettingsFactory,
                                              http: httpx.AsyncClient) -> None:
    provider = _provider(make_settings, http, preset="github")
    principal = await provider.validator.validate(TOKEN)
    assert (principal.subject, principal.name, principal.provider) == ("1", "octocat", "p")
    assert principal.email == "octocat@github.com"  # the primary verified one, not the noreply address
    assert principal.groups == ()
    assert principal.scopes == ("read:user", "user:email")
    request = github.routes["user"].calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert github.routes["teams"].call_count == 0  # no read:org, no teams


@pytest.mark.anyio
async def test_github_public_email_needs_no_second_call(github: respx.MockRouter, make_settings: SettingsFactory,
                                                        http: httpx.AsyncClient) -> None:
    github.routes["user"].respond(json=load("github_user"))
    principal = await _provider(make_settings, http, preset="github").validator.validate(TOKEN)
    assert principal.email == "octocat@github.com"
    assert github.routes["emails"].call_count == 0


@pytest.mark.anyio
async def test_github_unverified_primary_email_is_not_used(github: respx.MockRouter,
                                                           make_settings: SettingsFactory,
                                                           http: httpx.AsyncClient) -> None:
    github.routes["emails"].respond(json=[{**load("github_user_emails")[0], "verified": False}])
    principal = await _provider(make_settings, http, preset="github").validator.validate(TOKEN)
    assert principal.email is None


@pytest.mark.anyio
async def test_github_teams_become_groups_with_read_org(github: respx.MockRouter, make_settings: SettingsFactory,
                                                        http: httpx.AsyncClient) -> None:
    provider = _provider(make_settings, http, preset="github", scopes="read:user,user:email,read:org")
    principal = await provider.validator.validate(TOKEN)
    assert principal.groups == ("github/justice-league",)
    assert github.routes["teams"].call_count == 1


@pytest.mark.anyio
async def test_github_bad_credentials_is_invalid_token(github: respx.MockRouter, make_settings: SettingsFactory,
                                                       http: httpx.AsyncClient) -> None:
    github.routes["user"].mock(return_value=response("github_bad_credentials"))
    with pytest.raises(InvalidToken):
        await _provider(make_settings, http, preset="github").validator.validate(TOKEN)


@pytest.mark.anyio
async def test_github_rate_limit_is_provider_trouble_until_the_reset(github: respx.MockRouter,
                                                                     make_settings: SettingsFactory,
                                                                     http: httpx.AsyncClient) -> None:
    reset = int(time.time()) + 120
    github.routes["user"].mock(return_value=response("github_rate_limited", {"x-ratelimit-reset": str(reset)}))
    with pytest.raises(ProviderUnavailable) as caught:
        await _provider(make_settings, http, preset="github").validator.validate(TOKEN)
    assert 115 <= caught.value.retry_after <= 120


@pytest.mark.anyio
async def test_github_secondary_rate_limit_honours_retry_after(github: respx.MockRouter,
                                                               make_settings: SettingsFactory,
                                                               http: httpx.AsyncClient) -> None:
    # GitHub sends x-ratelimit-reset on every answer; with quota left, Retry-After is the one to obey.
    reset = int(time.time()) + 3000
    github.routes["user"].mock(return_value=response("github_secondary_rate_limited",
                                                     {"x-ratelimit-reset": str(reset)}))
    with pytest.raises(ProviderUnavailable) as caught:
        await _provider(make_settings, http, preset="github").validator.validate(TOKEN)
    assert caught.value.retry_after == 60


@pytest.mark.anyio
async def test_github_throttling_on_the_emails_call_is_provider_trouble(github: respx.MockRouter,
                                                                        make_settings: SettingsFactory,
                                                                        http: httpx.AsyncClient) -> None:
    github.routes["emails"].mock(return_value=response("github_secondary_rate_limited"))
    with pytest.raises(ProviderUnavailable):
        await _provider(make_settings, http, preset="github").validator.validate(TOKEN)


@pytest.fixture
def github_app(github: respx.MockRouter, make_settings: SettingsFactory) -> Iterator[TestClient]:
    github.post("https://github.com/login/oauth/access_token", name="token").respond(json=load("github_token"))
    settings = make_settings(providers={"gh": {"preset": "github", "client_id": "x", "client_secret": "y"}})
    with TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as client:
        yield client


def _github_callback(client: TestClient) -> httpx.Response:
    start = client.get("/login/gh", params={"next": "/chat"})
    assert start.status_code == 302
    location = urlsplit(start.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://github.com/login/oauth/authorize"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["client_id"] == "x"
    assert query["scope"] == "read:user user:email"
    assert query["redirect_uri"] == f"{PUBLIC_URL}/auth/gh/callback"
    assert query["code_challenge_method"] == "S256"
    return client.get("/auth/gh/callback", params={"code": "a-code", "state": query["state"]})


def test_github_sign_in_flow(github_app: TestClient, github: respx.MockRouter) -> None:
    callback = _github_callback(github_app)
    assert callback.status_code == 303, callback.text
    assert callback.headers["location"] == "/chat"
    assert callback.headers["set-cookie"].startswith("gateway_token=")
    exchange = github.routes["token"].calls.last.request
    assert exchange.headers["accept"] == "application/json"  # else GitHub answers form-encoded
    form = parse_qs(exchange.content.decode())
    assert form["code"] == ["a-code"] and form["code_verifier"]
    page = github_app.get("/chat")
    assert page.status_code == 200
    assert "Signed in as <strong>octocat</strong>" in page.text
    assert github.routes["user"].calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    session = github_app.get("/auth/session").json()
    assert session["user"]["id"] == "gh:1"
    assert session["user"]["email"] == "octocat@github.com"


def test_github_token_error_answered_with_200_fails_the_sign_in(github_app: TestClient,
                                                                github: respx.MockRouter) -> None:
    github.routes["token"].respond(json=load("github_token_error"))  # GitHub's errors come with HTTP 200
    callback = _github_callback(github_app)
    assert callback.status_code == 400
    assert "gateway_token" not in callback.headers.get("set-cookie", "")


# --- Google ---------------------------------------------------------------------------------------------

def test_google_preset_fills_issuer_and_scopes(make_settings: SettingsFactory) -> None:
    settings = make_settings(providers={"google": {"preset": "google", "client_id": "x", "client_secret": "y"}})
    conf = settings.providers["google"]
    assert conf.issuer == "https://accounts.google.com"
    assert conf.scopes == ["openid", "profile", "email"]
    assert conf.validation == "userinfo"


@pytest.mark.anyio
async def test_google_userinfo(mock: respx.MockRouter, make_settings: SettingsFactory,
                               http: httpx.AsyncClient) -> None:
    discovery = load("google_discovery")
    _serve_discovery(mock, discovery)
    userinfo = mock.get(discovery["userinfo_endpoint"]).respond(json=load("google_userinfo"))
    principal = await _provider(make_settings, http, preset="google").validator.validate("ya29.a0AfH6SM-example")
    assert (principal.subject, principal.name, principal.email) == (
        "10769150350006150715113082367", "Jane Smith", "jsmith@example.com")
    assert userinfo.calls.last.request.headers["authorization"] == "Bearer ya29.a0AfH6SM-example"


@pytest.mark.anyio
async def test_google_refusal_is_invalid_token(mock: respx.MockRouter, make_settings: SettingsFactory,
                                               http: httpx.AsyncClient) -> None:
    discovery = load("google_discovery")
    _serve_discovery(mock, discovery)
    mock.get(discovery["userinfo_endpoint"]).respond(401, json={"error": "invalid_request",
                                                                "error_description": "Invalid Credentials"})
    with pytest.raises(InvalidToken):
        await _provider(make_settings, http, preset="google").validator.validate("ya29.expired")


# --- Keycloak: the realm URL is the issuer; access tokens are JWTs checked with the realm's JWKS -----------

@pytest.fixture
def keycloak_key(mock: respx.MockRouter) -> RSAKey:
    discovery = load("keycloak_discovery")
    _serve_discovery(mock, discovery)
    key = _signing_key("kc-rs256")
    # A realm publishes an encryption key next to the signing key.
    encryption = RSAKey.generate_key(2048, parameters={"kid": "kc-rsa-oaep", "use": "enc", "alg": "RSA-OAEP"})
    mock.get(discovery["jwks_uri"], name="certs").respond(
        json={"keys": [encryption.as_dict(private=False), key.as_dict(private=False)]})
    return key


def test_keycloak_preset_defaults_to_jwt(make_settings: SettingsFactory) -> None:
    settings = make_settings(providers={"kc": {"preset": "keycloak", "issuer": KEYCLOAK, "client_id": "gateway"}})
    conf = settings.providers["kc"]
    assert (conf.issuer, conf.validation, conf.scopes) == (KEYCLOAK, "jwt", ["openid", "profile", "email"])


@pytest.mark.anyio
async def test_keycloak_access_token_for_the_account_audience(keycloak_key: RSAKey, mock: respx.MockRouter,
                                                              make_settings: SettingsFactory,
                                                              http: httpx.AsyncClient) -> None:
    provider = _provider(make_settings, http, preset="keycloak", issuer=KEYCLOAK)
    claims = load("keycloak_access_token")
    assert (claims["aud"], claims["azp"]) == ("account", "gateway")  # no AUDIENCE: azp == CLIENT_ID suffices
    principal = await provider.validator.validate(_sign(keycloak_key, claims))
    assert (principal.subject, principal.name, principal.email) == (
        "36fa0f91-f94d-4a0c-afed-6b7d952e47da", "Ada Lovelace", "ada@example.com")
    assert principal.scopes == ("openid", "email", "profile")
    assert mock.routes["certs"].call_count == 1
    assert not [alg for alg in provider.algorithms() if alg.startswith("HS")]  # discovery lists HS*: never


@pytest.mark.anyio
async def test_keycloak_token_for_another_client_is_invalid(keycloak_key: RSAKey, make_settings: SettingsFactory,
                                                            http: httpx.AsyncClient) -> None:
    provider = _provider(make_settings, http, preset="keycloak", issuer=KEYCLOAK)
    claims = {**load("keycloak_access_token"), "azp": "another-app"}
    with pytest.raises(InvalidToken):
        await provider.validator.validate(_sign(keycloak_key, claims))


@pytest.mark.anyio
async def test_keycloak_token_signed_by_an_unpublished_key_is_invalid(keycloak_key: RSAKey,
                                                                      make_settings: SettingsFactory,
                                                                      http: httpx.AsyncClient) -> None:
    provider = _provider(make_settings, http, preset="keycloak", issuer=KEYCLOAK)
    forged = RSAKey.generate_key(2048, parameters={"kid": keycloak_key.kid})  # same kid, other key
    with pytest.raises(InvalidToken):
        await provider.validator.validate(_sign(forged, load("keycloak_access_token")))


# --- Microsoft Entra: Graph-audience tokens cannot be verified locally, so Graph's userinfo decides ---------

def test_entra_preset_builds_its_issuer_from_the_tenant(make_settings: SettingsFactory) -> None:
    settings = make_settings(providers={"ms": {"preset": "entra", "tenant": TENANT, "client_id": "x",
                                               "client_secret": "y"}})
    conf = settings.providers["ms"]
    assert conf.issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert conf.validation == "userinfo"


@pytest.mark.anyio
async def test_entra_token_is_checked_at_graph_userinfo(mock: respx.MockRouter, make_settings: SettingsFactory,
                                                        http: httpx.AsyncClient) -> None:
    discovery = load("entra_discovery")
    _serve_discovery(mock, discovery)
    keys = mock.get(discovery["jwks_uri"]).respond(json={"keys": []})
    userinfo = mock.get("https://graph.microsoft.com/oidc/userinfo").respond(json=load("entra_graph_userinfo"))
    # A Graph access token: a JWT whose header carries a nonce, so only Graph itself can check its signature.
    graph_token = ".".join(_b64url(part) for part in (
        {"typ": "JWT", "nonce": "hashed-by-graph", "alg": "RS256", "kid": "graph-key"},
        {"aud": "00000003-0000-0000-c000-000000000000", "iss": f"https://sts.windows.net/{TENANT}/", "tid": TENANT},
        "signature for Graph",
    ))
    provider = _provider(make_settings, http, preset="entra", tenant=TENANT)
    principal = await provider.validator.validate(graph_token)
    assert (principal.subject, principal.name, principal.email) == (
        "OLu859SGc2Sr9ZsqbkG-QbeLgJlb41KcdiPoLYNpSFA", "Mikah Ollenburg", "mikoll@contoso.com")
    assert userinfo.calls.last.request.headers["authorization"] == f"Bearer {graph_token}"
    assert keys.call_count == 0


# --- Auth0: the issuer ends with "/"; access tokens are JWTs when an AUDIENCE (API) is asked --------------

def test_auth0_preset_builds_its_issuer_from_the_domain(make_settings: SettingsFactory) -> None:
    settings = make_settings(providers={"a0": {"preset": "auth0", "domain": AUTH0_DOMAIN, "client_id": "x",
                                               "client_secret": "y"}})
    conf = settings.providers["a0"]
    assert conf.issuer == f"https://{AUTH0_DOMAIN}"
    assert conf.validation == "userinfo"


@pytest.mark.anyio
async def test_auth0_userinfo_by_default(mock: respx.MockRouter, make_settings: SettingsFactory,
                                         http: httpx.AsyncClient) -> None:
    discovery = load("auth0_discovery")
    _serve_discovery(mock, discovery)
    mock.get(discovery["userinfo_endpoint"]).respond(json=load("auth0_userinfo"))
    provider = _provider(make_settings, http, preset="auth0", domain=AUTH0_DOMAIN)
    principal = await provider.validator.validate("opaque-auth0-token")
    assert (principal.subject, principal.name, principal.email) == (
        "auth0|507f1f77bcf86cd799439011", "Jane Doe", "jane.doe@example.com")
    assert provider.issuer == f"https://{AUTH0_DOMAIN}/"  # as Auth0 writes it in tokens


@pytest.fixture
def auth0_key(mock: respx.MockRouter) -> RSAKey:
    discovery = load("auth0_discovery")
    _serve_discovery(mock, discovery)
    key = _signing_key("auth0-rs256")
    mock.get(discovery["jwks_uri"]).respond(json={"keys": [key.as_dict(private=False)]})
    return key


@pytest.mark.anyio
async def test_auth0_jwt_with_trailing_slash_issuer(auth0_key: RSAKey, make_settings: SettingsFactory,
                                                    http: httpx.AsyncClient) -> None:
    provider = _provider(make_settings, http, preset="auth0", domain=AUTH0_DOMAIN, validation="jwt",
                         audience="https://api.example.com")
    claims = load("auth0_access_token")
    assert claims["iss"] == f"https://{AUTH0_DOMAIN}/"
    principal = await provider.validator.validate(_sign(auth0_key, claims))
    assert principal.subject == "auth0|507f1f77bcf86cd799439011"
    assert "read:messages" in principal.scopes


@pytest.mark.anyio
async def test_auth0_jwt_for_another_api_is_invalid(auth0_key: RSAKey, make_settings: SettingsFactory,
                                                    http: httpx.AsyncClient) -> None:
    provider = _provider(make_settings, http, preset="auth0", domain=AUTH0_DOMAIN, validation="jwt",
                         audience="https://api.example.com")
    claims = {**load("auth0_access_token"), "aud": ["https://other-api.example.com"]}
    with pytest.raises(InvalidToken):
        await provider.validator.validate(_sign(auth0_key, claims))


# --- GitLab ---------------------------------------------------------------------------------------------

def test_gitlab_preset_fills_issuer(make_settings: SettingsFactory) -> None:
    settings = make_settings(providers={"gl": {"preset": "gitlab", "client_id": "x", "client_secret": "y"}})
    conf = settings.providers["gl"]
    assert (conf.issuer, conf.validation) == ("https://gitlab.com", "userinfo")


@pytest.mark.anyio
async def test_gitlab_userinfo_groups_claim(mock: respx.MockRouter, make_settings: SettingsFactory,
                                            http: httpx.AsyncClient) -> None:
    discovery = load("gitlab_discovery")
    _serve_discovery(mock, discovery)
    mock.get(discovery["userinfo_endpoint"]).respond(json=load("gitlab_userinfo"))
    principal = await _provider(make_settings, http, preset="gitlab").validator.validate("glpat-example")
    assert (principal.subject, principal.name, principal.email) == ("1234567", "Sidney Jones", "sjones@example.com")
    assert principal.groups == ("gitlab-org", "gitlab-org/security-products")
