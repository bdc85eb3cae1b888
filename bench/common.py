"""What every benchmark shares: server processes pinned to core 0 and the load generator on core 1,
CPU and memory readings from /proc, the fake provider, tokens and cookies, and the printed table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
SERVER_CORE, CLIENT_CORE = 0, 1
SECRET = "bench-secret-key-0123456789-abcdefghijklmnop"
PROVIDER = "bench"  # the provider's name in GATEWAY_PROVIDERS__BENCH__*
CLK_TCK = os.sysconf("SC_CLK_TCK")
PACKAGES = ("uvicorn", "websockets", "fastapi", "starlette", "uvloop", "httptools", "wsproto", "orjson", "redis")
# Limits a benchmark must not trip over: it measures speed, not the abuse guards.
RAISED_LIMITS = {
    "GATEWAY_MAX_SOCKETS_PER_USER": "100000",
    "GATEWAY_MESSAGE_RATE": "100000",
    "GATEWAY_MESSAGE_BURST": "100000",
    "GATEWAY_FAILED_AUTH_BURST": "100000",
}


# --- the machine ------------------------------------------------------------------------------------

def cores() -> int:
    return os.cpu_count() or 1


def pinning() -> bool:
    return cores() >= 2 and shutil.which("taskset") is not None


def become_load_generator(descriptors: int = 0) -> None:
    """The bench script itself is the load generator: core 1, and descriptors for thousands of sockets:
    the soft limit raised to the hard one, and the hard one to `descriptors` when that is more and this
    process may (root, up to fs.nr_open). The servers started afterwards inherit the limit."""
    if pinning():
        os.sched_setaffinity(0, {CLIENT_CORE})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if descriptors > hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (descriptors, descriptors))
            return
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it


def descriptor_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown cpu"


def header(title: str, argv: Sequence[str]) -> None:
    print(f"# bench {title} — {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"# {cores()} cores ({cpu_model()}), Python {platform.python_version()}, {versions()}")
    where = f"servers on core {SERVER_CORE}, load generator on core {CLIENT_CORE}" if pinning() else "NOT pinned"
    print(f"# {where}; command: {' '.join(argv)}", flush=True)


# --- processes --------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str) -> Any:
    status, body = http_get(url)
    if status != 200:
        raise RuntimeError(f"GET {url} answered {status}: {body[:200]!r}")
    return json.loads(body)


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""
    port: int = 0
    argv: Sequence[str] = ()  # how it was started (without --port), for restart()
    env: dict[str, str] | None = None
    core: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text("utf-8", "replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def wait_port(proc: Proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", proc.port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not listen on {proc.port}:\n{proc.tail()}")


def start(name: str, argv: Sequence[str], workdir: Path, env: dict[str, str] | None = None,
          core: int | None = SERVER_CORE, port: int | None = None) -> Proc:
    port = port or free_port()
    command = [*argv, "--port", str(port)]
    if core is not None and pinning():
        command = ["taskset", "-c", str(core), *command]
    log = workdir / f"{name}.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=env or dict(os.environ), stdout=sink,
                                   stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    proc = Proc(name, process, log, f"http://127.0.0.1:{port}", port, tuple(argv), env, core)
    wait_port(proc)
    return proc


def wait_ready(proc: Proc, timeout: float = 30.0) -> None:
    """A gateway answers /readyz once its provider's discovery is loaded."""
    deadline = time.monotonic() + timeout
    while http_get(f"{proc.url}/readyz")[0] != 200:
        if time.monotonic() > deadline or proc.process.poll() is not None:
            raise RuntimeError(f"{proc.name} not ready:\n{proc.tail()}")
        time.sleep(0.05)


def _die_with_parent() -> None:
    """In the child: SIGTERM when the bench process dies, however it dies (no orphaned servers)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Stack(contextlib.ExitStack):
    """A work directory and the processes started in it, all stopped on exit (logs shown on failure)."""

    def __init__(self, keep: bool = False) -> None:
        super().__init__()
        self.workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
        self.procs: list[Proc] = []
        self.keep = keep

    def add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def provider(self) -> Proc:
        return self.add(start("provider", [PYTHON, str(BENCH / "provider.py")], self.workdir, core=CLIENT_CORE))

    def gateway(self, provider: Proc, name: str = "gateway", options: Sequence[str] = (),
                env: dict[str, str] | None = None, core: int | None = SERVER_CORE) -> Proc:
        port = free_port()
        settings = gateway_env(provider, f"http://127.0.0.1:{port}", self.workdir / f"{name}.sqlite3") | (env or {})
        proc = self.add(start(name, [PYTHON, str(BENCH / "server.py"), *options], self.workdir, settings, core, port))
        wait_ready(proc)
        return proc

    def restart(self, proc: Proc, stopped: float = 60.0, ready: bool = True) -> tuple[Proc, float, float]:
        """SIGTERM `proc`, wait until it has exited (killed after `stopped` s), start it again with the same
        command, environment (so the same history file) and port: (the new Proc, seconds to exit, seconds
        until ready again; `ready`: a gateway, so until /readyz answers)."""
        began = time.monotonic()
        proc.process.terminate()
        try:
            proc.process.wait(stopped)
        except subprocess.TimeoutExpired:
            proc.process.kill()
            proc.process.wait(5)
        exited = time.monotonic()
        again = start(proc.name, proc.argv, self.workdir, proc.env, proc.core, proc.port)
        if ready:
            wait_ready(again)
        self.procs[self.procs.index(proc)] = again
        return again, exited - began, time.monotonic() - exited

    def baseline(self) -> Proc:
        return self.add(start("baseline", [PYTHON, str(BENCH / "baseline.py")], self.workdir))

    def __exit__(self, *exc: Any) -> Any:
        if exc[0] is not None and exc[0] is not KeyboardInterrupt:
            for proc in self.procs:
                sys.stderr.write(f"---- {proc.name} ({proc.log}) ----\n{proc.tail()}\n")
        for proc in reversed(self.procs):
            proc.stop()
        result = super().__exit__(*exc)
        if not self.keep and exc[0] is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return result


def gateway_env(provider: Proc, public_url: str, history: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return env | RAISED_LIMITS | {
        "GATEWAY_PUBLIC_URL": public_url,
        "GATEWAY_SECRET_KEYS": SECRET,
        f"GATEWAY_PROVIDERS__{PROVIDER.upper()}__ISSUER": provider.url,
        f"GATEWAY_PROVIDERS__{PROVIDER.upper()}__CLIENT_ID": "gateway",
        f"GATEWAY_PROVIDERS__{PROVIDER.upper()}__CLIENT_SECRET": "bench",
        "GATEWAY_HISTORY_PATH": str(history),
        "PYTHONUNBUFFERED": "1",
    }


def provider_calls(provider: Proc) -> dict[str, int]:
    calls: dict[str, int] = get_json(f"{provider.url}/_bench/calls")
    return calls


def reset_provider(provider: Proc) -> None:
    get_json(f"{provider.url}/_bench/reset")


# --- credentials ------------------------------------------------------------------------------------

def token(user: str, nonce: str = "") -> str:
    """A token the fake provider accepts for `user` (distinct nonces: distinct tokens, same user)."""
    return f"bench.{user}.{nonce}" if nonce else f"bench.{user}"


def bearer(user: str, nonce: str = "") -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token(user, nonce)}")]


def cookie(gateway: Proc, user: str) -> list[tuple[str, str]]:
    """The gateway's own sealed token cookie for `user`, as the page's socket sends it (with Origin)."""
    return cookies(gateway, [user])[0]


def cookies(gateway: Proc, users: Sequence[str]) -> list[list[tuple[str, str]]]:
    """cookie() for many users, sealed with one jar (about 0.2 ms each)."""
    from gateway.cookies import TokenCookie, TokenSession
    from gateway.sealing import Sealer

    jar = TokenCookie(Sealer([SECRET], "token cookie"), https=False, max_age=12 * 3600)
    now = time.time()
    found = []
    for user in users:
        value, _ = jar.seal(TokenSession(PROVIDER, token(user), now + 3600, now))
        found.append([("Cookie", f"{jar.name}={value}"), ("Origin", gateway.url)])
    return found


# --- measuring --------------------------------------------------------------------------------------

@dataclass
class CpuWindow:
    """CPU used over a window by this process (the load generator) and by the servers, as % of one core."""

    servers: Sequence[Proc] = ()
    started: float = field(default_factory=time.monotonic)
    own: float = field(default_factory=lambda: _own_cpu())
    theirs: list[float] = field(default_factory=list)
    cores: list[tuple[int, int]] = field(default_factory=lambda: _core_jiffies())
    elapsed: float = 0.0
    client_pct: float = 0.0
    server_pct: list[float] = field(default_factory=list)
    core_pct: list[float] = field(default_factory=list)  # how busy each core was, whoever used it

    def __post_init__(self) -> None:
        self.theirs = [proc.cpu_seconds() for proc in self.servers]

    def stop(self) -> CpuWindow:
        self.elapsed = max(time.monotonic() - self.started, 1e-9)
        self.client_pct = 100 * (_own_cpu() - self.own) / self.elapsed
        self.server_pct = [100 * (proc.cpu_seconds() - before) / self.elapsed
                           for proc, before in zip(self.servers, self.theirs, strict=True)]
        self.core_pct = [100 * (busy - busy0) / max(total - total0, 1)
                         for (busy0, total0), (busy, total) in zip(self.cores, _core_jiffies(), strict=True)]
        return self

    def others(self) -> str:
        """Core use the benchmark's own processes do not explain (other work on the machine)."""
        if len(self.core_pct) < 2:
            return "?"
        ours = self.client_pct + sum(self.server_pct)
        return f"{max(0.0, sum(self.core_pct[:2]) - ours):.0f}%"


def _core_jiffies() -> list[tuple[int, int]]:
    """(busy, total) jiffies of each core, from /proc/stat."""
    found = []
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith("cpu") and line[3].isdigit():
                values = [int(v) for v in line.split()[1:]]
                idle = values[3] + values[4]  # idle + iowait
                found.append((sum(values[:8]) - idle, sum(values[:8])))
    return found


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[str(c) for c in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if index == 0:
            print("  ".join("-" * w for w in widths))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def py_spy() -> str | None:
    """The py-spy command, or None when it is not installed (`--profile` needs it)."""
    found = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    return found if Path(found).is_file() else None


def profile_dir(parser: argparse.ArgumentParser, directory: Path | None) -> None:
    """`--profile DIR`: checked before the run (which takes minutes), not when the first profile starts."""
    if directory is None:
        return
    if py_spy() is None:
        parser.error("--profile needs py-spy: .venv/bin/python -m pip install py-spy")
    directory.mkdir(parents=True, exist_ok=True)


class Profile:
    """py-spy sampling a server process (`--profile DIR` in the scripts): folded stacks, then a summary."""

    def __init__(self, proc: Proc, out: Path, rate: int = 250) -> None:
        spy = py_spy()
        assert spy is not None, "checked by profile_dir"
        self.out = out
        self.process = subprocess.Popen([spy, "record", "--pid", str(proc.pid), "--output", str(out),
                                         "--format", "raw", "--rate", str(rate), "--nonblocking"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)  # attached

    def stop(self, top: int = 25) -> None:
        self.process.send_signal(2)  # SIGINT: py-spy writes its file and exits
        self.process.wait(30)
        print(f"profile: {self.out}")
        for line in summarize(self.out, top):
            print(f"  {line}")


def summarize(folded: Path, top: int = 25) -> list[str]:
    """Inclusive share of samples per function (file:line dropped), from py-spy's folded output."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        for name in {frame.rsplit(":", 1)[0].replace(str(ROOT) + "/", "") for frame in stack.split(";")}:
            inclusive[name] = inclusive.get(name, 0) + samples
    ranked = sorted(inclusive.items(), key=lambda item: -item[1])[:top]
    site = str(Path(PYTHON).parent.parent)
    return [f"{100 * n / max(total, 1):5.1f}%  {name.replace(site, '.venv')}" for name, n in ranked]
