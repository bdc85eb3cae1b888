"""Running examples/*.py in tests: as a child process (`python examples/x.py`), or imported here and served
by uvicorn in a thread (where respx can mock the provider)."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import CLIENT_ID, SECRET
from tests.live import live_server
from tests.processes import stop_all, wait_until_answers

EXAMPLES = Path(__file__).parent.parent / "examples"


def example_env(port: int, issuer: str, provider: str, tmp_path: Path, client_id: str = CLIENT_ID,
                client_secret: str = "s3cret") -> dict[str, str]:  # noqa: S107 - a test client's
    """The settings an example reads from the environment, for one provider `provider` at `issuer`."""
    variable = f"GATEWAY_PROVIDERS__{provider.upper()}__"
    return {
        "PORT": str(port),
        "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "GATEWAY_SECRET_KEYS": SECRET,
        f"{variable}ISSUER": issuer,
        f"{variable}CLIENT_ID": client_id,
        f"{variable}CLIENT_SECRET": client_secret,
        "GATEWAY_HISTORY_PATH": str(tmp_path / "history.sqlite3"),
        "GATEWAY_VALIDATION_CACHE_TTL": "0.5",  # a revocation is seen within half a second
    }


@contextmanager
def as_process(example: str, env: dict[str, str], workdir: Path) -> Iterator[str]:
    """`python examples/<example>` in `workdir` (no .env there), with only `env`'s GATEWAY_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    log = workdir / f"{example}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, str(EXAMPLES / example)], cwd=workdir, env={**clean, **env},
                                   stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{env['PORT']}"
    try:
        wait_until_answers(f"{base}/login", process, log)
        yield base
    except BaseException:
        sys.stderr.write(f"---- {example} log ----\n" + log.read_text("utf-8", "replace"))
        raise
    finally:
        stop_all([process])


@contextmanager
def in_process(example: str, env: dict[str, str], workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The example's `app`, imported here (where respx mocks the provider) and served in a thread."""
    for name in [name for name in os.environ if name.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(workdir)
    app = runpy.run_path(str(EXAMPLES / example))["app"]
    with live_server(app, int(env["PORT"])) as address:
        yield f"http://{address}"
