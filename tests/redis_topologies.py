"""Real Redis topologies for failover tests, from Debian's redis-server and redis-sentinel: a primary with
replicas watched by three Sentinels, and a Cluster of three primaries with a replica each. Every server
runs on a free loopback port in its own temporary directory; timeouts are tight (a failover in 2-4 s).
Without the binaries the tests skip (fail under GATEWAY_REQUIRE_REDIS=1), as tests/redis_support.py does."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.live import free_port
from tests.redis_support import unavailable

SERVICE = "mymaster"


def binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        unavailable(f"no {name} binary: apt-get install -y {package}")
    assert found is not None
    return found


def until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


@dataclass
class Servers:
    directory: Path
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)  # port -> process

    def start(self, argv: list[str], port: int) -> None:
        self.processes[port] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                cwd=self.directory)

    def kill(self, port: int) -> None:
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log(self, port: int) -> str:
        path = self.directory / str(port) / "redis.log"
        return path.read_text("utf-8", "replace")[-2000:] if path.exists() else ""


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    import socket

    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports for a cluster node")


def client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)


def _server_argv(servers: Servers, port: int, *extra: str) -> list[str]:
    home = servers.directory / str(port)
    home.mkdir()
    # No 5 s pause before a replica's first sync (Redis's default, to batch replicas): a replica is in step
    # as soon as it is up.
    return [binary("redis-server", "redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(home),
            "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0",
            "--logfile", str(home / "redis.log"), *extra]


def in_step(port: int) -> bool:
    """A replica whose link to its primary is up (its first sync done)."""
    return client(port).info("replication").get("master_link_status") == "up"


@dataclass
class SentinelSet:
    servers: Servers
    primary: int
    replicas: list[int]
    sentinels: list[int]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinels) + f"/{SERVICE}/0"

    def primary_now(self) -> int:
        return int(client(self.sentinels[0]).sentinel_get_master_addr_by_name(SERVICE)[1])


@contextmanager
def sentinel_set(replicas: int = 2, down_after_ms: int = 1000) -> Iterator[SentinelSet]:
    """A primary, `replicas` replicas and three Sentinels (quorum 2) that agree on all of them."""
    sentinel = binary("redis-sentinel", "redis-sentinel")
    with tempfile.TemporaryDirectory(prefix="gateway-sentinel-") as directory:
        servers = Servers(Path(directory))
        try:
            primary = free_port()
            servers.start(_server_argv(servers, primary), primary)
            until(lambda: bool(client(primary).ping()), "the primary")
            ports = [free_port() for _ in range(replicas)]
            for port in ports:
                servers.start(_server_argv(servers, port, "--replicaof", "127.0.0.1", str(primary)), port)
            until(lambda: all(in_step(port) for port in ports), "the replicas' first sync")
            watchers = [free_port() for _ in range(3)]
            for port in watchers:
                home = servers.directory / str(port)
                home.mkdir()
                conf = home / "sentinel.conf"  # Sentinel rewrites its file: it must be its own, writable
                conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {home}\nlogfile {home / 'redis.log'}\n"
                                f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
                                f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
                                f"sentinel failover-timeout {SERVICE} 10000\n"
                                f"sentinel parallel-syncs {SERVICE} {replicas}\n")
                servers.start([sentinel, str(conf)], port)

            def agreed() -> bool:
                for port in watchers:
                    info = client(port).sentinel_master(SERVICE)
                    if int(info["num-other-sentinels"]) != 2 or int(info["num-slaves"]) != replicas:
                        return False
                return True

            until(agreed, "the Sentinels to know each other and the replicas", 30)
            yield SentinelSet(servers, primary, ports, watchers)
        finally:
            servers.stop()


@dataclass
class ClusterSet:
    servers: Servers
    ports: list[int]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def primaries(self) -> dict[int, tuple[int, int]]:
        """port -> (first slot, last slot) of each live primary, as the cluster sees it now."""
        for port in self.ports:
            if self.servers.processes[port].poll() is None:
                answer = client(port).execute_command("CLUSTER", "SLOTS")
                return {int(entry[2][1]): (int(entry[0]), int(entry[1])) for entry in answer}
        raise RuntimeError("no live cluster node")

    def healthy(self) -> bool:
        live = [p for p in self.ports if self.servers.processes[p].poll() is None]
        return all(b"cluster_state:ok" in client(p).execute_command("CLUSTER", "INFO") for p in live)


@contextmanager
def cluster_set(primaries: int = 3, node_timeout_ms: int = 1500, replicas: int = 1) -> Iterator[ClusterSet]:
    """`primaries` primaries with `replicas` replicas each, made by `redis-cli --cluster create`."""
    cli = binary("redis-cli", "redis-tools")
    with tempfile.TemporaryDirectory(prefix="gateway-cluster-") as directory:
        servers = Servers(Path(directory))
        try:
            ports = [cluster_port() for _ in range(primaries * (1 + replicas))]
            for port in ports:
                servers.start(_server_argv(servers, port, "--cluster-enabled", "yes", "--cluster-config-file",
                                           "nodes.conf", "--cluster-node-timeout", str(node_timeout_ms),
                                           "--cluster-require-full-coverage", "no"), port)
            for port in ports:
                until(lambda port=port: bool(client(port).ping()), f"cluster node {port}")  # type: ignore[misc]
            made = subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                                   "--cluster-replicas", str(replicas), "--cluster-yes"],
                                  capture_output=True, check=False)
            if made.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {made.stdout[-2000:]!r}")
            cluster = ClusterSet(servers, ports)
            until(cluster.healthy, "cluster_state:ok on every node", 30)
            until(lambda: len(cluster.primaries()) == primaries, "the slot map")
            until(lambda: all(in_step(p) for p in ports if p not in cluster.primaries()), "the replicas' first sync")
            yield cluster
        finally:
            servers.stop()
