"""10,000 concurrent authenticated connections on one gateway process, held 60 s with pings both ways:
how many are held, how many dropped, and the server's RSS.

1,000 users with 10 sockets each (tabs), one token per user: 1,000 provider calls at the start, and
again when the cached answers lapse during the hold (GATEWAY_VALIDATION_CACHE_TTL is left at its default,
60 s, so every token is re-checked once). Rooms of 25 sockets of 25 different users.
The server pings every GATEWAY_WS_PING_INTERVAL (default 20 s); each client also pings every 20 s.
The descriptor limit is raised to the hard limit for this process and the servers it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time

from bench import common
from bench.fanout import Room

ROOM = 25


async def measure(args: argparse.Namespace, stack: common.Stack) -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.connections + 100:
        print(f"! the descriptor limit is {soft}: fewer than {args.connections:,} sockets can be opened")
    provider = stack.provider()
    gateway = stack.gateway(provider)
    common.reset_provider(provider)
    base_rss = gateway.rss_kib()
    gate = asyncio.Semaphore(200)
    rooms, joins = [], []
    for start in range(0, args.connections, ROOM):
        size = min(ROOM, args.connections - start)
        room = Room(size, 1)
        rooms.append(room)
        headers = [common.bearer(f"held{i % args.users}") for i in range(start, start + size)]
        joins.append(room.join([gateway.port], f"/ws/held{start // ROOM}", headers, 3, gate, settle=0.2))
    started = time.monotonic()
    results = await asyncio.gather(*joins, return_exceptions=True)
    ramp = time.monotonic() - started
    failed = [r for r in results if isinstance(r, BaseException)]
    sockets = [s for room in rooms for s in room.sockets]
    print(f"opened {len(sockets):,} sockets in {ramp:.1f} s ({len(failed)} rooms failed: "
          f"{', '.join(sorted({type(f).__name__ for f in failed}))})" if failed else
          f"opened {len(sockets):,} sockets in {ramp:.1f} s")
    calls_open = common.provider_calls(provider).get("userinfo", 0)

    rows = []
    pings_sent = 0
    window = common.CpuWindow([gateway])
    hold_start = time.monotonic()
    next_sample = 0.0
    per_tick = max(1, len(sockets) // 200)  # every socket pings once per 20 s: 1/200 of them per 0.1 s
    cursor = 0
    while (elapsed := time.monotonic() - hold_start) < args.hold:
        for _ in range(per_tick):
            socket = sockets[cursor % len(sockets)]
            cursor += 1
            if socket.open:
                socket.ping(b"bench")
                pings_sent += 1
        if elapsed >= next_sample:
            stats = common.get_json(f"{gateway.url}/bench/stats")
            rows.append([f"{elapsed:.0f}", sum(1 for s in sockets if s.open), stats["sockets"],
                         f"{gateway.rss_kib() / 1024:.0f}", stats["tasks"], stats["fds"],
                         common.provider_calls(provider).get("userinfo", 0) - calls_open])
            next_sample += args.sample
        await asyncio.sleep(0.1)
    window.stop()
    stats = common.get_json(f"{gateway.url}/bench/stats")
    held = sum(1 for s in sockets if s.open)
    rss = gateway.rss_kib()
    rows.append([f"{time.monotonic() - hold_start:.0f}", held, stats["sockets"], f"{rss / 1024:.0f}",
                 stats["tasks"], stats["fds"], common.provider_calls(provider).get("userinfo", 0) - calls_open])
    pongs = sum(s.pongs for s in sockets)
    codes: dict[int | None, int] = {}
    for s in sockets:
        if not s.open:
            codes[s.close_code] = codes.get(s.close_code, 0) + 1
    for room in rooms:
        await room.close()

    print(f"held {args.hold:.0f} s; server CPU {window.server_pct[0]:.0f}%, client CPU {window.client_pct:.0f}%, "
          f"others {window.others()}; client pings {pings_sent:,}, pongs {pongs:,}")
    common.table(rows, ["t s", "open (client)", "open (server)", "RSS MiB", "tasks", "fds", "provider calls"])
    dropped = args.connections - held
    print(f"dropped: {dropped:,}" + (f" (close codes {codes})" if codes else "") +
          f"; RSS {rss / 1024:.0f} MiB ({(rss - base_rss) / max(held, 1):.1f} KiB per connection over the idle server)")
    print(f"headline: {held:,} of {args.connections:,} connections held {args.hold:.0f} s, {dropped:,} dropped, "
          f"RSS {rss / 1024:.0f} MiB: {common.verdict(held == args.connections)}")
    return 0 if held == args.connections else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=argv[0], description=__doc__)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=1000, help="sockets share this many users' tokens")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between table rows")
    args = parser.parse_args(argv[1:])
    common.become_load_generator()
    common.use_uvloop()
    common.header("scale", argv)
    with common.Stack() as stack:
        return asyncio.run(measure(args, stack))

