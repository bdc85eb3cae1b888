"""1,000 clients chatting for 10 minutes (--minutes), 5 % of them reconnecting each minute: RSS at minute 1
and at the end, open descriptors and asyncio tasks each minute. Target: RSS growth < 10 %, no leak of
descriptors or tasks (per open socket they stay level).

Rooms of 50, one user and token per client (so every token is re-checked each cache TTL); every client
sends a message every 20 s (--interval): 50 messages/s, 2,500 deliveries/s. Reconnects are spread evenly:
with 1,000 clients, one every 1.2 s, each a clean close and a new handshake.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from dataclasses import dataclass, field
from functools import partial

from bench import common
from bench.wsclient import HandshakeFailed, LeanSocket, connect

ROOM = 50


@dataclass
class Tally:
    sent: int = 0
    acks: int = 0
    messages: int = 0
    errors: int = 0
    reconnects: int = 0
    dropped: int = 0  # closed by the server, or lost, without our asking
    refused: dict[int, int] = field(default_factory=dict)

    def on_message(self, socket: LeanSocket, payload: bytes) -> None:
        if payload.startswith(b'{"type":"message"'):
            self.messages += 1
        elif payload.startswith(b'{"type":"ack"'):
            self.acks += 1
        elif payload.startswith(b'{"type":"error"'):
            self.errors += 1


async def floor(gateway: common.Proc) -> tuple[int, int, int]:
    """(descriptors - sockets, tasks - 4 x sockets, provider calls in flight) at their lowest of six
    readings: what stays when transient work (a re-check, a reconnect) is not in the way."""
    readings = []
    for _ in range(6):
        stats = common.get_json(f"{gateway.url}/bench/stats")
        readings.append((stats["fds"] - stats["sockets"], stats["tasks"] - 4 * stats["sockets"],
                         stats["validating"]))
        await asyncio.sleep(0.5)
    low = min(readings, key=lambda r: (r[1], r[0]))
    return min(r[0] for r in readings), low[1], low[2]


class Clients:
    def __init__(self, gateway: common.Proc, count: int, tally: Tally) -> None:
        self.gateway = gateway
        self.count = count
        self.tally = tally
        self.sockets: list[LeanSocket | None] = [None] * count
        self.leaving: set[int] = set()
        self.closing = False
        self.reopening: set[asyncio.Future[None]] = set()

    def headers(self, index: int) -> list[tuple[str, str]]:
        return common.bearer(f"soak{index}")

    async def open(self, index: int) -> None:
        for attempt in range(5):
            try:
                socket = await connect("127.0.0.1", self.gateway.port, f"/ws/soak{index // ROOM}",
                                       self.headers(index), self.tally.on_message)
            except (HandshakeFailed, OSError, TimeoutError) as exc:
                status = getattr(exc, "status", 0)
                self.tally.refused[status] = self.tally.refused.get(status, 0) + 1
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            self.sockets[index] = socket
            socket.closed.add_done_callback(partial(self._lost, index, socket))
            return

    def _lost(self, index: int, socket: LeanSocket, _: object = None) -> None:
        if self.closing or index in self.leaving or self.sockets[index] is not socket:
            return
        self.tally.dropped += 1  # the server closed it: reconnect, as a client would
        self.sockets[index] = None
        task = asyncio.ensure_future(self.open(index))
        self.reopening.add(task)
        task.add_done_callback(self.reopening.discard)

    async def reconnect(self, index: int) -> None:
        socket = self.sockets[index]
        self.leaving.add(index)
        try:
            if socket is not None:
                await socket.close()
            self.sockets[index] = None
            await self.open(index)
        finally:
            self.leaving.discard(index)
        self.tally.reconnects += 1

    def open_count(self) -> int:
        return sum(1 for s in self.sockets if s is not None and s.open)


async def chat(clients: Clients, interval: float, stop: asyncio.Event) -> None:
    tick = 0.05
    per_tick = clients.count * tick / interval
    owed = 0.0
    order = itertools.cycle(range(clients.count))
    while not stop.is_set():
        owed += per_tick
        while owed >= 1:
            owed -= 1
            index = next(order)
            socket = clients.sockets[index]
            if socket is not None and socket.open:
                clients.tally.sent += 1
                n = clients.tally.sent
                socket.send_text(f'{{"type":"message","text":"soak {n}","client_id":"s{n}"}}')
        await asyncio.sleep(tick)


async def churn(clients: Clients, share: float, stop: asyncio.Event) -> None:
    every = 60.0 / max(1.0, share * clients.count)
    order = itertools.cycle(range(7, clients.count * 7, 7))  # spread over rooms
    while not stop.is_set():
        await asyncio.sleep(every)
        await clients.reconnect(next(order) % clients.count)


async def measure(args: argparse.Namespace, stack: common.Stack) -> int:
    provider = stack.provider()
    gateway = stack.gateway(provider)
    tally = Tally()
    clients = Clients(gateway, args.clients, tally)
    gate = asyncio.Semaphore(100)

    async def first(index: int) -> None:
        async with gate:
            await clients.open(index)

    await asyncio.gather(*(first(i) for i in range(args.clients)))
    print(f"{clients.open_count():,} clients open; chatting for {args.minutes:g} min", flush=True)
    stop = asyncio.Event()
    workers = [asyncio.ensure_future(chat(clients, args.interval, stop)),
               asyncio.ensure_future(churn(clients, args.reconnect, stop))]
    rows = []
    samples: dict[int, tuple[int, int, int]] = {}
    window = common.CpuWindow([gateway])
    started = time.monotonic()
    last = (0, 0, 0)
    minutes = max(1, round(args.minutes))
    for minute in range(1, minutes + 1):
        await asyncio.sleep(max(0.0, started + 60 * minute * args.minutes / minutes - time.monotonic()))
        rss = gateway.rss_kib()
        fds, tasks, validating = await floor(gateway)
        samples[minute] = (rss, fds, tasks)
        rows.append([minute, f"{rss / 1024:.1f}", clients.open_count(), fds, tasks, validating,
                     tally.sent - last[0], tally.messages - last[1], tally.reconnects - last[2], tally.dropped,
                     tally.errors])
        last = (tally.sent, tally.messages, tally.reconnects)
        print(f"  minute {minute}: RSS {rss / 1024:.1f} MiB, fds-sockets {fds}, tasks-4×sockets {tasks}", flush=True)
    stop.set()
    await asyncio.gather(*workers)
    window.stop()
    await asyncio.sleep(2)  # the last acks arrive
    await asyncio.sleep(max(0.0, 62 - (time.monotonic() - started) % 60))  # past the next re-check wave
    after = await floor(gateway)
    rows.append(["idle", f"{gateway.rss_kib() / 1024:.1f}", clients.open_count(), *after, 0, 0, 0, tally.dropped,
                 tally.errors])
    clients.closing = True
    await asyncio.gather(*(s.close() for s in clients.sockets if s is not None))

    print(f"{args.clients:,} clients, rooms of {ROOM}, a message every {args.interval:g} s each, "
          f"{100 * args.reconnect:g} % reconnecting per minute; server CPU {window.server_pct[0]:.0f}%, "
          f"client CPU {window.client_pct:.0f}%, others {window.others()}")
    common.table(rows, ["min", "RSS MiB", "sockets", "fds-sockets", "tasks-4×sockets", "validating", "sent",
                        "delivered", "reconnects", "dropped", "errors"])
    print("fds-sockets, tasks-4×sockets: the floor of 6 readings 0.5 s apart (re-check waves come and go: each "
          "token's cached answer lapses every 60 s, and a provider call in flight is a task and maybe a socket); "
          "validating: provider calls in flight at that floor; idle: chat stopped, after the next wave")
    print(f"sent {tally.sent:,}, acked {tally.acks:,}, delivered {tally.messages:,}; refused handshakes "
          f"{tally.refused or 0}")
    rss1, fds1, tasks1 = samples[1]
    rss_n, fds_n, tasks_n = samples[minutes]
    growth = (rss_n - rss1) / rss1
    fd_drift = min(fds_n, after[0]) - fds1
    task_drift = min(tasks_n, after[1]) - tasks1
    met = growth < 0.10 and fd_drift <= 5 and task_drift <= 20
    print(f"headline: RSS minute 1 → {minutes}: {rss1 / 1024:.1f} → {rss_n / 1024:.1f} MiB ({100 * growth:+.1f} %, "
          f"target < 10 %); descriptors beyond the sockets {fd_drift:+d}, tasks beyond 4 per socket "
          f"{task_drift:+d} (minute {minutes} or idle, vs minute 1): {common.verdict(met)}")
    return 0 if met else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=argv[0], description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=20.0, help="seconds between one client's messages")
    parser.add_argument("--reconnect", type=float, default=0.05, help="share of clients reconnecting per minute")
    args = parser.parse_args(argv[1:])
    common.become_load_generator()
    common.use_uvloop()
    common.header("soak", argv)
    with common.Stack() as stack:
        return asyncio.run(measure(args, stack))
