"""Child processes for tests that need whole programs (gateways, providers): wait until one answers, stop
it for sure."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import httpx


def wait_until_answers(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    """Until `url` answers below 500; raises with the process's log if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited early:\n{log.read_text('utf-8', 'replace')}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer:\n{log.read_text('utf-8', 'replace')}")


def stop_all(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
