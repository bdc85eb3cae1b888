"""One user's resume storm against another user's latency (issue 12, item 1).

A room holds 3,000 messages of 2,000 characters. A victim in another room sends `ping` every 10 ms and
times each `pong`, alone and while three sockets of one attacker each send `resume 0-0` every 50 ms and
read what comes; the two phases alternate `--rounds` times (so a noisy neighbour on the machine hits both
alike). Prints the victim's p50/p99 over all pings of each kind of phase, what the attacker received, and
the server's RSS. The gateway runs with its default resume limits unless `--setting` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from bench import common
from bench.wsclient import LeanSocket, connect

PROTOCOL = [("Sec-WebSocket-Protocol", "gateway.chat.v1")]


async def victim(gateway: common.Proc, seconds: float) -> list[float]:
    """Seconds from each ping to its pong, for `seconds`."""
    waiting: asyncio.Future[float] | None = None

    def on(_: LeanSocket, payload: bytes) -> None:
        if b'"pong"' in payload and waiting is not None and not waiting.done():
            waiting.set_result(time.perf_counter())

    socket = await connect("127.0.0.1", gateway.port, "/ws/other", [*common.bearer("victim"), *PROTOCOL],
                           on_message=on)
    await asyncio.sleep(0.3)
    latencies = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        waiting = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        socket.send_text('{"type":"ping"}')
        latencies.append(await asyncio.wait_for(waiting, 10) - started)
        await asyncio.sleep(0.01)
    socket.abort()
    return latencies


def summary(latencies: list[float]) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, pings)."""
    return 1000 * statistics.median(latencies), 1000 * common.percentile(latencies, 99), len(latencies)


async def measure(args: argparse.Namespace, stack: common.Stack) -> int:
    provider = stack.provider()
    gateway = stack.gateway(provider, env=dict(setting.split("=", 1) for setting in args.setting))
    acked = 0
    filled = asyncio.get_running_loop().create_future()

    def on_writer(_: LeanSocket, payload: bytes) -> None:
        nonlocal acked
        acked += payload.count(b'"type":"ack"')
        if acked >= args.messages and not filled.done():
            filled.set_result(None)

    writer = await connect("127.0.0.1", gateway.port, "/ws/big", [*common.bearer("writer"), *PROTOCOL],
                           on_message=on_writer)
    for i in range(args.messages):
        writer.send_text(json.dumps({"type": "message", "text": "x" * 2000, "client_id": f"c{i}"}))
    await asyncio.wait_for(filled, 600)
    writer.abort()
    received = 0

    def on_attacker(_: LeanSocket, payload: bytes) -> None:
        nonlocal received
        received += len(payload)

    attackers = [await connect("127.0.0.1", gateway.port, "/ws/big", [*common.bearer("mallory"), *PROTOCOL],
                               on_message=on_attacker) for _ in range(3)]
    rss_before = common.get_json(f"{gateway.url}/bench/stats")["rss_kib"] / 1024

    async def storm() -> None:
        while True:
            for socket in attackers:
                socket.send_text('{"type":"resume","after":"0-0"}')
            await asyncio.sleep(0.05)

    quiet: list[float] = []
    stormy: list[float] = []
    for _ in range(args.rounds):
        quiet += await victim(gateway, args.seconds / args.rounds)
        task = asyncio.create_task(storm())
        stormy += await victim(gateway, args.seconds / args.rounds)
        task.cancel()
    rss_after = common.get_json(f"{gateway.url}/bench/stats")["rss_kib"] / 1024
    alone, during = summary(quiet), summary(stormy)
    common.table([["alone", *alone], ["during the storm", *during]], ["victim", "p50 ms", "p99 ms", "pings"])
    print(f"attacker received {received / 1e6:.1f} MB in {args.seconds:g} s of storm; server RSS "
          f"{rss_before:.1f} → {rss_after:.1f} MiB")
    ratio = during[1] / alone[1]
    print(f"headline: victim p99 during another user's resume storm = {ratio:.2f}× alone (target ≤ 1.2): "
          f"{common.verdict(ratio <= 1.2)}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=argv[0], description=__doc__)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=30.0, help="of each kind of phase, in all")
    parser.add_argument("--rounds", type=int, default=10, help="alone/storm phase pairs")
    parser.add_argument("--setting", action="append", default=[], metavar="GATEWAY_X=VALUE",
                        help="a gateway setting for this run (repeatable), e.g. GATEWAY_RESUME_BURST=3")
    args = parser.parse_args(argv[1:])
    common.become_load_generator()
    common.use_uvloop()
    common.header("resume", argv)
    with common.Stack() as stack:
        return asyncio.run(measure(args, stack))
