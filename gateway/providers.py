"""Identity providers: discovery (fetched with the shared client, refreshed on a schedule) and authlib clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App

from gateway.config import ProviderSettings, Settings
from gateway.errors import ProviderUnavailable
from gateway.tokens import UserinfoValidator

DISCOVERY_TTL = 3600.0
DISCOVERY_RETRY = 5.0


class Provider:
    def __init__(
        self,
        name: str,
        settings: ProviderSettings,
        client: httpx.AsyncClient,
        oauth: OAuth,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.settings = settings
        self.title = settings.title or name.replace("-", " ").title()
        self._client = client
        self._clock = clock
        self._timeout = timeout
        self._metadata: dict[str, Any] | None = None
        self._fetched_at = 0.0
        self._failed_at: float | None = None
        self._lock = asyncio.Lock()
        secret = settings.client_secret.get_secret_value() if settings.client_secret else None
        self.oauth: StarletteOAuth2App = oauth.register(
            name,
            client_id=settings.client_id,
            client_secret=secret,
            client_kwargs={
                "scope": " ".join(settings.scopes),
                "code_challenge_method": "S256",
                "timeout": timeout,
            },
        )
        self.validator = UserinfoValidator(name, self._userinfo_endpoint, client, timeout)

    @property
    def discovery_url(self) -> str:
        return f"{self.settings.issuer}/.well-known/openid-configuration"

    @property
    def ready(self) -> bool:
        return self._metadata is not None

    async def metadata(self) -> dict[str, Any]:
        """The discovery document; refetched after DISCOVERY_TTL, kept (stale) while the provider is down."""
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
                return self._stale_or_raise(exc.detail)
            self._metadata, self._fetched_at, self._failed_at = document, now, None
            # authlib reads endpoints from server_metadata; "_loaded_at" stops it fetching on its own.
            self.oauth.server_metadata.clear()
            self.oauth.server_metadata.update(document, _loaded_at=time.time())
            return document

    def _stale_or_raise(self, detail: str) -> dict[str, Any]:
        if self._metadata is not None:
            return self._metadata
        raise ProviderUnavailable(f"provider {self.name!r}: {detail}")

    async def _fetch_discovery(self) -> dict[str, Any]:
        try:
            response = await self._client.get(self.discovery_url, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(
                f"cannot fetch {self.discovery_url}: {type(exc).__name__}; check ISSUER and the network"
            ) from None
        if response.status_code != 200:
            raise ProviderUnavailable(f"{self.discovery_url} answered {response.status_code}; check ISSUER")
        try:
            document = response.json()
        except ValueError:
            raise ProviderUnavailable(f"{self.discovery_url} did not answer JSON; check ISSUER") from None
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"{self.discovery_url} did not answer a JSON object")
        for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
            if not isinstance(document.get(key), str):
                raise ProviderUnavailable(f"{self.discovery_url} has no {key!r}")
        if document["issuer"].rstrip("/") != self.settings.issuer:
            raise ProviderUnavailable(
                f"discovery names issuer {document['issuer']!r}, not {self.settings.issuer!r}: "
                "set ISSUER to exactly the provider's issuer"
            )
        return document

    async def _userinfo_endpoint(self) -> str:
        return str((await self.metadata())["userinfo_endpoint"])


class Providers:
    """All configured providers, by name, sharing one httpx client and one authlib registry."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self._oauth = OAuth()
        self.default = settings.default_provider_name
        self.by_name = {
            name: Provider(name, conf, client, self._oauth, settings.provider_timeout)
            for name, conf in settings.providers.items()
        }

    def __iter__(self) -> Any:
        return iter(self.by_name.values())

    def get(self, name: str) -> Provider | None:
        return self.by_name.get(name)

    async def warm_up(self) -> None:
        """Fetch every discovery document once at start; failures are retried on first use."""
        await asyncio.gather(*(self._try(p) for p in self), return_exceptions=False)

    @staticmethod
    async def _try(provider: Provider) -> None:
        try:
            await provider.metadata()
        except ProviderUnavailable:
            pass
