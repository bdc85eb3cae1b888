"""GATEWAY_REDIS_MIN_REPLICAS: a message is acked only once that many replicas have it.

WAIT counts the replicas that acknowledged the writes *of its own connection*, so the script and the WAIT go
in one pipeline (one connection; in a cluster, redis-py's ClusterPipeline sends both to the shard that owns
the room, WAIT's `target_nodes` being that shard). A resend that finds its first copy writes too (the
script refreshes the marker's expiry), so its WAIT also covers the first copy: replicas apply writes in order.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import AskError, MovedError, NoScriptError, TryAgainError

from gateway.chat.history import StoreUnavailable
from gateway.redis_connect import is_cluster

log = logging.getLogger("gateway.redis")
WARN_EVERY = 10.0  # seconds between two warnings about replicas lagging


class ReplicasBehind(StoreUnavailable):
    code = "store_unavailable"


class ReplicatedWrites:
    def __init__(self, client: Any, min_replicas: int, timeout: float) -> None:
        self.client = client
        self.min_replicas = min_replicas
        self.timeout_ms = max(1, int(timeout * 1000))
        self._warned = 0.0

    async def run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """The script's answer; with min_replicas, only once WAIT saw that many replicas take it."""
        if self.min_replicas == 0:
            return await script(keys=keys, args=args)
        for _attempt in range(2):
            try:
                if is_cluster(self.client):
                    answer, replicas = await self._in_cluster(script, keys, args)
                else:  # redis-py retries a whole pipeline on one connection: a retry is a resend, safe
                    pipe = self.client.pipeline(transaction=False)
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                    pipe.execute_command("WAIT", self.min_replicas, self.timeout_ms)
                    answer, replicas = await pipe.execute()
            except NoScriptError:  # a new primary (after a failover) has not seen the script yet
                await self.client.script_load(script.script)
                continue
            if int(replicas) < self.min_replicas:
                self._warn(int(replicas))
                raise ReplicasBehind(f"{replicas} of {self.min_replicas} Redis replicas confirmed in time")
            return answer
        raise StoreUnavailable("Redis keeps losing the publish script")

    async def _in_cluster(self, script: AsyncScript, keys: list[str], args: list[Any]) -> tuple[Any, Any]:
        """ClusterPipeline re-runs only the commands that failed (a WAIT that lost its connection would run
        on a fresh one and count nothing) and follows MOVED one command at a time; so: no redirections, and
        CLIENT ID on both sides to prove the script and its WAIT shared a connection."""
        await self.client.initialize()  # a refresh of the slot map that is due runs before the node is picked
        node = self.client.get_node_from_key(keys[0])
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command("CLIENT ID", target_nodes=node)
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # (ClusterPipeline blocks .evalsha)
        pipe.execute_command("WAIT", self.min_replicas, self.timeout_ms, target_nodes=node)
        pipe.execute_command("CLIENT ID", target_nodes=node)
        try:
            before, answer, replicas, after = await pipe.execute(allow_redirections=False)
        except (MovedError, AskError, TryAgainError):
            await self.client.exists(keys[0])  # a plain command follows MOVED and refreshes the slot map
            raise StoreUnavailable("the room's slot moved; send again") from None
        finally:
            # A failover can drop the node from the client's map while the pipeline is under way; the dropped
            # node object keeps the connections it opened, and nobody would close them.
            if self.client.get_node(node_name=node.name) is not node:
                await node.disconnect_free_connections()
        if before != after:
            raise StoreUnavailable("the Redis connection changed between the message and its WAIT")
        return answer, replicas

    def _warn(self, replicas: int) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning("only %d of GATEWAY_REDIS_MIN_REPLICAS=%d Redis replicas confirmed a message within %d ms: "
                        "messages are refused (store_unavailable) until replicas keep up", replicas,
                        self.min_replicas, self.timeout_ms)
