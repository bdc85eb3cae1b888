"""A real Redis for tests: the machine's on 127.0.0.1:6379, or a redis-server we start on a free port.

Never FLUSHALL: every test gets its own key prefix and removes only its own keys. Without Redis the
tests skip with the reason, unless GATEWAY_REQUIRE_REDIS=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from tests.live import free_port

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def unavailable(reason: str) -> None:
    if os.environ.get("GATEWAY_REQUIRE_REDIS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def redis_server(*extra: str) -> Iterator[tuple[str, subprocess.Popen[bytes], list[str]]]:
    """Our own redis-server on a free port (for restart tests); yields (url, process, argv)."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("no redis-server binary: apt-get install -y redis-server")
    assert binary is not None
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory, "--save", "",
                "--logfile", os.path.join(directory, "redis.log"), *extra]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            wait_for(url)
            yield url, process, argv
        finally:
            process.terminate()
            process.wait(10)


def wait_for(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not _answers(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis at {url} did not start")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if _answers(DEFAULT_URL):
        yield DEFAULT_URL
        return
    with redis_server() as (url, _process, _argv):
        yield url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"gateway-test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        client.delete(*keys)
    client.close()
