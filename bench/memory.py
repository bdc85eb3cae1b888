"""RSS per idle authenticated connection at 1,000 and 5,000 connections, with permessage-deflate off (the
gateway's setting) and on (uvicorn's default, for comparison; the clients offer it as browsers do).

Each socket has its own user and token (so each brings its validation-cache entry), rooms of 50. RSS is
VmRSS from /proc after a warm-up of 200 sockets opened and closed; per connection = growth / count.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench import common
from bench.fanout import Room

DEFLATE = [("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
ROOM = 50


async def open_sockets(gateway: common.Proc, first: int, count: int, deflate: bool) -> list[Room]:
    gate = asyncio.Semaphore(100)
    rooms, joins = [], []
    for start in range(first, first + count, ROOM):
        size = min(ROOM, first + count - start)
        headers = [[*common.bearer(f"idle{i}"), *(DEFLATE if deflate else [])] for i in range(start, start + size)]
        room = Room(size, 1)
        rooms.append(room)
        joins.append(room.join([gateway.port], f"/ws/idle{start // ROOM}", headers, 3, gate, settle=0.1))
    await asyncio.gather(*joins)
    await asyncio.sleep(1.0)  # the last presence storms drain
    return rooms


async def settled_rss(gateway: common.Proc) -> int:
    """RSS once it stops moving (the event loop has finished the last joins)."""
    last = gateway.rss_kib()
    for _ in range(20):
        await asyncio.sleep(0.25)
        now = gateway.rss_kib()
        if abs(now - last) < 64:
            return now
        last = now
    return last


async def one_config(stack: common.Stack, provider: common.Proc, deflate: bool,
                     counts: list[int]) -> list[list[object]]:
    gateway = stack.gateway(provider, name=f"gateway-deflate-{'on' if deflate else 'off'}",
                            options=["--deflate"] if deflate else [])
    for room in await open_sockets(gateway, 10_000_000, 200, deflate):  # warm-up: not counted
        await room.close()
    await asyncio.sleep(1.0)
    base = await settled_rss(gateway)
    rows = []
    rooms: list[Room] = []
    opened = 0
    for count in counts:
        started = time.monotonic()
        rooms += await open_sockets(gateway, opened, count - opened, deflate)
        opened = count
        rss = await settled_rss(gateway)
        stats = common.get_json(f"{gateway.url}/bench/stats")
        per = (rss - base) / count
        rows.append(["on" if deflate else "off", count, stats["sockets"], f"{base / 1024:.0f}", f"{rss / 1024:.0f}",
                     f"{per:.1f}", stats["tasks"], stats["fds"], f"{time.monotonic() - started:.1f}"])
    for room in rooms:
        await room.close()
    gateway.stop()
    return rows


async def measure(args: argparse.Namespace, stack: common.Stack) -> int:
    provider = stack.provider()
    rows = await one_config(stack, provider, False, args.counts)
    rows += await one_config(stack, provider, True, args.counts)
    print(f"idle authenticated sockets, one user and token each, rooms of {ROOM}; RSS after a 200-socket warm-up")
    common.table(rows, ["deflate", "connections", "server sees", "base MiB", "RSS MiB", "KiB/conn", "tasks",
                        "fds", "open s"])
    off = [float(str(r[5])) for r in rows if r[0] == "off"]
    on = [float(str(r[5])) for r in rows if r[0] == "on"]
    print(f"headline: RSS per idle connection = {' / '.join(f'{v:.1f}' for v in off)} KiB at "
          f"{' / '.join(f'{c:,}' for c in args.counts)} (compression off; on: {' / '.join(f'{v:.1f}' for v in on)}"
          f" KiB); target ≤ 50 KiB: {common.verdict(max(off) <= 50)}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=argv[0], description=__doc__)
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 5000])
    args = parser.parse_args(argv[1:])
    common.become_load_generator()
    common.use_uvloop()
    common.header("memory", argv)
    with common.Stack() as stack:
        return asyncio.run(measure(args, stack))

