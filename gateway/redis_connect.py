"""Redis clients for GATEWAY_BROKER_URL: one Redis, the primary named by Sentinel, or a Cluster.

Finding the primary, following a failover and MOVED/ASK are redis-py's work (`redis.asyncio.sentinel`,
`redis.asyncio.cluster`); here we only choose timeouts and retries so that a lost primary surfaces as an
error within about a second (the caller answers `store_unavailable`) instead of hanging a publish, and
work around faults of redis-py 8.1's cluster client (`_ClusterConnection`, `close`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, RedisClusterException, RedisError
from redis.retry import Retry

from gateway.redis_url import RedisTarget, parse_redis_url

# What a lost or failing-over Redis raises: redis-py's errors, its cluster errors that are no RedisError
# (a slot not covered while a shard fails over), and the socket's.
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)
SENTINEL_TIMEOUT = 1.0  # seconds: a Sentinel that does not answer is skipped for the next
MAX_CONNECTIONS = 512  # per pool (twice that per node in a cluster and with Sentinel)


def _retry() -> Retry:
    # Two quick retries: enough to step over a dropped connection or to ask Sentinel again, short enough
    # that a message during a failover is refused (and resent by the page) rather than left waiting.
    return Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)


def connect(target: RedisTarget | str, *, socket_timeout: float, health_check_interval: float = 0) -> Any:
    """A client for commands: `redis.asyncio.Redis` (one Redis, or the Sentinel primary) or `RedisCluster`.
    Call it twice for two independent pools (the broker keeps its blocking reads on their own)."""
    if isinstance(target, str):
        target = parse_redis_url(target)
    common: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": 5,
                              "health_check_interval": health_check_interval, "retry": _retry()}
    if target.kind == "single":
        # A burst (500 sockets closing at once) waits for a connection instead of failing: redis-py's
        # plain pool raises "Too many connections" beyond 100 and their leaves were lost.
        return redis.Redis.from_pool(redis.BlockingConnectionPool.from_url(  # from_pool: closed with the client
            target.url, max_connections=MAX_CONNECTIONS, timeout=5, **common))
    auth: dict[str, Any] = {"username": target.username, "password": target.password, "ssl": target.tls}
    common["max_connections"] = 2 * MAX_CONNECTIONS  # redis-py has no waiting pool for these two
    if target.kind == "sentinel":
        sentinels = Sentinel(list(target.hosts), sentinel_kwargs={  # type: ignore[no-untyped-call]
            "socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT})
        return sentinels.master_for(target.service, db=target.db, **auth, **common)
    # A cluster refreshes its slot map between attempts: give it a little longer to see a promotion.
    common["retry"] = Retry(ExponentialBackoff(cap=1.0, base=0.1), 3)
    cluster = RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in target.hosts], **auth, **common)
    _own_connections(cluster)
    return cluster


class _ClusterConnection(Connection):
    """What the cluster client's nodes connect with, for two faults of redis-py 8.1's cluster client.

    - It disconnects a node's idle connections after an error on that node (`disconnect_free_connections`)
      while another task may just have taken one of them: that task's write then failed with
      `AttributeError: 'NoneType' object has no attribute 'writelines'`, which no retry and no caller
      expects (redis/redis-py#4287, fixed on its master by #4288, not released in 8.1.0). The write binds
      the stream once and raises redis-py's ConnectionError instead, which the cluster client retries on a
      fresh connection. Only `_send_packed_command` is replaced: every client here sets socket_timeout, so
      redis-py always writes through it.
    - A failover replaces node objects while pipelines are under way on the old ones; what those open
      belongs to a node no longer in the client's map, which its aclose() never reaches (and which the
      garbage collector found still open). Every connection is in `opened` while it is connected, and
      `close` closes whatever is still there.
    """

    opened: ClassVar[set[Connection]]

    async def _connect(self) -> None:
        await super()._connect()  # type: ignore[no-untyped-call]
        self.opened.add(self)

    async def disconnect(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().disconnect(*args, **kwargs)
        finally:
            if not self.is_connected:
                self.opened.discard(self)

    async def _send_packed_command(self, command: Any) -> None:
        writer = self._writer
        if writer is None:
            raise ConnectionError("the Redis connection was closed by another task while a command was sent")
        writer.writelines(command)
        await writer.drain()


def _own_connections(cluster: RedisCluster) -> None:
    """RedisCluster takes no connection class: it is set where its nodes (the startup nodes already made,
    and every node it finds later) take theirs. One class per client, for its own `opened`."""
    plain = cluster.connection_kwargs["connection_class"]  # Connection or SSLConnection
    own = type(f"Cluster{plain.__name__}", (_ClusterConnection, plain), {"opened": set()})
    cluster.connection_kwargs["connection_class"] = own
    for node in cluster.nodes_manager.startup_nodes.values():
        node.connection_class = own


async def close(client: Any) -> None:
    """Close a client from `connect`, and with Sentinel the connections to the Sentinels themselves."""
    await client.aclose()
    if isinstance(client, RedisCluster):
        # redis-py 8.1's RedisCluster.aclose() does nothing while the client waits to re-read the cluster's
        # slots (after a ConnectionError or TimeoutError on a node, until the next command): every
        # connection would stay open. Closing the nodes again costs nothing when aclose() did it.
        await client.nodes_manager.aclose()
        await client.nodes_manager.aclose("startup_nodes")
        for connection in list(getattr(client.connection_kwargs["connection_class"], "opened", ())):
            await connection.disconnect()  # those of nodes dropped from the map (_ClusterConnection)
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()


def decoded(value: Any) -> str:
    """A reply's bytes as text (clients are made without decode_responses: stream fields stay bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)
