"""create_app(settings): wires settings, the shared HTTP client, providers, cookies and the hub into FastAPI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from itsdangerous import URLSafeTimedSerializer

from gateway import __version__
from gateway.access import AccessPolicy
from gateway.authenticator import Authenticator
from gateway.chat.broker import Broker, MemoryBroker
from gateway.chat.history import SqliteHistory
from gateway.chat.hub import Hub, HubLimits
from gateway.chat.quota import HistoryQuota
from gateway.chat.redis_broker import RedisBroker
from gateway.config import Settings
from gateway.cookie_guard import DuplicateCookieGuard
from gateway.cookies import Sealer, SessionCookie, TokenCookie
from gateway.denylist_store import SqliteDenyStore
from gateway.forwarded import UntrustedForwardedForWarning
from gateway.headers import SecurityHeadersMiddleware
from gateway.logout_token import LogoutTokenVerifier
from gateway.logs import AccessLogMiddleware
from gateway.metrics import Metrics
from gateway.path_cookies import IdTokenCookie, RefreshCookie, RevokeCookie
from gateway.path_guard import ControlCharacterPaths
from gateway.providers import Providers
from gateway.replay import ReplayCache
from gateway.security import origin_of
from gateway.sessions import LoginStateMiddleware
from gateway.shared import RedisShared

log = logging.getLogger("gateway")
PACKAGE = Path(__file__).parent


def templates_dir() -> Path:
    """Installed wheels carry templates inside the package; a source checkout keeps them at the top."""
    inside = PACKAGE / "templates"
    return inside if inside.is_dir() else PACKAGE.parent / "templates"


@dataclass
class Gateway:
    """Everything a request handler needs, built once per app."""

    settings: Settings
    http: httpx.AsyncClient
    providers: Providers
    token_cookie: TokenCookie
    csrf: URLSafeTimedSerializer
    refresh_cookie: RefreshCookie
    authenticator: Authenticator
    access: AccessPolicy
    metrics: Metrics
    hub: Hub
    allowed_origins: frozenset[str]
    templates: Jinja2Templates
    revoke_cookie: RevokeCookie  # the refresh token again, for POST /logout to revoke
    idt_cookie: IdTokenCookie  # the ID token, for POST /logout's id_token_hint
    session_cookie: SessionCookie  # the sign-in's session id: every other cookie of it must carry the same
    logout_tokens: LogoutTokenVerifier  # back-channel logout (gateway.routes.provider_logout)


def make_broker(settings: Settings) -> Broker:
    """memory:// keeps presence here and history in SQLite; redis://… shares both between instances."""
    quota = HistoryQuota(settings.history_max_rooms, settings.history_rooms_per_user, settings.history_max_bytes)
    if settings.uses_redis:
        return RedisBroker(settings.broker_url, settings.redis_prefix, settings.history_limit,
                           settings.presence_ttl, quota=quota)
    return MemoryBroker(SqliteHistory(settings.history_path, settings.history_limit, quota=quota))


def build_gateway(settings: Settings, http: httpx.AsyncClient) -> Gateway:
    secrets = [key.get_secret_value() for key in settings.secret_keys]
    public_origin = origin_of(settings.public_url)
    templates = Jinja2Templates(directory=str(templates_dir()))
    metrics = Metrics()
    providers = Providers(settings, http, metrics.provider_calls.observe)
    session_cookie = SessionCookie(Sealer(secrets, "session cookie"), settings.is_https, settings.session_max_age)
    gateway = Gateway(
        settings=settings,
        http=http,
        providers=providers,
        token_cookie=TokenCookie(Sealer(secrets, "token cookie"), settings.is_https, settings.session_max_age,
                                 domain=settings.cookie_domain, anchor=session_cookie),
        refresh_cookie=RefreshCookie(Sealer(secrets, "refresh cookie"), settings.is_https, settings.session_max_age),
        authenticator=Authenticator(settings, providers),
        access=AccessPolicy.from_settings(settings),
        metrics=metrics,
        # itsdangerous signs with the *last* key and verifies with all: reversed, the first one signs.
        csrf=URLSafeTimedSerializer(list(reversed(secrets)), salt="gateway logout csrf"),
        hub=Hub(make_broker(settings), HubLimits(
            history_on_join=settings.history_on_join, history_page=settings.history_page,
            outbox_size=settings.send_queue_size, outbox_bytes=settings.send_queue_bytes,
            message_rate=settings.message_rate, message_burst=settings.message_burst,
            edit_window=float(settings.edit_window),
            user_resume_rate=settings.resume_rate, user_resume_burst=settings.resume_burst,
            user_resume_bytes=float(settings.resume_byte_rate))),
        allowed_origins=frozenset({public_origin, *settings.allowed_origins}),
        templates=templates,
        revoke_cookie=RevokeCookie(Sealer(secrets, "refresh cookie"), settings.is_https, settings.session_max_age),
        idt_cookie=IdTokenCookie(Sealer(secrets, "id token cookie"), settings.is_https, settings.session_max_age),
        session_cookie=session_cookie,
        logout_tokens=LogoutTokenVerifier(
            ReplayCache(settings.logout_replay_cache_size, settings.logout_replay_cache_bytes),
            settings.logout_token_max_age, settings.jwt_leeway),
    )
    metrics.attach(gateway)
    broker = gateway.hub.broker
    if isinstance(broker, RedisBroker):
        shared = RedisShared(broker.redis, settings.redis_prefix, broker.announce)
        gateway.authenticator.cache.shared = shared
        gateway.authenticator.denied.shared = shared
        gateway.logout_tokens.replays.shared = shared
        gateway.hub.handlers["_deny"] = lambda event: gateway.authenticator.denied.remember(
            str(event["key"]), float(event["until"]))
    else:  # one process: the deny-list survives restarts in the history's SQLite file
        gateway.authenticator.denied.shared = SqliteDenyStore(settings.history_path)
    return gateway


def create_app(settings: Settings, http: httpx.AsyncClient | None = None) -> FastAPI:
    from gateway.routes import assets, auth, chat, check, error_pages, logout, ops, provider_logout, refresh, rooms

    owns_client = http is None
    client = http or httpx.AsyncClient(
        timeout=settings.provider_timeout, follow_redirects=False, headers={"User-Agent": f"gateway/{__version__}"}
    )
    gateway = build_gateway(settings, client)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.hub.start()
        shared = gateway.authenticator.denied.shared
        try:
            if isinstance(shared, RedisShared):
                await shared.load_denied(gateway.authenticator.denied)
            elif isinstance(shared, SqliteDenyStore):
                await shared.open(gateway.authenticator.denied)
            await gateway.providers.warm_up()
            yield
        finally:
            await gateway.hub.stop()
            if isinstance(shared, SqliteDenyStore):
                await shared.close()
            if owns_client:
                await client.aclose()

    app = FastAPI(title="gateway", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.gateway = gateway
    secrets = [key.get_secret_value() for key in settings.secret_keys]
    app.add_middleware(LoginStateMiddleware, sealer=Sealer(secrets, "login state"), https=settings.is_https)
    # Outside the login state, which reads a cookie: two of one name are refused before anyone reads one.
    app.add_middleware(DuplicateCookieGuard, templates=gateway.templates, public_url=settings.public_url)
    app.add_middleware(ControlCharacterPaths)
    app.add_middleware(SecurityHeadersMiddleware, public_url=settings.public_url)
    if not settings.trusted_proxies:  # inside the access log: its warning carries the request id
        app.add_middleware(UntrustedForwardedForWarning)
    app.add_middleware(AccessLogMiddleware)
    error_pages.install(app)
    app.mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static")
    app.include_router(ops.router)
    app.include_router(assets.router)
    app.include_router(auth.router)
    app.include_router(refresh.router)
    app.include_router(logout.router)
    app.include_router(provider_logout.router)
    app.include_router(check.router)
    app.include_router(chat.router)
    app.include_router(rooms.router)
    return app
