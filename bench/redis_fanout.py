"""Fan-out across two gateway instances sharing a Redis broker vs. one instance with the embedded (memory)
broker: one room, 1,000 clients (with two instances: 500 on each, the sender on the first), 200 messages
per phase, burst and paced as in `fanout` (all three servers up at once, phases taken in turns).

Both instances are pinned to the servers' core, so the two set-ups get the same CPU; Redis
(GATEWAY_BROKER_URL, default redis://127.0.0.1:6379/0) runs where the system put it, unpinned. Keys
go under a fresh prefix, deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets

from bench import common
from bench.fanout import HEADERS, Target, compare, p99
from bench.fanout import row as table_row


def delete_keys(url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


async def measure(args: argparse.Namespace, stack: common.Stack) -> int:
    provider = stack.provider()
    users = [common.bearer(f"fan{i}") for i in range(args.users)]
    prefix = f"gateway-bench-{secrets.token_hex(4)}:"
    env = {"GATEWAY_BROKER_URL": args.redis, "GATEWAY_REDIS_PREFIX": prefix}
    try:
        single = stack.gateway(provider, name="embedded")
        a = stack.gateway(provider, name="redis-a", env=env)
        b = stack.gateway(provider, name="redis-b", env=env)
        embedded = Target("1 instance, embedded broker", [single.port], "/ws/fanout", users, 3, True, [single])
        shared = Target("2 instances, Redis broker", [a.port, b.port], "/ws/fanout", users, 3, True, [a, b])
        await compare([embedded, shared], args)
    finally:
        removed = delete_keys(args.redis, prefix)

    print(f"{args.clients:,} clients in one room, {args.messages} messages per phase, {args.rounds} rounds taken in "
          f"turns (median round shown); two instances: half the clients on each, the sender on A; {removed} Redis "
          "keys removed afterwards")
    rows = [table_row(embedded.label, embedded.median(name), None) for name in ("burst", "paced")]
    rows += [table_row(shared.label, shared.median(name), embedded.median(name)) for name in ("burst", "paced")]
    common.table(rows, HEADERS)
    print("server CPU: both instances together, % of one core (they share it); others: core time used by neither "
          "server nor client (Redis, other processes, softirq)")
    rate = shared.median("burst").rate / embedded.median("burst").rate
    p99_ratio = p99(shared.median("paced")) / p99(embedded.median("paced"))
    print(f"headline: two instances with Redis / one embedded: deliveries/s = {rate:.2f}, paced p99 = {p99_ratio:.2f}×")
    return 0 if all(p.complete for t in (embedded, shared) for runs in t.phases.values() for p in runs) else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=argv[0], description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--users", type=int, default=50, help="clients share this many users' tokens")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis", default=os.environ.get("GATEWAY_BROKER_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args(argv[1:])
    args.profile = None
    common.become_load_generator()
    common.use_uvloop()
    common.header("redis", argv)
    with common.Stack() as stack:
        return asyncio.run(measure(args, stack))

