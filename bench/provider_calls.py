"""Provider calls for 1,000 concurrent handshakes, counted by the fake provider: one token (the
single-flight shares one call), 1,000 distinct tokens (one call each), then both again within the
validation cache's TTL (no call at all). Not a timing: the count is the result.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

from bench import common
from bench.wsclient import HandshakeFailed, LeanSocket, connect

ROOM_SIZE = 20  # sockets spread over rooms: a thousand users joining one room would be a presence storm


async def burst(gateway: common.Proc,
                headers: Sequence[Sequence[tuple[str, str]]]) -> tuple[int, dict[int, int], float]:
    """Open every socket at once, hold them all until the last is open, then close them."""
    refused: dict[int, int] = {}

    async def one(index: int) -> LeanSocket | None:
        try:
            return await connect("127.0.0.1", gateway.port, f"/ws/calls{index // ROOM_SIZE}", headers[index])
        except HandshakeFailed as exc:
            refused[exc.status] = refused.get(exc.status, 0) + 1
            return None

    started = time.monotonic()
    sockets = await asyncio.gather(*(one(i) for i in range(len(headers))))
    elapsed = time.monotonic() - started
    opened = [s for s in sockets if s is not None]
    await asyncio.gather(*(s.close() for s in opened))
    return len(opened), refused, elapsed


async def measure(args: argparse.Namespace, stack: common.Stack) -> int:
    provider = stack.provider()
    gateway = stack.gateway(provider, env={"GATEWAY_VALIDATION_CACHE_TTL": str(args.ttl)})
    common.reset_provider(provider)  # the start-up's discovery is not counted
    n = args.handshakes
    one_token = [common.bearer("solo")] * n
    distinct = [common.bearer(f"user{i}") for i in range(n)]
    phases = [
        (f"{n:,} concurrent, one token", one_token, 1),
        (f"{n:,} concurrent, {n:,} distinct tokens", distinct, n),
        ("again within the TTL: one token", one_token, 0),
        (f"again within the TTL: {n:,} distinct tokens", distinct, 0),
    ]
    rows = []
    counts = []
    started = time.monotonic()
    for name, headers, expected in phases:
        before = common.provider_calls(provider).get("userinfo", 0)
        ok, refused, elapsed = await burst(gateway, headers)
        calls = common.provider_calls(provider).get("userinfo", 0) - before
        counts.append(calls)
        rows.append([name, ok, ", ".join(f"{k}: {v}" for k, v in refused.items()) or "-", f"{elapsed:.2f}",
                     calls, expected, "ok" if calls == expected and ok == n else "MISMATCH"])
    within = time.monotonic() - started
    print(f"validation cache TTL {args.ttl:.0f} s; all phases within {within:.1f} s; calls counted by the fake "
          f"provider at /userinfo (discovery: {common.provider_calls(provider).get('discovery', 0)} calls)")
    common.table(rows, ["phase", "sockets open", "refused", "open s", "provider calls", "expected", ""])
    met = counts[0] == 1 and counts[1] == n and counts[2] == 0 and counts[3] == 0 and within < args.ttl
    print(f"headline: provider calls = {counts[0]:,} / {counts[1]:,} / {counts[2] + counts[3]:,} "
          f"(target 1 / {n:,} / 0): {common.verdict(met)}")
    return 0 if met else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=argv[0], description=__doc__)
    parser.add_argument("--handshakes", type=int, default=1000)
    parser.add_argument("--ttl", type=float, default=60.0, help="GATEWAY_VALIDATION_CACHE_TTL (the default)")
    args = parser.parse_args(argv[1:])
    common.become_load_generator()
    common.use_uvloop()
    common.header("provider_calls", argv)
    with common.Stack() as stack:
        return asyncio.run(measure(args, stack))

