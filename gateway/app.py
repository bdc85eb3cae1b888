"""create_app(settings): wires settings, the shared HTTP client, providers, cookies and the hub into FastAPI."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.templating import Jinja2Templates
from itsdangerous import URLSafeTimedSerializer

from gateway import __version__
from gateway.access import AccessPolicy
from gateway.authenticator import Authenticator
from gateway.chat.broker import Broker, MemoryBroker
from gateway.chat.history import SqliteHistory
from gateway.chat.hub import Hub, HubLimits
from gateway.chat.quota import HistoryQuota
from gateway.config import Settings
from gateway.cookies import SessionCookie, TokenCookie
from gateway.denylist_store import SqliteDenyStore
from gateway.forwarded import UntrustedForwardedForWarning
from gateway.live import LiveSockets
from gateway.logout_token import LogoutTokenVerifier
from gateway.logs import AccessLogMiddleware
from gateway.metrics import Metrics
from gateway.path_cookies import IdTokenCookie, RefreshCookie, RevokeCookie
from gateway.providers import Providers
from gateway.redirects import DEFAULT_NEXT
from gateway.replay import ReplayCache
from gateway.sealing import Sealer
from gateway.security import origin_of

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
    home: str = DEFAULT_NEXT  # where a sign-in lands without a `next` (Gateway(home=...) in an app of yours)
    live: LiveSockets = field(default_factory=LiveSockets)  # the library's live_session sockets


def make_broker(settings: Settings) -> Broker:
    """memory:// keeps presence here and history in SQLite; a Redis URL (one Redis, Sentinel or Cluster:
    gateway.redis_url) shares both between instances."""
    quota = HistoryQuota(settings.history_max_rooms, settings.history_rooms_per_user, settings.history_max_bytes)
    if settings.uses_redis:
        from gateway.chat.redis_broker import RedisBroker  # redis-py is imported only when it is used

        return RedisBroker(settings.broker_url, settings.redis_prefix, settings.history_limit,
                           settings.presence_ttl, quota=quota, min_replicas=settings.redis_min_replicas,
                           replica_timeout=settings.redis_replica_timeout)
    return MemoryBroker(SqliteHistory(settings.history_path, settings.history_limit, quota=quota))


def build_gateway(settings: Settings, http: httpx.AsyncClient, home: str = DEFAULT_NEXT) -> Gateway:
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
        home=home,
    )
    gateway.hub.listeners.append(gateway.live.hear)
    metrics.attach(gateway)
    broker = gateway.hub.broker
    if settings.uses_redis:
        from gateway.chat.redis_broker import RedisBroker
        from gateway.shared import RedisShared

        assert isinstance(broker, RedisBroker)
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
    """The gateway's own app (`gateway serve`, `gateway demo`): the library's pieces (gateway.library),
    every router, security headers on every answer, and the access log."""
    from gateway.library import Gateway as Library
    from gateway.routes import assets, auth, check, error_pages

    library = Library(settings, http=http)
    app = FastAPI(title="gateway", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    library.install(app, security_headers="all")
    if not settings.trusted_proxies:  # inside the access log: its warning carries the request id
        app.add_middleware(UntrustedForwardedForWarning)
    app.add_middleware(AccessLogMiddleware)
    app.include_router(library.ops_router)
    app.include_router(auth.root_router)
    app.include_router(library.auth_router)
    app.include_router(check.router)
    app.include_router(library.chat_router)
    app.include_router(assets.router)
    error_pages.install(app)
    return app
