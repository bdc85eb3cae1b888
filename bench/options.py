"""The server options, measured rather than assumed: event loop (uvloop vs. asyncio), HTTP parser
(httptools vs. h11), WebSocket implementation (the gateway's websockets-sansio subclass vs. uvicorn's
wsproto and plain websockets-sansio), and orjson for the chat frames. Each configuration gets a fresh
server, all up at once and measured in turns: authenticated handshakes/s (bearer, /ws/{room}) and a
fan-out burst (1,000 clients per server, 200 messages), compared with the default.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics

from bench import common
from bench.fanout import Target, compare, p99
from bench.handshake import PROTOCOL, hammer

SANSIO = "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol"
CONFIGS: list[tuple[str, list[str], str | None]] = [  # name, bench/server.py options, module it needs
    ("default: uvloop, httptools, gateway sansio", [], None),
    ("loop asyncio", ["--loop", "asyncio"], None),
    ("http h11", ["--http", "h11"], "h11"),
    ("ws wsproto", ["--ws", "wsproto"], "wsproto"),
    ("ws websockets-sansio (uvicorn's own)", ["--ws", SANSIO], None),
    ("orjson frames", ["--orjson"], "orjson"),
]


async def measure(args: argparse.Namespace, stack: common.Stack) -> int:
    provider = stack.provider()
    configs = []
    for name, options, needs in CONFIGS:
        if needs and importlib.util.find_spec(needs) is None:
            print(f"! {name}: {needs} is not installed; skipped")
            continue
        label = name.split(":")[0].replace(" ", "-").replace("(", "").replace(")", "").replace("'", "")
        configs.append((name, stack.gateway(provider, name=label, options=options)))
    headers = [*common.bearer("alice"), *PROTOCOL]
    rates: dict[str, list[float]] = {name: [] for name, _ in configs}
    for _, gateway in configs:
        await hammer(gateway.port, "/ws/bench", headers, 300, args.concurrency)  # warm-up
    for round_ in range(args.rounds):  # in turns, rotated, so that other load on the machine falls on all alike
        for name, gateway in configs[round_ % len(configs):] + configs[:round_ % len(configs)]:
            window = common.CpuWindow([gateway])
            ok, _, _ = await hammer(gateway.port, "/ws/bench", headers, args.handshakes, args.concurrency)
            rates[name].append(ok / window.stop().elapsed)
    users = [common.bearer(f"fan{i}") for i in range(50)]
    targets = [Target(name, [gateway.port], "/ws/options", users, 3, True, [gateway]) for name, gateway in configs]
    await compare(targets, args, with_paced=False)

    default_rate = statistics.median(rates[configs[0][0]])
    default_burst = targets[0].median("burst")
    rows = []
    for (name, _), target in zip(configs, targets, strict=True):
        rate, burst = statistics.median(rates[name]), target.median("burst")
        rows.append([name, rate, f"{rate / default_rate:.2f}", burst.rate, f"{burst.rate / default_burst.rate:.2f}",
                     p99(burst), f"{burst.window.client_pct:.0f}%", burst.window.others()])
    print(f"handshakes: median of {args.rounds} × {args.handshakes:,} (bearer, /ws/{{room}}, concurrency "
          f"{args.concurrency}); fan-out: median of {args.rounds} bursts of {args.messages} messages to "
          f"{args.clients:,} clients; configurations taken in turns")
    common.table(rows, ["configuration", "handshakes/s", "×", "deliveries/s", "×", "p99 ms", "client CPU", "others"])
    best = max(rows, key=lambda r: float(str(r[4])))
    print(f"headline: fastest fan-out: {best[0]} ({best[4]}× the default); handshakes {rows[0][1]:,.0f}/s, "
          f"deliveries {rows[0][3]:,.0f}/s with the default")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=argv[0], description=__doc__)
    parser.add_argument("--handshakes", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args(argv[1:])
    args.profile = None
    common.become_load_generator()
    common.use_uvloop()
    common.header("options", argv)
    with common.Stack() as stack:
        return asyncio.run(measure(args, stack))
