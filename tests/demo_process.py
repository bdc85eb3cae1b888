"""`gateway demo` as a child process on a free port, for tests that need the whole real thing."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.live import free_port
from tests.processes import stop_all, wait_until_answers


@contextmanager
def running_demo(timeout: float = 20.0) -> Iterator[str]:
    """Yields the demo's base URL; prints its log if it dies or the block fails."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    with tempfile.TemporaryDirectory() as workdir:
        log = Path(workdir) / "demo.log"
        with log.open("wb") as sink:
            process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--port", str(port)],
                                       cwd=workdir, env=env, stdout=sink, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_answers(f"{base}/healthz", process, log, timeout)
            yield base
        except BaseException:
            sys.stderr.write("---- gateway demo log ----\n" + log.read_text("utf-8", "replace"))
            raise
        finally:
            stop_all([process])
