"""Authenticated WebSocket handshakes/s through /ws/{room} with a cached token (header and cookie) vs.
unauthenticated handshakes to /bench/bare on the same server: same build, middleware and protocol.

Each handshake is a whole short-lived socket, as the client sees it: connect, 101, close. On /ws/{room}
that includes what the route does for every socket (join: welcome, history, presence; leave). Variants
run interleaved, several rounds; the table shows each variant's median round.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence

from bench import common
from bench.wsclient import HandshakeFailed, connect

PROTOCOL = [("Sec-WebSocket-Protocol", "gateway.chat.v1")]


async def hammer(port: int, path: str, headers: Sequence[tuple[str, str]], total: int,
                 concurrency: int) -> tuple[int, dict[int, int], list[float]]:
    """`total` connect+close cycles, `concurrency` at a time: (ok, refusals by status, open latencies)."""
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


async def measure(args: argparse.Namespace, stack: common.Stack) -> int:
    provider = stack.provider()
    gateway = stack.gateway(provider, options=args.server_option)
    variants = {
        "unauthenticated (/bench/bare)": ("/bench/bare", PROTOCOL),
        "bearer, auth only (/bench/auth/bench)": ("/bench/auth/bench", [*common.bearer("alice"), *PROTOCOL]),
        "bearer header (/ws/bench)": ("/ws/bench", [*common.bearer("alice"), *PROTOCOL]),
        "token cookie (/ws/bench)": ("/ws/bench", [*common.cookie(gateway, "alice"), *PROTOCOL]),
    }
    for path, headers in variants.values():  # warm up: caches filled, code paths hot; not counted
        await hammer(gateway.port, path, headers, args.warmup, args.concurrency)
    calls_before = common.provider_calls(provider).get("userinfo", 0)
    rounds: dict[str, list[tuple[float, float, float, float, float, str]]] = {name: [] for name in variants}
    problems = []
    names = list(variants)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:  # rotated: no variant always first
            path, headers = variants[name]
            window = common.CpuWindow([gateway])
            ok, refused, latencies = await hammer(gateway.port, path, headers, args.handshakes, args.concurrency)
            window.stop()
            if refused or ok != args.handshakes:
                problems.append(f"{name}: {ok} ok, refused {refused}")
            rounds[name].append((ok / window.elapsed, 1000 * common.percentile(latencies, 50),
                                 1000 * common.percentile(latencies, 99), window.server_pct[0], window.client_pct,
                                 window.others()))
    calls = common.provider_calls(provider).get("userinfo", 0) - calls_before

    rows = []
    medians = {}
    for name, results in rounds.items():
        rate = statistics.median(r[0] for r in results)
        median = min(results, key=lambda r: abs(r[0] - rate))
        medians[name] = rate
        rows.append([name, rate, f"{min(r[0] for r in results):,.0f}–{max(r[0] for r in results):,.0f}",
                     median[1], median[2], f"{median[3]:.0f}%", f"{median[4]:.0f}%", median[5]])
    bare = medians["unauthenticated (/bench/bare)"]
    for row, name in zip(rows, rounds, strict=True):
        row.insert(2, medians[name] / bare)
    print(f"{args.rounds} rounds × {args.handshakes:,} handshakes per variant, concurrency {args.concurrency}; "
          f"provider calls during the rounds: {calls} (cached token)")
    common.table(rows, ["variant", "handshakes/s", "× bare", "range", "p50 ms", "p99 ms", "server CPU",
                        "client CPU", "others"])
    print("server/client CPU: % of one core; others: core time used by neither (other processes, softirq)")
    for problem in problems:
        print(f"! {problem}")
    header_ratio = medians["bearer header (/ws/bench)"] / bare
    cookie_ratio = medians["token cookie (/ws/bench)"] / bare
    print(f"headline: authenticated/unauthenticated handshakes/s = {header_ratio:.2f} (header), "
          f"{cookie_ratio:.2f} (cookie); target ≥ 0.90: {common.verdict(min(header_ratio, cookie_ratio) >= 0.9)}")
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=argv[0], description=__doc__)
    parser.add_argument("--handshakes", type=int, default=2000, help="per variant and round")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--server-option", action="append", default=[],
                        help="passed to bench/server.py, e.g. --server-option=--ws=wsproto")
    args = parser.parse_args(argv[1:])
    common.become_load_generator()
    common.use_uvloop()
    common.header("handshake", argv + args.server_option)
    with common.Stack() as stack:
        return asyncio.run(measure(args, stack))

