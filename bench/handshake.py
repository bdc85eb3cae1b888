"""Short sessions on /ws/{room} (cookie and header token, cached) vs. the bare endpoint on the same server
(WS /bench/storm-bare: accept, one small welcome-like frame, wait for the close): same build, middleware
and protocol class. --concurrency sessions at a time (30, as issue 11 measures), users u0..u<N-1> in
rotation (one distinct user per concurrent session, so joins and leaves are real presence changes), every
token in the validation cache before the rounds (the warm-up opens one session per user and variant).

- open → first frame: connect, 101, the first frame (the welcome); then the client sends its close frame
  and closes its end without waiting (the server's close work overlaps the next sessions).
- whole session: connect, 101, first frame, the client's close, then up to --close-timeout s (2) for the
  server's close frame. Unclean: no close frame from the server in that time (the client then sees 1006),
  or a code other than 1000. Measured with two clients:
  - lean: bench/wsclient.py, which reads every frame as it arrives;
  - websockets: `websockets.asyncio.client.connect(close_timeout=2, compression=None)`, default max_queue
    (16), as a typical application would use it: it stops reading when 16 frames wait unread, so join and
    leave frames arriving after the welcome can hide the server's close frame from it.
- auth only (/bench/auth/bench): /ws/{room}'s dependencies (room, credentials, cache) and then as bare:
  splits the cost between authentication and the chat session.

Variants run in turns, several rounds (rotated, so other load on the machine falls on all alike); the
table shows each variant's median round, the unclean closes of all rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench import common
from bench.wsclient import HandshakeFailed, LeanSocket, connect

PROTOCOL = [("Sec-WebSocket-Protocol", "gateway.chat.v1")]
HOST = "127.0.0.1"
# Each path with the page's query (presence batches as changes, docs/protocol.md); the bare endpoint
# ignores it, sent anyway so that every handshake is the same size.
QUERY = "?presence=changes"
BARE = "/bench/storm-bare" + QUERY
Headers = Sequence[tuple[str, str]]


async def hammer(port: int, path: str, headers: Sequence[tuple[str, str]], total: int,
                 concurrency: int) -> tuple[int, dict[int, int], list[float]]:
    """`total` connect+close cycles, `concurrency` at a time: (ok, refusals by status, open latencies).
    (bench/options.py's handshakes.)"""
    remaining = total
    ok = 0
    refused: dict[int, int] = {}
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal remaining, ok
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                socket = await connect("127.0.0.1", port, path, headers)
            except HandshakeFailed as exc:
                refused[exc.status] = refused.get(exc.status, 0) + 1
                continue
            latencies.append(time.perf_counter() - started)
            await socket.close()
            ok += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, refused, latencies


# --- one session -----------------------------------------------------------------------------------------

class Refused(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


async def lean_session(port: int, path: str, headers: Headers, whole: bool, close_timeout: float) -> tuple[float, str]:
    """(seconds from connect to the first frame, "" for a clean close or why it was not)."""
    first: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_message(socket: LeanSocket, payload: bytes) -> None:
        if not first.done():
            first.set_result(None)

    started = time.perf_counter()
    try:
        socket = await connect(HOST, port, path, headers, on_message, within=10)
    except HandshakeFailed as exc:
        raise Refused(str(exc.status)) from None
    except (OSError, TimeoutError) as exc:
        raise Refused(type(exc).__name__) from None
    try:
        await asyncio.wait_for(first, 10)
    except TimeoutError:
        socket.abort()
        raise Refused("no first frame in 10 s") from None
    latency = time.perf_counter() - started
    socket.start_close()
    if not whole:
        if socket.transport is not None:
            socket.transport.close()
        return latency, ""
    try:
        code = await asyncio.wait_for(asyncio.shield(socket.closed), close_timeout)
    except TimeoutError:
        socket.abort()
        return latency, f"no close frame in {close_timeout:g} s"
    if code is None:
        return latency, "connection dropped without a close frame"
    return latency, "" if code == 1000 else f"close code {code}"


async def websockets_session(port: int, path: str, headers: Headers, whole: bool,
                             close_timeout: float) -> tuple[float, str]:
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import InvalidStatus, WebSocketException

    origin = next((value for name, value in headers if name == "Origin"), None)
    extra = [(name, value) for name, value in headers if name not in ("Origin", "Sec-WebSocket-Protocol")]
    started = time.perf_counter()
    try:
        ws = await ws_connect(f"ws://{HOST}:{port}{path}", origin=origin, additional_headers=extra,
                              subprotocols=["gateway.chat.v1"], compression=None, close_timeout=close_timeout,
                              proxy=None, open_timeout=10)
    except InvalidStatus as exc:
        raise Refused(str(exc.response.status_code)) from None
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise Refused(type(exc).__name__) from None
    try:
        await asyncio.wait_for(ws.recv(), 10)
    except (TimeoutError, WebSocketException):
        await ws.close()
        raise Refused("no first frame in 10 s") from None
    latency = time.perf_counter() - started
    await ws.close()  # sends the close frame, waits up to close_timeout for the server's
    received = ws.protocol.close_rcvd
    if received is None:
        return latency, f"no close frame in {close_timeout:g} s (1006)"
    return latency, "" if received.code == 1000 else f"close code {received.code}"


# --- variants and rounds ---------------------------------------------------------------------------------

@dataclass
class Variant:
    name: str
    kind: str  # "open" or "whole"
    client: str  # "lean" or "websockets"
    path: str
    headers: Callable[[], Headers]
    baseline: Variant | None = None  # the bare variant it is compared with (None: a baseline itself)
    rounds: list[tuple[float, float, float, float, float, str]] = field(default_factory=list)
    unclean: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    sessions: int = 0

    def median(self) -> float:
        return statistics.median(r[0] for r in self.rounds) if self.rounds else 0.0

    def ratio(self) -> float:
        base = self.baseline.median() if self.baseline is not None else self.median()
        return self.median() / base if base else float("nan")


async def run(variant: Variant, port: int, total: int, concurrency: int,
              close_timeout: float) -> tuple[int, list[float], Counter[str], Counter[str]]:
    session = lean_session if variant.client == "lean" else websockets_session
    remaining = total
    latencies: list[float] = []
    unclean: Counter[str] = Counter()
    refused: Counter[str] = Counter()

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                latency, outcome = await session(port, variant.path, variant.headers(), variant.kind == "whole",
                                                 close_timeout)
            except Refused as exc:
                refused[exc.why] += 1
                continue
            latencies.append(latency)
            if outcome:
                unclean[outcome] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), latencies, unclean, refused


async def quiet(gateway: common.Proc, within: float = 5.0) -> None:
    """Until the hub holds no socket (the previous variant's closes are done), at most `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (await asyncio.to_thread(common.get_json, f"{gateway.url}/bench/stats"))["sockets"] == 0:
            return
        await asyncio.sleep(0.05)


async def measure(args: argparse.Namespace, stack: common.Stack) -> int:
    provider = stack.provider()
    gateway = stack.gateway(provider, options=args.server_option)
    users = [f"u{i}" for i in range(args.users)]
    cookies = common.cookies(gateway, users)
    bearers = [common.bearer(user) for user in users]
    turn = itertools.count()

    def cookie() -> Headers:
        return [*cookies[next(turn) % len(users)], *PROTOCOL]

    def header() -> Headers:
        return [*bearers[next(turn) % len(users)], *PROTOCOL]

    def nothing() -> Headers:
        return PROTOCOL

    bare_open = Variant("bare (/bench/storm-bare)", "open", "lean", BARE, nothing)
    auth_only = Variant("auth only, header (/bench/auth/bench)", "open", "lean", "/bench/auth/bench" + QUERY, header,
                        bare_open)
    open_header = Variant("header (/ws/bench)", "open", "lean", "/ws/bench" + QUERY, header, bare_open)
    open_cookie = Variant("cookie (/ws/bench)", "open", "lean", "/ws/bench" + QUERY, cookie, bare_open)
    variants = [bare_open, auth_only, open_header, open_cookie]
    wholes = []
    for client in ("lean", "websockets"):
        if args.client in (client, "both"):
            base = Variant("bare (/bench/storm-bare)", "whole", client, BARE, nothing)
            wholes.append(Variant("cookie (/ws/bench)", "whole", client, "/ws/bench" + QUERY, cookie, base))
            variants += [base, wholes[-1]]
    started = time.monotonic()
    for variant in variants:  # warm-up: every user's token in the cache, code paths hot; not counted
        await run(variant, gateway.port, max(args.warmup, args.users), args.concurrency, args.close_timeout)
        await quiet(gateway)
    calls_before = common.provider_calls(provider).get("userinfo", 0)
    for round_ in range(args.rounds):
        shift = round_ % len(variants)
        for variant in variants[shift:] + variants[:shift]:  # rotated: no variant always first
            window = common.CpuWindow([gateway])
            ok, latencies, unclean, refused = await run(variant, gateway.port, args.sessions, args.concurrency,
                                                        args.close_timeout)
            window.stop()
            await quiet(gateway)
            variant.sessions += args.sessions
            variant.unclean += unclean
            variant.refused += refused
            variant.rounds.append((ok / window.elapsed, 1000 * common.percentile(latencies, 50),
                                   1000 * common.percentile(latencies, 99), window.server_pct[0], window.client_pct,
                                   window.others()))
    calls = common.provider_calls(provider).get("userinfo", 0) - calls_before

    rows = []
    for variant in variants:
        rate = variant.median()
        median = min(variant.rounds, key=lambda r: abs(r[0] - rate))
        unclean = sum(variant.unclean.values())
        rows.append([variant.kind.replace("open", "open → first frame").replace("whole", "whole session"),
                     variant.client, variant.name, rate, f"{variant.ratio():.2f}",
                     f"{min(r[0] for r in variant.rounds):,.0f}–{max(r[0] for r in variant.rounds):,.0f}",
                     median[1], median[2],
                     f"{unclean} of {variant.sessions}" if variant.kind == "whole" else "-",
                     f"{median[3]:.0f}%", f"{median[4]:.0f}%", median[5]])
    print(f"{args.rounds} rounds × {args.sessions:,} sessions per variant, {args.concurrency} at a time, users "
          f"u0..u{args.users - 1} in turn; provider calls during the rounds: {calls} (cached tokens); "
          f"{time.monotonic() - started:.0f} s")
    common.table(rows, ["what", "client", "variant", "sessions/s", "× bare", "range", "open→1st p50 ms", "p99 ms",
                        "unclean closes", "server CPU", "client CPU", "others"])
    print("server/client CPU: % of one core; others: core time used by neither (other processes, softirq); "
          "unclean: no close frame from the server within "
          f"{args.close_timeout:g} s of the client's, or a code other than 1000")
    problems = 0
    for variant in variants:
        for why, n in variant.unclean.most_common():
            print(f"! {variant.kind}, {variant.client}, {variant.name}: {n} × {why}")
        for why, n in variant.refused.most_common():
            problems += n
            print(f"! {variant.kind}, {variant.client}, {variant.name}: refused or failed: {n} × {why}")

    unclean_parts = [f"{sum(v.unclean.values())} of {v.sessions} ({v.client} client)" for v in wholes]
    unclean_ok = all(sum(v.unclean.values()) == 0 for v in wholes)
    cookie_ratio, header_ratio = open_cookie.ratio(), open_header.ratio()
    whole_ratio = wholes[0].ratio()
    print(f"headline: unclean closes {', '.join(unclean_parts)} (target 0): {common.verdict(unclean_ok)}; "
          f"open → welcome / bare: cookie {cookie_ratio:.2f}, header {header_ratio:.2f} (target ≥ 0.9): "
          f"{common.verdict(min(cookie_ratio, header_ratio) >= 0.9)}; whole sessions / bare: {whole_ratio:.2f} "
          f"({wholes[0].client} client; target ≥ 0.8): {common.verdict(whole_ratio >= 0.8)}")
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=argv[0], description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=300, help="per variant and round")
    parser.add_argument("--concurrency", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=300, help="distinct users, in turn")
    parser.add_argument("--warmup", type=int, default=300, help="sessions per variant before the rounds")
    parser.add_argument("--close-timeout", type=float, default=2.0, help="s to wait for the server's close frame")
    parser.add_argument("--client", choices=("lean", "websockets", "both"), default="both",
                        help="whole sessions with the lean client, the websockets client, or both (default)")
    parser.add_argument("--server-option", action="append", default=[],
                        help="passed to bench/server.py, e.g. --server-option=--ws=wsproto")
    args = parser.parse_args(argv[1:])
    common.become_load_generator()
    common.use_uvloop()
    common.header("handshake", argv + args.server_option)
    with common.Stack() as stack:
        return asyncio.run(measure(args, stack))
