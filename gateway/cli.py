"""`gateway demo | serve | check-config`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket
import sys
import warnings
from collections.abc import Sequence

import uvicorn

from gateway.config import Settings, load_settings
from gateway.config_warnings import config_warnings, is_loopback_host
from gateway.errors import ConfigError, PortUnavailable
from gateway.logs import setup_logging
from gateway.server import bind_socket, uvicorn_config

EXIT_BAD_CONFIG = 2
RELOAD_ENV_FILE = "_GATEWAY_RELOAD_ENV_FILE"  # no GATEWAY_ prefix: not a setting
RELOAD_LOG_LEVEL = "_GATEWAY_RELOAD_LOG_LEVEL"


def quiet_known_warnings() -> None:
    """Start-up must not read like an error. Two third-party deprecations are known and harmless here:
    authlib warns that plain httpx is deprecated in favour of httpx2, which we keep out on purpose (respx,
    our tests' HTTP mock, cannot intercept it); oidc-provider-mock 0.3.4, the demo's provider, imports the
    deprecated authlib.jose. pytest ignores the same two (pyproject.toml, filterwarnings)."""
    # authlib.deprecate puts an "always" filter for its warnings in front of the list when imported:
    # import it first, so that ours go in front of that one.
    import authlib.deprecate  # noqa: F401

    warnings.filterwarnings("ignore", message=".*httpx2.*")
    warnings.filterwarnings("ignore", message=".*authlib.jose.*")


def _fail(problems: Sequence[str]) -> int:
    for line in problems:
        print(f"gateway: {line}", file=sys.stderr)
    return EXIT_BAD_CONFIG


def _warn(lines: Sequence[str]) -> None:
    for line in lines:
        print(f"gateway: warning: {line}", file=sys.stderr, flush=True)


def _serve(settings: Settings, sock: socket.socket, host: str, port: int, log_level: str) -> None:
    from gateway.app import create_app

    setup_logging(log_level, settings.log_format)
    logging.getLogger("gateway").info("listening on %s:%d (users open %s)", host, sock.getsockname()[1],
                                      settings.public_url)
    config = uvicorn_config(create_app(settings), host, port, log_level, settings.ws_ping_interval,
                            settings.ws_ping_timeout, settings.trusted_proxies, settings.gc_threshold)
    uvicorn.Server(config).run(sockets=[sock])


def cmd_demo(args: argparse.Namespace) -> int:
    if not is_loopback_host(args.host) and not args.unsafe_public:
        return _fail([f"--host {args.host}: the demo lets anyone sign in as anyone; "
                      "bind to 127.0.0.1, or add --unsafe-public if you really mean it"])
    try:
        from gateway.demo import DEMO_CLIENT_ID, banner, demo_provider
    except ModuleNotFoundError as exc:  # the embedded provider (and its Flask) is an extra
        return _fail([f"gateway demo needs the embedded OpenID provider ({exc.name} is not installed): "
                      "pip install 'oidc-gateway[demo]' (./dev demo installs it)"])

    try:
        sock = bind_socket(args.host, args.port)
    except PortUnavailable as exc:
        return _fail([exc.line])
    with sock, demo_provider() as issuer:
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        port = sock.getsockname()[1]
        public = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        try:
            settings = load_settings(
                env_file=None, reject_unknown=True, demo=True, public_url=public,
                secret_keys=[secrets.token_urlsafe(32)],
                providers={"demo": {"issuer": issuer, "client_id": DEMO_CLIENT_ID,
                                    "client_secret": "demo-secret", "title": "Demo provider"}},
            )
        except ConfigError as exc:
            return _fail(exc.problems)
        print(banner(public, issuer, settings.history_path, settings.uses_redis), file=sys.stderr, flush=True)
        _serve(settings, sock, args.host, port, args.log_level)
    return 0


def redis_problem(settings: Settings) -> str | None:
    """A line naming GATEWAY_BROKER_URL when Redis cannot be reached (checked before serving)."""
    if not settings.uses_redis:
        return None
    import asyncio

    from gateway.redis_connect import REDIS_ERRORS, close, connect

    async def ping() -> None:  # through Sentinel or the cluster's nodes as the gateway will
        client = connect(settings.broker_url, socket_timeout=3)
        try:
            await client.ping()
        finally:
            await close(client)

    try:
        asyncio.run(ping())
    except REDIS_ERRORS as exc:
        return f"GATEWAY_BROKER_URL: cannot reach Redis at {masked_url(settings.broker_url)} ({exc}); is it running?"
    return None


def masked_url(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":****@")
    return url


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.env_file, reject_unknown=True)
    except ConfigError as exc:
        return _fail(exc.problems)
    problem = redis_problem(settings)
    if problem:
        return _fail([problem])
    _warn(config_warnings(settings))
    try:
        sock = bind_socket(args.host, args.port)
    except PortUnavailable as exc:
        return _fail([exc.line])
    if args.reload:
        setup_logging(args.log_level, settings.log_format)
        from uvicorn.supervisors import ChangeReload

        # The reloaded app is built in a fresh process: tell it which env file this command was given.
        os.environ[RELOAD_ENV_FILE] = args.env_file
        os.environ[RELOAD_LOG_LEVEL] = args.log_level
        config = uvicorn_config("gateway.cli:app_from_env", args.host, args.port, args.log_level,
                                reload=True, factory=True)
        # Server.run alone never reloads: the supervisor (as in uvicorn.run) watches files and restarts it.
        ChangeReload(config, target=uvicorn.Server(config).run, sockets=[sock]).run()
        return 0
    with sock:
        _serve(settings, sock, args.host, args.port, args.log_level)
    return 0


def app_from_env() -> object:
    """Factory for `serve --reload` (uvicorn re-imports the app in a child process, where main() never ran)."""
    quiet_known_warnings()  # before gateway.app imports authlib
    from gateway.app import create_app

    settings = load_settings(os.environ.get(RELOAD_ENV_FILE, ".env"), reject_unknown=True)
    setup_logging(os.environ.get(RELOAD_LOG_LEVEL, "info"), settings.log_format)  # the child's own handlers
    return create_app(settings)


async def _check(settings: Settings) -> list[str]:
    import httpx

    from gateway.errors import ProviderUnavailable
    from gateway.jwt_validator import JwtValidator
    from gateway.logout import logout_uri_lines
    from gateway.providers import Providers, variable_prefix

    problems = []
    async with httpx.AsyncClient(timeout=settings.provider_timeout) as client:
        for provider in Providers(settings, client):
            strategy = provider.validator.strategy
            try:
                metadata = await provider.metadata()
            except ProviderUnavailable as exc:
                problems.append(f"{variable_prefix(provider.name)}__ISSUER: {exc.detail}")
                continue
            try:
                if isinstance(provider.validator, JwtValidator):
                    await provider.validator.jwks.keyset(None)
                elif strategy in ("userinfo", "introspection"):
                    await provider.endpoint(f"{strategy}_endpoint")
            except ProviderUnavailable as exc:
                problems.append(f"{variable_prefix(provider.name)}__VALIDATION: {strategy}: {exc.detail}")
                continue
            print(f"provider {provider.name}: ok ({provider.issuer}, validation {strategy}); register the "
                  f"redirect URI {settings.redirect_uri(provider.name)}")
            uris = {"backchannel": settings.backchannel_logout_uri(provider.name),
                    "frontchannel": settings.frontchannel_logout_uri(provider.name)}
            for line in logout_uri_lines(provider, metadata, uris):
                print(line)
    return problems


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.env_file, reject_unknown=True)
    except ConfigError as exc:
        return _fail(exc.problems)
    # Each failure is one problem line below; the provider's own warning log would say it a second time.
    setup_logging("error", settings.log_format)
    _warn(config_warnings(settings))
    print(f"public URL: {settings.public_url}")
    print(f"secret keys: {len(settings.secret_keys)} (****)")
    print(f"broker: {masked_url(settings.broker_url)}")
    problems = asyncio.run(_check(settings))
    problem = redis_problem(settings)
    if problem:
        problems.append(problem)
    if problems:
        return _fail(problems)
    print("configuration ok")
    return 0


LOG_LEVELS = ["debug", "info", "warning", "error"]


def parser() -> argparse.ArgumentParser:
    formatter = argparse.ArgumentDefaultsHelpFormatter
    root = argparse.ArgumentParser(prog="gateway", description="Login gateway with a provider-checked chat",
                                   formatter_class=formatter)
    commands = root.add_subparsers(dest="command", required=True, metavar="{demo,serve,check-config}")

    demo = commands.add_parser("demo", help="gateway + embedded OpenID provider, no account needed",
                               description="Try the chat: the gateway with an embedded OpenID provider at "
                               "which anyone signs in as anyone, and SQLite history.", formatter_class=formatter)
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback only, unless "
                      "--unsafe-public)")
    demo.add_argument("--port", type=int, default=8000, help="port to listen on")
    demo.add_argument("--unsafe-public", action="store_true", help="allow a non-loopback --host (anyone "
                      "reaching it can sign in as anyone)")
    demo.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="least level logged")
    demo.set_defaults(run=cmd_demo)

    serve = commands.add_parser("serve", help="run against the providers configured in the environment",
                                description="Run the gateway with the GATEWAY_* settings of the environment "
                                "and the env file (see .env.example).", formatter_class=formatter)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--env-file", default=".env", help="file of GATEWAY_* settings; the environment wins "
                       "over it")
    serve.add_argument("--reload", action="store_true", help="restart when the code changes (development)")
    serve.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="least level logged")
    serve.set_defaults(run=cmd_serve)

    check = commands.add_parser("check-config", help="load settings and reach each provider",
                                description="Load the settings, fetch each provider's discovery (and keys), "
                                "reach Redis, and print the redirect URI to register.", formatter_class=formatter)
    check.add_argument("--env-file", default=".env", help="file of GATEWAY_* settings; the environment wins "
                       "over it")
    check.set_defaults(run=cmd_check_config)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    quiet_known_warnings()
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
