"""Two gateway instances over a three-shard Redis Cluster vs. two over one Redis, in the same run:
- fan-out: one room, half the clients on each instance, bursts and paced messages (as `fanout`);
- message rate: many rooms (default 30, so spread over the shards), a few clients each, every room's
  sender bursting at once: messages stored and delivered per second across all rooms.

Both Redis set-ups are started here (Debian's redis-server, free loopback ports, temporary directories, no
persistence, the cluster without replicas: the same work per message on both sides) and run unpinned, where
the system puts them; the gateways share the servers' core.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench import common
from bench.fanout import HEADERS, Room, Target, burst, compare, p99
from bench.fanout import row as table_row


async def message_rate(label: str, ports: list[int], args: argparse.Namespace,
                       servers: list[common.Proc]) -> list[object]:
    rooms = [Room(args.per_room, args.room_messages * args.rounds) for _ in range(args.rooms)]
    gate = asyncio.Semaphore(50)
    for index, room in enumerate(rooms):
        # Users of their own per room and set-up: a client_id is (user, client_id) with one Redis, so the
        # senders must not reuse the fan-out's ids ("b0", "b1", …) or each other's.
        users = [common.bearer(f"rate-{label.split()[0]}-{index}-{k}") for k in range(args.per_room)]
        await room.join(ports, f"/ws/{label.split()[0]}-rate-{index}", users, 3, gate, settle=0.2)
    rates, windows = [], []
    for round_ in range(args.rounds):
        first = round_ * args.room_messages
        window = common.CpuWindow(servers)
        phases = await asyncio.gather(*(burst(room, first, args.room_messages, True, servers) for room in rooms))
        window.stop()
        numbers = range(first, first + args.room_messages)
        began = min(room.sent[first] for room in rooms)
        ended = max(room.last[n] for room in rooms for n in numbers)
        delivered = sum(room.count[n] for room in rooms for n in numbers)
        rates.append((delivered / ((ended - began) / 1e9), args.rooms * args.room_messages / ((ended - began) / 1e9),
                      all(p.complete for p in phases)))
        windows.append(window)
        for room in rooms:
            await room.quiet(settle=0.2)
    for room in rooms:
        await room.close()
    middle = sorted(range(len(rates)), key=lambda i: rates[i][0])[(len(rates) - 1) // 2]
    deliveries, messages, complete = rates[middle]
    window = windows[middle]
    return [label, f"{args.rooms} rooms", deliveries, messages, f"{sum(window.server_pct):.0f}%",
            f"{window.client_pct:.0f}%", window.others(), "" if complete else "INCOMPLETE"]


async def measure(args: argparse.Namespace, stack: common.Stack, single_url: str, cluster_url: str,
                  shards: dict[int, tuple[int, int]]) -> int:
    provider = stack.provider()
    users = [common.bearer(f"fan{i}") for i in range(args.users)]
    one = [stack.gateway(provider, name=f"one-{n}", env={"GATEWAY_BROKER_URL": single_url}) for n in "ab"]
    many = [stack.gateway(provider, name=f"cluster-{n}", env={"GATEWAY_BROKER_URL": cluster_url}) for n in "ab"]
    single = Target("one Redis", [p.port for p in one], "/ws/fanout-one", users, 3, True, one)
    sharded = Target("3-shard cluster", [p.port for p in many], "/ws/fanout-cluster", users, 3, True, many)
    await compare([single, sharded], args)
    rows = [table_row(single.label, single.median(name), None) for name in ("burst", "paced")]
    rows += [table_row(sharded.label, sharded.median(name), single.median(name)) for name in ("burst", "paced")]
    print(f"fan-out: {args.clients:,} clients in one room, half on each of two instances, {args.messages} messages "
          f"per phase, {args.rounds} rounds in turns (median shown)")
    common.table(rows, HEADERS)
    rate_rows = [await message_rate("one Redis", [p.port for p in one], args, one),
                 await message_rate("3-shard cluster", [p.port for p in many], args, many)]
    print(f"\nmessage rate: {args.rooms} rooms × {args.per_room} clients (half on each instance), every room's "
          f"sender bursting {args.room_messages} at once, {args.rounds} rounds (median shown); the cluster's "
          f"slots: {sorted(shards.values())}")
    common.table(rate_rows, ["set-up", "rooms", "deliveries/s", "messages/s", "server CPU", "client CPU", "others",
                             ""])
    print("server CPU: both instances together, % of one core (they share it); others: core time used by neither "
          "(Redis, other processes, softirq)")
    fan = sharded.median("burst").rate / single.median("burst").rate
    paced = p99(sharded.median("paced")) / p99(single.median("paced"))
    rate = float(rate_rows[1][3]) / float(rate_rows[0][3])  # type: ignore[arg-type]
    print(f"headline: cluster / one Redis: fan-out deliveries/s = {fan:.2f}, paced p99 = {paced:.2f}×, "
          f"message rate over {args.rooms} rooms = {rate:.2f}")
    done = all(p.complete for t in (single, sharded) for runs in t.phases.values() for p in runs)
    return 0 if done and all(r[-1] == "" for r in rate_rows) else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=argv[0], description=__doc__)
    parser.add_argument("--clients", type=int, default=500, help="fan-out: clients in the one room")
    parser.add_argument("--messages", type=int, default=100, help="fan-out: messages per phase")
    parser.add_argument("--rooms", type=int, default=30)
    parser.add_argument("--per-room", type=int, default=10)
    parser.add_argument("--room-messages", type=int, default=50, help="message rate: messages per room and round")
    parser.add_argument("--users", type=int, default=50, help="clients share this many users' tokens")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv[1:])
    args.profile = None
    common.become_load_generator()
    common.use_uvloop()
    common.header("cluster", argv)
    from tests.redis_support import redis_server
    from tests.redis_topologies import cluster_set

    started = time.monotonic()
    with redis_server() as (single_url, _process, _argv), cluster_set(replicas=0) as cluster:
        print(f"Redis: one redis-server at {single_url}; a cluster of 3 primaries ({time.monotonic() - started:.1f} s "
              "to start both)")
        with common.Stack() as stack:
            return asyncio.run(measure(args, stack, single_url, cluster.url, cluster.primaries()))
