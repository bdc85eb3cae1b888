"""Validation strategies (GATEWAY_PROVIDERS__<NAME>__VALIDATION): each turns a token into a Principal or
says why not. No web framework here; the HTTP client is injected.

Provider trouble (timeouts, connection errors, 429, 5xx) is ProviderUnavailable, never "invalid".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, ClassVar, Protocol
from urllib.parse import quote_plus

import httpx

from gateway.errors import Forbidden, InsufficientScope, InvalidToken, ProviderUnavailable
from gateway.tokens import (
    Principal,
    check_token_syntax,
    checked_subject,
    display_name,
    fingerprint,
    is_text,
    principal_from_claims,
    retry_after,
)

log = logging.getLogger("gateway.validators")

Endpoint = Callable[[], Awaitable[str]]


class TokenValidator(Protocol):
    strategy: str

    async def validate(self, token: str) -> Principal: ...


class ProviderHTTP:
    """One provider's use of the shared client: its timeout, the global cap on concurrent provider
    calls, and transport errors mapped to ProviderUnavailable."""

    def __init__(self, name: str, client: httpx.AsyncClient, timeout: float, limit: asyncio.Semaphore,
                 observe: Callable[[str, str, float], None] | None = None) -> None:
        self.name = name
        self.client = client
        self.timeout = timeout
        self.limit = limit
        self.calls = 0
        self.strategy = "discovery"  # set by the provider once its validator is chosen (a metrics label)
        self._observe = observe

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            async with asyncio.timeout(self.timeout):
                async with self.limit:
                    self.calls += 1
                    started = time.perf_counter()
                    try:
                        return await self.client.request(method, url, timeout=self.timeout, **kwargs)
                    finally:
                        if self._observe is not None:
                            self._observe(self.name, self.strategy, time.perf_counter() - started)
        except (httpx.TimeoutException, TimeoutError):
            raise ProviderUnavailable(f"provider {self.name!r} timed out") from None
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"provider {self.name!r} unreachable: {type(exc).__name__}") from None

    def trouble(self, response: httpx.Response) -> ProviderUnavailable:
        return ProviderUnavailable(f"provider {self.name!r} answered {response.status_code}",
                                   retry_after=retry_after(response))


def json_object(http: ProviderHTTP, response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ProviderUnavailable(f"provider {http.name!r} answered something that is not JSON") from None
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"provider {http.name!r} answered JSON that is not an object")
    return body


def _scopes(claims: dict[str, Any]) -> tuple[str, ...]:
    value = claims.get("scope", claims.get("scp"))
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list):
        return tuple(s for s in value if isinstance(s, str))
    return ()


def require_scopes(principal: Principal, required: list[str]) -> Principal:
    missing = [s for s in required if s not in principal.scopes]
    if missing:
        raise InsufficientScope(f"the token lacks scope {' '.join(missing)}")
    return principal


def bot_principal(provider: str, client_id: str, claims: dict[str, Any], expires_at: float | None,
         allow_bots: bool) -> Principal:
    if not allow_bots:
        raise Forbidden("tokens without a user (client credentials) are not allowed: set GATEWAY_ALLOW_BOTS=true")
    return Principal(subject=checked_subject(client_id), name=display_name({"name": client_id}),
                     provider=provider, scopes=_scopes(claims), expires_at=expires_at, is_bot=True, claims=claims)


def client_credentials_of(claims: dict[str, Any]) -> str | None:
    """The client id when the token was issued to a client on its own (no user), else None."""
    client = claims.get("client_id") or claims.get("azp") or claims.get("cid")
    sub = claims.get("sub")
    username = claims.get("username")
    if sub is None and isinstance(username, str) and not username.startswith("service-account-"):
        return None  # RFC 7662 makes `sub` optional: a username means a user (Keycloak names its bots so)
    if claims.get("gty") == "client-credentials" or (isinstance(sub, str) and sub.endswith("@clients")):
        return str(client or sub).removesuffix("@clients")
    if isinstance(client, str) and (sub is None or sub == client):
        return client
    return None


class UserinfoValidator:
    """GET the OIDC userinfo endpoint with the token: 2xx valid; 400/401/403 invalid (oidc-provider-mock
    answers 400); anything else is provider trouble."""

    strategy = "userinfo"

    def __init__(self, http: ProviderHTTP, endpoint: Endpoint) -> None:
        self.http = http
        self._endpoint = endpoint

    async def validate(self, token: str) -> Principal:
        check_token_syntax(token)
        response = await self.http.request("GET", await self._endpoint(),
                                           headers={"Authorization": f"Bearer {token}"})
        if response.status_code in (400, 401, 403):
            log.info("token %s refused by %s (%d)", fingerprint(token), self.http.name, response.status_code)
            raise InvalidToken("the provider does not accept this token")
        if not response.is_success:
            raise self.http.trouble(response)
        return principal_from_claims(self.http.name, json_object(self.http, response), None)


class IntrospectionValidator:
    """RFC 7662: POST the token with the gateway's client credentials."""

    strategy = "introspection"

    def __init__(self, http: ProviderHTTP, endpoint: Endpoint, client_id: str, client_secret: str,
                 audience: str | None, required_scopes: list[str], allow_bots: bool, variable: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.http = http
        self._endpoint = endpoint
        # RFC 6749 §2.3.1: form-urlencoded before the Basic encoding ('+', '%' in secrets).
        self._auth = (quote_plus(client_id, safe=""), quote_plus(client_secret, safe=""))
        self.audience = audience
        self.required_scopes = required_scopes
        self.allow_bots = allow_bots
        self.variable = variable
        self._clock = clock
        self.misconfigured = False

    async def validate(self, token: str) -> Principal:
        check_token_syntax(token)
        response = await self.http.request(
            "POST", await self._endpoint(), data={"token": token, "token_type_hint": "access_token"},
            auth=self._auth, headers={"Accept": "application/json"},
        )
        if response.status_code in (401, 403):
            # RFC 7662 §2.3: the endpoint refuses *our* credentials. Not the user's fault.
            self.misconfigured = True
            log.error("introspection at %s refused the gateway's client credentials (%d): check %s__CLIENT_ID "
                      "and %s__CLIENT_SECRET", self.http.name, response.status_code, self.variable, self.variable)
            raise ProviderUnavailable(f"provider {self.http.name!r} refuses the gateway's client credentials")
        if not response.is_success:
            raise self.http.trouble(response)
        self.misconfigured = False
        claims = json_object(self.http, response)
        if claims.get("active") is not True:
            raise InvalidToken("the provider says this token is not active")
        exp = claims.get("exp")
        expires_at = float(exp) if isinstance(exp, int | float) else None
        if expires_at is not None and expires_at <= self._clock():
            raise InvalidToken("the token has expired")
        if self.audience is not None:
            aud = claims.get("aud")
            audiences = aud if isinstance(aud, list) else [aud]
            if self.audience not in audiences and claims.get("client_id") != self.audience:
                raise InvalidToken("the token was issued for another audience")
        client = client_credentials_of(claims)
        if client is not None:
            principal = bot_principal(self.http.name, client, claims, expires_at, self.allow_bots)
        else:
            principal = principal_from_claims(self.http.name, claims, expires_at)
            if not claims.get("name") and isinstance(claims.get("username"), str):
                principal = _replace_name(principal, claims["username"])
            principal = with_scopes(principal, claims)
        return require_scopes(principal, self.required_scopes)


def _replace_name(principal: Principal, name: str) -> Principal:
    return replace(principal, name=name[:80])


def with_scopes(principal: Principal, claims: dict[str, Any]) -> Principal:
    return replace(principal, scopes=_scopes(claims))


class GithubValidator:
    """GitHub's API: GET /user (and /user/emails, /user/teams when the scopes allow)."""

    strategy = "github"
    HEADERS: ClassVar[dict[str, str]] = {"Accept": "application/vnd.github+json",
                                         "X-GitHub-Api-Version": "2022-11-28"}

    def __init__(self, http: ProviderHTTP, api_base: str, scopes: list[str]) -> None:
        self.http = http
        self.api = api_base.rstrip("/")
        self.want_email = "user:email" in scopes or "user" in scopes
        self.want_teams = "read:org" in scopes

    async def _get(self, path: str, token: str) -> httpx.Response:
        response = await self.http.request("GET", f"{self.api}{path}",
                                           headers={**self.HEADERS, "Authorization": f"Bearer {token}"})
        if response.status_code == 401:
            raise InvalidToken("GitHub does not accept this token")
        if response.status_code in (403, 429) or not response.is_success:
            # 403 with X-RateLimit-Remaining: 0, and 429, are GitHub throttling: provider trouble.
            # GitHub's order: Retry-After when present (secondary limits), else the reset time once the
            # quota is spent. X-RateLimit-Reset comes with every answer, so alone it says nothing.
            reset = response.headers.get("x-ratelimit-reset", "")
            spent = response.headers.get("x-ratelimit-remaining") == "0"
            if "retry-after" not in response.headers and spent and reset.isascii() and reset.isdigit():
                wait = max(1, min(300, int(reset) - int(time.time())))
                raise ProviderUnavailable(f"GitHub answered {response.status_code}", retry_after=wait)
            raise self.http.trouble(response)
        return response

    async def validate(self, token: str) -> Principal:
        check_token_syntax(token)
        response = await self._get("/user", token)
        user = json_object(self.http, response)
        login, user_id = user.get("login"), user.get("id")
        if not isinstance(login, str) or user_id is None:
            raise ProviderUnavailable("GitHub's /user answer has no login or id")
        email = user.get("email") if isinstance(user.get("email"), str) else None
        if email is None and self.want_email:
            email = await self._primary_email(token)
        groups: tuple[str, ...] = ()
        if self.want_teams:
            groups = await self._teams(token)
        scopes = tuple(s.strip() for s in response.headers.get("x-oauth-scopes", "").split(",") if s.strip())
        claims = {**user, "sub": str(user_id), "preferred_username": login}
        return Principal(subject=checked_subject(str(user_id)), name=display_name({"name": login}),
                         provider=self.http.name, email=email if is_text(email) else None,
                         groups=tuple(g for g in groups if is_text(g)), scopes=scopes, claims=claims)

    async def _primary_email(self, token: str) -> str | None:
        response = await self._get("/user/emails", token)
        try:
            emails = response.json()
        except ValueError:
            return None
        for entry in emails if isinstance(emails, list) else []:
            if isinstance(entry, dict) and entry.get("primary") and entry.get("verified"):
                email = entry.get("email")
                return email if isinstance(email, str) else None
        return None

    async def _teams(self, token: str) -> tuple[str, ...]:
        response = await self._get("/user/teams?per_page=100", token)
        try:
            teams = response.json()
        except ValueError:
            return ()
        groups = []
        for team in teams if isinstance(teams, list) else []:
            org = team.get("organization", {}).get("login") if isinstance(team, dict) else None
            if isinstance(org, str) and isinstance(team.get("slug"), str):
                groups.append(f"{org}/{team['slug']}")
        return tuple(groups)
