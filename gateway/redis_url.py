"""GATEWAY_BROKER_URL's Redis forms, parsed without importing redis (settings validate with it).

- `redis://[user:password@]host:6379/0`, `rediss://…` (TLS), `unix:///path/redis.sock?db=0`: one Redis.
- `redis+sentinel://[user:password@]host1:26379,host2:26379/<service name>[/<db>]`: the primary that those
  Sentinels name for the service (`rediss+sentinel://` for TLS to the data nodes). The credentials are the
  data nodes'; Sentinels are asked without any.
- `redis+cluster://[user:password@]host1:7000,host2:7001[/0]`: a Redis Cluster, found through any of the
  nodes listed (`rediss+cluster://` for TLS). A cluster has database 0 only.
docs/deployment.md explains which guarantee each gives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

SENTINEL_FORM = "redis+sentinel://host1:26379,host2:26379/<service name>[/<db>]"
CLUSTER_FORM = "redis+cluster://host1:7000,host2:7001"
SERVICE_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_HOST_PORT = re.compile(r"\A(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?\Z")

Kind = Literal["single", "sentinel", "cluster"]
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")


class RedisUrlError(ValueError):
    """GATEWAY_BROKER_URL names a Redis in a form the gateway cannot use; the message says which form."""


@dataclass(frozen=True)
class RedisTarget:
    kind: Kind
    url: str  # the single form: what redis-py's from_url takes
    hosts: tuple[tuple[str, int], ...] = ()  # Sentinels, or cluster start-up nodes
    service: str = ""  # the Sentinel service (master) name
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def _hosts(netloc: str, default_port: int, form: str) -> tuple[tuple[str, int], ...]:
    where = netloc.rpartition("@")[2]
    hosts = []
    for entry in where.split(","):
        match = _HOST_PORT.fullmatch(entry.strip())
        port = int(match["port"]) if match and match["port"] else default_port
        if match is None or not 0 < port < 65536:
            raise RedisUrlError(f"{entry!r} is not host:port; use {form}")
        hosts.append((match["host"].strip("[]"), port))
    return tuple(hosts)


def _credentials(netloc: str) -> tuple[str | None, str | None]:
    userinfo, at, _ = netloc.rpartition("@")
    if not at:
        return None, None
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _db(text: str, form: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise RedisUrlError(f"the database must be a number like 0, got {text!r}; use {form}")
    return int(text)


def parse_redis_url(url: str) -> RedisTarget:
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        parts = urlsplit(url)
        if not (parts.hostname or parts.path):
            raise RedisUrlError("use redis://host:6379/0")
        return RedisTarget("single", url, tls=scheme == "rediss")
    if scheme not in SCHEMES:
        raise RedisUrlError(f"unknown scheme {scheme!r}: use redis://host:6379/0, {SENTINEL_FORM} or {CLUSTER_FORM}")
    netloc, _, path = rest.partition("/")
    if "?" in path or "#" in path or "?" in netloc:
        raise RedisUrlError("takes no query or fragment: put options in their own GATEWAY_ settings")
    user, password = _credentials(netloc)
    tls = scheme.startswith("rediss")
    if scheme.endswith("sentinel"):
        hosts = _hosts(netloc, 26379, SENTINEL_FORM)
        service, _, db = path.strip("/").partition("/")
        if not SERVICE_NAME.fullmatch(service):
            raise RedisUrlError(f"name the Sentinel service after the hosts (like mymaster); use {SENTINEL_FORM}")
        return RedisTarget("sentinel", url, hosts, service, _db(db, SENTINEL_FORM) if db else 0, user, password, tls)
    hosts = _hosts(netloc, 6379, CLUSTER_FORM)
    if path.strip("/") not in ("", "0"):
        raise RedisUrlError(f"a Redis Cluster has database 0 only, got /{path}; use {CLUSTER_FORM}")
    return RedisTarget("cluster", url, hosts, db=0, username=user, password=password, tls=tls)
