"""The `jwt` validation strategy: JWT access tokens verified locally with the provider's signing keys
(JWKS, joserfc), and the keys' cache. No web framework here; the HTTP client is injected
(gateway.validators.ProviderHTTP).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from gateway.errors import InvalidToken, ProviderUnavailable
from gateway.tokens import Principal, check_token_syntax, principal_from_claims
from gateway.validators import (
    Endpoint,
    ProviderHTTP,
    bot_principal,
    client_credentials_of,
    json_object,
    require_scopes,
    with_scopes,
)

log = logging.getLogger("gateway.validators")


def peek_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Header and claims of a JWS compact token, NOT verified (for routing and the alg check only)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header, claims = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2])
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return header, claims


class JwksCache:
    """The provider's signing keys: refreshed every `refresh` seconds, and at most once per `min_refetch`
    seconds when a token names a key id we do not know (key rotation)."""

    def __init__(self, http: ProviderHTTP, jwks_uri: Endpoint, refresh: float = 3600.0,
                 min_refetch: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.http = http
        self._uri = jwks_uri
        self.refresh = refresh
        self.min_refetch = min_refetch
        self._clock = clock
        self._keys: KeySet | None = None
        self._kids: set[str] = set()
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0
        self._failures = 0  # failed fetches while we had no keys

    async def keyset(self, kid: str | None) -> KeySet:
        known = self._keys is not None and (kid is None or kid in self._kids)
        fresh = self._clock() - self._fetched_at < self.refresh
        if not (known and fresh):
            failures = self._failures
            async with self._lock:
                if self._keys is None and self._failures != failures:
                    # A fetch failed while we waited: share its answer rather than queue another timeout.
                    raise ProviderUnavailable(f"provider {self.http.name!r}: cannot load its JWKS")
                known = self._keys is not None and (kid is None or kid in self._kids)
                since = self._clock() - self._fetched_at
                if self._keys is None or since >= self.refresh or (not known and since >= self.min_refetch):
                    await self._fetch()
        if self._keys is None:
            raise ProviderUnavailable(f"provider {self.http.name!r}: no signing keys")
        if kid is not None and kid not in self._kids:
            raise InvalidToken("the token is signed with a key the provider does not publish")
        return self._keys

    async def _fetch(self) -> None:
        try:
            response = await self.http.request("GET", await self._uri())
            if not response.is_success:
                raise self.http.trouble(response)
            keys = KeySet.import_key_set(json_object(self.http, response))  # type: ignore[arg-type]
        except (ProviderUnavailable, JoseError, ValueError, KeyError, TypeError) as exc:
            if self._keys is None:
                self._failures += 1
                raise ProviderUnavailable(f"provider {self.http.name!r}: cannot load its JWKS") from exc
            log.warning("JWKS refresh at %s failed; keeping the keys we have", self.http.name)
            self._fetched_at = self._clock() - self.refresh + self.min_refetch  # retry after min_refetch
            return
        self.fetches += 1
        self._keys = keys
        self._kids = {k.kid for k in keys.keys if k.kid}
        self._fetched_at = self._clock()


class JwtValidator:
    """Local verification of JWT access tokens with the provider's JWKS (joserfc)."""

    strategy = "jwt"

    def __init__(self, http: ProviderHTTP, issuer: Callable[[], Awaitable[str]], jwks: JwksCache,
                 algorithms: list[str], client_id: str, audience: str | None, required_scopes: list[str],
                 allow_bots: bool, leeway: int = 30, clock: Callable[[], float] = time.time) -> None:
        self.http = http
        self._issuer = issuer
        self.jwks = jwks
        self.algorithms = algorithms
        self.client_id = client_id
        self.audience = audience
        self.required_scopes = required_scopes
        self.allow_bots = allow_bots
        self.leeway = leeway
        self._clock = clock

    async def validate(self, token: str) -> Principal:
        check_token_syntax(token)
        peeked = peek_jwt(token)
        if peeked is None:
            raise InvalidToken("the token is not a JWT")
        header, _ = peeked
        alg = header.get("alg")
        if alg not in self.algorithms:  # "none" and HS* are never in the list
            raise InvalidToken(f"the token's algorithm is not one of {', '.join(self.algorithms)}")
        kid = header.get("kid")
        keys = await self.jwks.keyset(kid if isinstance(kid, str) else None)
        issuer = await self._issuer()
        try:
            decoded = jwt.decode(token, keys, algorithms=self.algorithms)
            JWTClaimsRegistry(
                now=lambda: int(self._clock()), leeway=self.leeway,
                iss={"essential": True, "value": issuer}, exp={"essential": True},
            ).validate(decoded.claims)
        except JoseError as exc:
            raise InvalidToken(f"the token failed verification ({exc.error})") from None
        claims = decoded.claims
        self._check_audience(claims)
        self._check_not_id_token(header, claims)
        # The socket may live until exp plus the clock-skew leeway the token was accepted with.
        expires_at = float(claims["exp"]) + self.leeway
        client = client_credentials_of(claims)
        if client is None and not isinstance(claims.get("sub"), str):
            raise InvalidToken("the token names no subject")
        if client is not None:
            principal = bot_principal(self.http.name, client, claims, expires_at, self.allow_bots)
        else:
            principal = with_scopes(principal_from_claims(self.http.name, claims, expires_at), claims)
        return require_scopes(principal, self.required_scopes)

    def _check_not_id_token(self, header: dict[str, Any], claims: dict[str, Any]) -> None:
        """An ID token is no access token, though it is signed by the same keys and its `aud` is our client
        id. Keycloak labels its tokens (claim typ "ID" / "Bearer"); RFC 9068 ones say typ at+jwt; else
        claims only ID tokens carry give it away."""
        kind = claims.get("typ")
        if isinstance(kind, str):
            if kind.lower() == "id":
                raise InvalidToken("an ID token is not an access token")
            return
        if str(header.get("typ", "")).lower() in ("at+jwt", "application/at+jwt"):
            return
        if any(name in claims for name in ("nonce", "at_hash", "c_hash")):
            raise InvalidToken("an ID token is not an access token")

    def _check_audience(self, claims: dict[str, Any]) -> None:
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.audience is not None:
            if self.audience not in audiences:
                raise InvalidToken("the token was issued for another audience")
            return
        # No AUDIENCE configured: the token must at least have been issued to our client.
        if self.client_id not in audiences and self.client_id not in (claims.get("azp"), claims.get("client_id")):
            raise InvalidToken("the token was issued to another client; set AUDIENCE if that is intended")
