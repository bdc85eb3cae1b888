"""Identity providers: metadata (discovery, refreshed on a schedule; or a preset's fixed endpoints),
the authlib client for sign-in, and the validation strategy for tokens."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote_plus

import authlib.deprecate  # noqa: F401 - first: it puts an "always" filter for its own warnings in front
import httpx

with warnings.catch_warnings():
    # authlib warns on import that plain httpx is deprecated in favour of httpx2, which we keep out on
    # purpose (respx cannot intercept it): an app importing gateway should not print that (gateway.cli).
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App

from gateway.config import ASYMMETRIC_ALGORITHMS, ProviderSettings, Settings
from gateway.errors import ProviderUnavailable
from gateway.jwt_validator import JwksCache, JwtValidator
from gateway.presets import github_metadata
from gateway.validators import (
    GithubValidator,
    IntrospectionValidator,
    ProviderHTTP,
    TokenValidator,
    UserinfoValidator,
)

log = logging.getLogger("gateway.providers")

DISCOVERY_TTL = 3600.0
DISCOVERY_RETRY = 5.0


def client_secret_basic(client: Any, method: str, uri: str, headers: dict[str, str],
                        body: Any) -> tuple[str, dict[str, str], Any]:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded before the Basic encoding. authlib 1.9 skips
    that, so a secret holding '+' or '%' is refused by providers that follow the RFC."""
    credentials = f"{quote_plus(client.client_id, safe='')}:{quote_plus(client.client_secret or '', safe='')}"
    headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
    return uri, headers, body


def audience_params(settings: ProviderSettings) -> dict[str, str] | None:
    """Ask for access tokens meant for AUDIENCE (jwt and introspection check it): Auth0 names the API
    with `audience`, RFC 8707 providers with `resource` (an absolute URI)."""
    if settings.audience is None or settings.validation not in ("jwt", "introspection"):
        return None
    if settings.preset == "auth0":
        return {"audience": settings.audience}
    if ":" in settings.audience:
        return {"resource": settings.audience}
    return None


class IssuerMismatch(ValueError):
    """RFC 9207: an authorization response that does not name its provider as it must (a mix-up attempt,
    or a provider breaking its own promise). A ValueError, so the callback's 400 covers it; `error` is what
    its log line shows (never the value sent)."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


def variable_prefix(name: str) -> str:
    return f"GATEWAY_PROVIDERS__{name.upper().replace('-', '_')}"


class Provider:
    def __init__(self, name: str, settings: ProviderSettings, http: ProviderHTTP, oauth: OAuth,
                 gateway: Settings, ssl_context: ssl.SSLContext | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.settings = settings
        self.preset = settings.preset_info
        self.title = settings.title or (self.preset.title if settings.preset != "oidc" else name.title())
        self.http = http
        self._clock = clock
        self._metadata: dict[str, Any] | None = None
        self._fetched_at = 0.0
        self._failed_at: float | None = None
        self._lock = asyncio.Lock()
        if not self.preset.discovery:
            self._metadata = github_metadata(settings.issuer)
        secret = settings.client_secret.get_secret_value() if settings.client_secret else None
        client_kwargs: dict[str, Any] = {"scope": " ".join(settings.scopes or []), "code_challenge_method": "S256",
                                         "timeout": http.timeout}
        if ssl_context is not None:
            # authlib opens a new httpx client for every sign-in step; sharing one SSL context spares each
            # of them loading the CA bundle (about 20 ms, on the event loop).
            client_kwargs["verify"] = ssl_context
        if not self.preset.discovery:
            # GitHub answers the token request in form encoding unless asked for JSON.
            client_kwargs["headers"] = {"Accept": "application/json"}
        if secret is not None:
            # GitHub documents the secret as a form field; everyone else gets RFC-correct Basic.
            client_kwargs["token_endpoint_auth_method"] = (
                "client_secret_post" if not self.preset.discovery else client_secret_basic)
        self.oauth: StarletteOAuth2App = oauth.register(
            name, client_id=settings.client_id, client_secret=secret, client_kwargs=client_kwargs,
            authorize_params=audience_params(settings),
        )
        if self._metadata is not None:
            self.oauth.server_metadata.update(self._metadata, _loaded_at=time.time())
        self._jwks_refresh = (gateway.jwks_refresh, gateway.jwks_min_refetch)
        self._jwks: JwksCache | None = None
        self.validator = self._validator(gateway)
        http.strategy = self.validator.strategy

    # --- metadata -------------------------------------------------------------------------------------

    @property
    def discovery_url(self) -> str:
        return f"{self.settings.issuer}/.well-known/openid-configuration"

    @property
    def ready(self) -> bool:
        return self._metadata is not None and not getattr(self.validator, "misconfigured", False)

    @property
    def issuers(self) -> set[str]:
        """Every `iss` this provider's access tokens carry (no trailing '/'). Entra's Graph tokens use the
        v1 issuer https://sts.windows.net/<tenant>/."""
        found = {i.rstrip("/") for i in (self.issuer, self.settings.issuer) if i}
        if self.settings.preset == "entra":
            tenant = self.settings.tenant or (self.settings.issuer or "").rstrip("/").split("/")[-2]
            found.add(f"https://sts.windows.net/{tenant}")
        return found

    @property
    def issuer(self) -> str | None:
        """The issuer exactly as the provider writes it in tokens (Auth0's ends with '/')."""
        if self._metadata is not None:
            return str(self._metadata["issuer"])
        return self.settings.issuer

    async def metadata(self) -> dict[str, Any]:
        """The discovery document; refetched after DISCOVERY_TTL, kept (stale) while the provider is down."""
        if not self.preset.discovery:
            assert self._metadata is not None
            return self._metadata
        now = self._clock()
        if self._metadata is not None and now - self._fetched_at < DISCOVERY_TTL:
            return self._metadata
        async with self._lock:
            now = self._clock()
            if self._metadata is not None and now - self._fetched_at < DISCOVERY_TTL:
                return self._metadata
            if self._failed_at is not None and now - self._failed_at < DISCOVERY_RETRY:
                return self._stale_or_raise("discovery failed moments ago")
            try:
                document = await self._fetch_discovery()
            except ProviderUnavailable as exc:
                self._failed_at = now
                log.warning("discovery at %s failed: %s", self.name, exc.detail)
                return self._stale_or_raise(exc.detail)
            self._metadata, self._fetched_at, self._failed_at = document, now, None
            if isinstance(self.validator, JwtValidator) and not self.settings.algorithms:
                self.validator.algorithms = self.algorithms()
            # authlib reads endpoints from server_metadata; "_loaded_at" stops it fetching on its own.
            self.oauth.server_metadata.clear()
            self.oauth.server_metadata.update(document, _loaded_at=time.time())
            return document

    def _stale_or_raise(self, detail: str) -> dict[str, Any]:
        if self._metadata is not None:
            return self._metadata
        raise ProviderUnavailable(detail)

    async def _fetch_discovery(self) -> dict[str, Any]:
        try:
            response = await self.http.request("GET", self.discovery_url)
        except ProviderUnavailable as exc:
            raise ProviderUnavailable(f"cannot fetch {self.discovery_url} ({exc.detail}); check ISSUER and the "
                                      "network") from None
        if response.status_code != 200:
            raise ProviderUnavailable(f"{self.discovery_url} answered {response.status_code}; check ISSUER")
        try:
            document = response.json()
        except ValueError:
            raise ProviderUnavailable(f"{self.discovery_url} did not answer JSON; check ISSUER") from None
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"{self.discovery_url} did not answer a JSON object")
        for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(key), str):
                raise ProviderUnavailable(f"{self.discovery_url} has no {key!r}")
        if document["issuer"].rstrip("/") != self.settings.issuer:
            raise ProviderUnavailable(
                f"discovery names issuer {document['issuer']!r}, not {self.settings.issuer!r}: "
                "set ISSUER to exactly the provider's issuer"
            )
        return document

    def check_response_issuer(self, values: Sequence[str]) -> None:
        """RFC 9207 §2.4: the callback's `iss` must be exactly this provider's issuer. Required when discovery
        advertises authorization_response_iss_parameter_supported; without that, checked when present.
        Call after `metadata()`; the state is left unspent, so a forged answer cannot cancel a genuine one."""
        if len(values) > 1:
            raise IssuerMismatch("iss_repeated", "the sign-in answer carries more than one iss")
        if not values:
            if (self._metadata or {}).get("authorization_response_iss_parameter_supported") is True:
                raise IssuerMismatch("iss_missing", f"{self.name} promises an iss in every sign-in answer "
                                                    "(RFC 9207); this one has none")
            return
        if values[0] != self.issuer:
            raise IssuerMismatch("iss_mismatch", f"the sign-in answer's iss is not {self.name}'s issuer")

    async def endpoint(self, key: str) -> str:
        value = (await self.metadata()).get(key)
        if not isinstance(value, str):
            raise ProviderUnavailable(
                f"provider {self.name!r} publishes no {key}: choose another {variable_prefix(self.name)}__VALIDATION"
            )
        return value

    async def _issuer(self) -> str:
        return str((await self.metadata())["issuer"])

    @property
    def jwks(self) -> JwksCache:
        """The provider's signing keys (logout tokens), shared with the JWT validator when there is one."""
        if isinstance(self.validator, JwtValidator):
            return self.validator.jwks
        if self._jwks is None:
            self._jwks = JwksCache(self.http, lambda: self.endpoint("jwks_uri"), *self._jwks_refresh)
        return self._jwks

    # --- validation -----------------------------------------------------------------------------------

    def _validator(self, gateway: Settings) -> TokenValidator:
        conf = self.settings
        strategy = conf.validation
        if strategy == "github":
            api = str(self._metadata["api_base"]) if self._metadata else "https://api.github.com"
            return GithubValidator(self.http, api, conf.scopes or [])
        if strategy == "introspection":
            secret = conf.client_secret.get_secret_value() if conf.client_secret else ""
            return IntrospectionValidator(
                self.http, lambda: self.endpoint("introspection_endpoint"), conf.client_id, secret, conf.audience,
                conf.required_scopes, gateway.allow_bots, variable_prefix(self.name),
            )
        if strategy == "jwt":
            jwks = JwksCache(self.http, lambda: self.endpoint("jwks_uri"), gateway.jwks_refresh,
                             gateway.jwks_min_refetch)
            return JwtValidator(self.http, self._issuer, jwks, self.algorithms(), conf.client_id, conf.audience,
                                conf.required_scopes, gateway.allow_bots, gateway.jwt_leeway)
        return UserinfoValidator(self.http, lambda: self.endpoint("userinfo_endpoint"))

    def algorithms(self) -> list[str]:
        """The explicit allow-list: ALGORITHMS, else the asymmetric ones discovery lists, else RS256.
        "none" and HS* never: a public key must not double as an HMAC secret."""
        if self.settings.algorithms:
            return list(self.settings.algorithms)
        listed = (self._metadata or {}).get("id_token_signing_alg_values_supported") or []
        return [alg for alg in listed if alg in ASYMMETRIC_ALGORITHMS] or ["RS256"]


class Providers:
    """All configured providers, by name, sharing one HTTP client, one cap on concurrent provider calls
    and one authlib registry."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient,
                 observe: Callable[[str, str, float], None] | None = None) -> None:
        self._oauth = OAuth()
        self.default = settings.default_provider_name
        limit = asyncio.Semaphore(settings.provider_concurrency)
        ssl_context = httpx.create_ssl_context()
        self.by_name = {
            name: Provider(name, conf, ProviderHTTP(name, client, settings.provider_timeout, limit, observe),
                           self._oauth, settings, ssl_context)
            for name, conf in settings.providers.items()
        }

    def __iter__(self) -> Iterator[Provider]:
        return iter(self.by_name.values())

    def get(self, name: str) -> Provider | None:
        return self.by_name.get(name)

    def by_issuer(self, issuer: str) -> Provider | None:
        for provider in self:
            if issuer.rstrip("/") in provider.issuers:
                return provider
        return None

    async def warm_up(self) -> None:
        """Fetch every discovery document once at start; failures are logged and retried on first use."""
        await asyncio.gather(*(self._try(p) for p in self))

    @staticmethod
    async def _try(provider: Provider) -> None:
        try:
            await provider.metadata()
        except ProviderUnavailable:
            pass

