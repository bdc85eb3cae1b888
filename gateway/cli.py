"""`gateway demo | serve | check-config`."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import secrets
import sys
from collections.abc import Sequence

import uvicorn

from gateway.config import Settings, load_settings
from gateway.errors import ConfigError
from gateway.logs import setup_logging

EXIT_BAD_CONFIG = 2
RELOAD_ENV_FILE = "_GATEWAY_RELOAD_ENV_FILE"  # no GATEWAY_ prefix: not a setting


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fail(problems: Sequence[str]) -> int:
    for line in problems:
        print(f"gateway: {line}", file=sys.stderr)
    return EXIT_BAD_CONFIG


def _serve(settings: Settings, host: str, port: int, log_level: str) -> None:
    from gateway.app import create_app
    from gateway.server import uvicorn_config

    setup_logging(log_level, settings.log_format)
    config = uvicorn_config(create_app(settings), host, port, log_level, settings.ws_ping_interval,
                            settings.ws_ping_timeout, settings.trusted_proxies)
    uvicorn.Server(config).run()


def cmd_demo(args: argparse.Namespace) -> int:
    if not _is_loopback(args.host) and not args.unsafe_public:
        return _fail([f"--host {args.host}: the demo lets anyone sign in as anyone; "
                      "bind to 127.0.0.1, or add --unsafe-public if you really mean it"])
    from gateway.demo import DEMO_CLIENT_ID, demo_provider

    with demo_provider() as issuer:
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        public = f"http://{'[' + host + ']' if ':' in host else host}:{args.port}"
        try:
            settings = load_settings(
                env_file=None, demo=True, public_url=public, secret_keys=[secrets.token_urlsafe(32)],
                providers={"demo": {"issuer": issuer, "client_id": DEMO_CLIENT_ID,
                                    "client_secret": "demo-secret", "title": "Demo provider"}},
            )
        except ConfigError as exc:
            return _fail(exc.problems)
        print(f"gateway demo: open {public}/chat  (provider at {issuer}; anyone can sign in as anyone)",
              file=sys.stderr, flush=True)
        _serve(settings, args.host, args.port, args.log_level)
    return 0


def redis_problem(settings: Settings) -> str | None:
    """A line naming GATEWAY_BROKER_URL when Redis cannot be reached (checked before serving)."""
    if not settings.uses_redis:
        return None
    import redis
    from redis.exceptions import RedisError

    client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        return f"GATEWAY_BROKER_URL: cannot reach Redis at {masked_url(settings.broker_url)} ({exc}); is it running?"
    finally:
        client.close()
    return None


def masked_url(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":****@")
    return url


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.env_file)
    except ConfigError as exc:
        return _fail(exc.problems)
    problem = redis_problem(settings)
    if problem:
        return _fail([problem])
    if args.reload:
        setup_logging(args.log_level, settings.log_format)
        from uvicorn.supervisors import ChangeReload

        from gateway.server import uvicorn_config

        # The reloaded app is built in a fresh process: tell it which env file this command was given.
        os.environ[RELOAD_ENV_FILE] = args.env_file
        config = uvicorn_config("gateway.cli:app_from_env", args.host, args.port, args.log_level,
                                reload=True, factory=True)
        # Server.run alone never reloads: the supervisor (as in uvicorn.run) watches files and restarts it.
        ChangeReload(config, target=uvicorn.Server(config).run, sockets=[config.bind_socket()]).run()
        return 0
    _serve(settings, args.host, args.port, args.log_level)
    return 0


def app_from_env() -> object:
    """Factory for `serve --reload` (uvicorn re-imports the app in a child process)."""
    from gateway.app import create_app

    return create_app(load_settings(os.environ.get(RELOAD_ENV_FILE, ".env")))


async def _check(settings: Settings) -> list[str]:
    import httpx

    from gateway.errors import ProviderUnavailable
    from gateway.logout import logout_uri_lines
    from gateway.providers import Providers, variable_prefix
    from gateway.validators import JwtValidator

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
        settings = load_settings(args.env_file)
    except ConfigError as exc:
        return _fail(exc.problems)
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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="gateway", description="Login gateway with a provider-checked chat")
    commands = root.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="gateway + embedded OpenID provider, no account needed")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--unsafe-public", action="store_true", help="allow a non-loopback --host")
    demo.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    demo.set_defaults(run=cmd_demo)

    serve = commands.add_parser("serve", help="run against the providers configured in the environment")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--env-file", default=".env")
    serve.add_argument("--reload", action="store_true")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(run=cmd_serve)

    check = commands.add_parser("check-config", help="load settings and reach each provider")
    check.add_argument("--env-file", default=".env")
    check.set_defaults(run=cmd_check_config)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
