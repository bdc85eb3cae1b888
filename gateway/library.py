"""`Gateway`: the gateway's sign-in, its HTTP-and-WebSocket dependency and its chat inside your own FastAPI
app (docs/library.md). `gateway serve` and `gateway demo` are built from the same pieces (gateway.app)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.staticfiles import StaticFiles

from gateway import __version__
from gateway.app import PACKAGE, build_gateway
from gateway.config import Settings, load_settings
from gateway.cookie_guard import DuplicateCookieGuard
from gateway.denylist_store import SqliteDenyStore
from gateway.dependencies import CurrentUser, OptionalUser, optional_user, require
from gateway.headers import SecurityHeadersMiddleware
from gateway.live import live_session
from gateway.path_guard import ControlCharacterPaths
from gateway.redirects import DEFAULT_NEXT, safe_next
from gateway.sealing import Sealer
from gateway.security import current_principal
from gateway.sessions import LoginStateMiddleware

# The paths of the gateway's own routers: in an app of yours the security headers go on these only.
OWN_PATHS = ("/login", "/logout", "/auth", "/chat", "/rooms", "/static", "/healthz", "/readyz", "/metrics")


class Gateway:
    """One per app: `Gateway(settings)` or `Gateway.from_env()`, then `install(app)` and the routers you
    want. Holds one HTTP client, the providers, the token cache, the stores and the hub."""

    CurrentUser = CurrentUser
    OptionalUser = OptionalUser
    current_user = staticmethod(current_principal)
    optional_user = staticmethod(optional_user)
    require = staticmethod(require)
    live_session = staticmethod(live_session)

    def __init__(self, settings: Settings, *, http: httpx.AsyncClient | None = None,
                 home: str = DEFAULT_NEXT) -> None:
        """`http`: a client of yours for the provider calls (closed by you); `home`: where a sign-in lands
        when it was not sent from a page (a path of this app, like "/")."""
        if safe_next(home, default="") != home:
            raise ValueError(f"home must be a plain path of this app, like '/', got {home!r}")
        self.settings = settings
        self._owns_client = http is None
        self._http = http or httpx.AsyncClient(timeout=settings.provider_timeout, follow_redirects=False,
                                               headers={"User-Agent": f"gateway/{__version__}"})
        self._wiring = build_gateway(settings, self._http, home)
        self._running = 0

    @classmethod
    def from_env(cls, env_file: str | Path | None = ".env", *, http: httpx.AsyncClient | None = None,
                 home: str = DEFAULT_NEXT, **overrides: Any) -> Gateway:
        """The GATEWAY_* settings of the environment and `env_file`, as `gateway serve` reads them;
        `overrides` win over both. Raises ConfigError listing every problem, one line each."""
        return cls(load_settings(env_file, reject_unknown=True, **overrides), http=http, home=home)

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Starts the stores and the hub and fetches each provider's discovery; closes them after. Entered
        more than once (FastAPI(lifespan=gw.lifespan) and install(app)), it runs once."""
        self._running += 1
        if self._running > 1:
            try:
                yield
            finally:
                self._running -= 1
            return
        wiring = self._wiring
        await wiring.hub.start()
        shared = wiring.authenticator.denied.shared
        try:
            if isinstance(shared, SqliteDenyStore):
                await shared.open(wiring.authenticator.denied)
            elif self.settings.uses_redis:  # the logouts other instances kept
                from gateway.shared import RedisShared

                if isinstance(shared, RedisShared):
                    await shared.load_denied(wiring.authenticator.denied)
            await wiring.providers.warm_up()
            yield
        finally:
            self._running -= 1
            await wiring.hub.stop()
            if isinstance(shared, SqliteDenyStore):
                await shared.close()
            if self._owns_client:
                await self._http.aclose()

    def install(self, app: FastAPI, *, security_headers: Literal["gateway", "all"] = "gateway") -> FastAPI:
        """Before the app starts: the gateway's state, its middleware (sealed login state, refusal of
        duplicated gateway cookies, 400 for control characters in paths), its static files at /static, and
        its lifespan around the app's own. `security_headers`: CSP, no framing, no-store on the gateway's
        own paths ("gateway"), or on every answer of the app ("all", as `gateway serve` does)."""
        if getattr(app.state, "gateway", None) is not None:
            raise RuntimeError("a gateway is installed on this app already: one Gateway per app")
        wiring = self._wiring
        settings = self.settings
        app.state.gateway = wiring
        secrets = [key.get_secret_value() for key in settings.secret_keys]
        app.add_middleware(LoginStateMiddleware, sealer=Sealer(secrets, "login state"), https=settings.is_https)
        # Outside the login state, which reads a cookie: two of one name are refused before anyone reads one.
        app.add_middleware(DuplicateCookieGuard, templates=wiring.templates, public_url=settings.public_url)
        app.add_middleware(ControlCharacterPaths)
        app.add_middleware(SecurityHeadersMiddleware, public_url=settings.public_url,
                           paths=None if security_headers == "all" else OWN_PATHS)
        app.mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static")
        app_lifespan = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            async with self.lifespan(app), app_lifespan(app) as state:
                yield state

        app.router.lifespan_context = lifespan
        return app

    @staticmethod
    def logout_token(request: Request) -> str:
        """The `csrf` field a sign-out form (`<form method="post" action="/logout">`) must carry: bound to
        this browser's sign-in, so no other site or session can sign anyone out."""
        from gateway.routes.logout import csrf_token

        return csrf_token(request)

    def serve(self, app: FastAPI, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info",
              ws_max_size: int = 1 << 20) -> None:
        """Run `app` under uvicorn as `gateway serve` runs the gateway (its WebSocket handshake fixes, pings
        every GATEWAY_WS_PING_INTERVAL, GATEWAY_TRUSTED_PROXIES, GATEWAY_GC_THRESHOLD, logs without query
        strings); blocks.
        `ws_max_size`: the largest client frame (bytes); a bigger one closes the socket with 1009."""
        import uvicorn

        from gateway.logs import setup_logging
        from gateway.server import uvicorn_config

        settings = self.settings
        setup_logging(log_level, settings.log_format)
        uvicorn.Server(uvicorn_config(app, host, port, log_level, settings.ws_ping_interval, settings.ws_ping_timeout,
                                      settings.trusted_proxies, settings.gc_threshold, ws_max_size=ws_max_size)).run()

    @cached_property
    def auth_router(self) -> APIRouter:
        """GET /login, /login/{name}, /auth/{name}/callback, /auth/session; POST /logout, /auth/refresh;
        the provider's back- and front-channel logout."""
        from gateway.routes import auth, logout, provider_logout, refresh

        return _bundle(auth.router, refresh.router, logout.router, provider_logout.router)

    @cached_property
    def chat_router(self) -> APIRouter:
        """The chat: GET /chat, /chat/{room} (pages), GET /rooms and WS /ws/{room} (docs/protocol.md). Needs
        auth_router."""
        from gateway.routes import chat, rooms

        return _bundle(chat.router, rooms.router)

    @cached_property
    def ops_router(self) -> APIRouter:
        """GET /healthz, /readyz (providers and store) and /metrics (loopback or GATEWAY_METRICS_TOKEN)."""
        from gateway.routes import ops

        return _bundle(ops.router)


def _bundle(*routers: APIRouter) -> APIRouter:
    bundle = APIRouter()
    for router in routers:
        bundle.include_router(router)
    return bundle

