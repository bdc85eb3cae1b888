"""One room, 1,000 clients in the load generator's process, 200 messages: deliveries/s and latency (send →
last receipt) of the gateway vs. a baseline server on the raw websockets library using broadcast().

Two phases of 200 messages each, on each server (both servers up and their clients connected at once; the
phases taken in turns, three rounds, the median round reported):
- burst: one client sends all 200 back to back; deliveries/s = 200 x 1,000 / (first send → last receipt).
- paced: one message at a time, the next once the previous reached every client; latency without queueing.
Every message reaches all 1,000 clients (the sender too). The gateway stores each message (SQLite, fsync)
before it fans out; the baseline does not store anything. Gateway clients are 50 users x 20 sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import common
from bench.wsclient import LeanSocket, connect

MARK = b"m#"
_rooms = itertools.count()


@dataclass
class Phase:
    name: str
    deliveries: int
    elapsed: float
    latencies_ms: list[float]
    complete: bool
    window: common.CpuWindow

    @property
    def rate(self) -> float:
        return self.deliveries / self.elapsed if self.elapsed else 0.0


@dataclass
class Room:
    """Receivers of one room: for each message number, how many sockets got it and when the last did."""

    size: int
    slots: int
    count: list[int] = field(default_factory=list)
    last: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    sockets: list[LeanSocket] = field(default_factory=list)
    frames: int = 0
    closed_early: int = 0
    waiters: dict[int, asyncio.Event] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.count, self.last, self.sent = [0] * self.slots, [0] * self.slots, [0] * self.slots

    def on_message(self, socket: LeanSocket, payload: bytes) -> None:
        self.frames += 1
        start = payload.find(MARK)
        if start < 0 or not payload.startswith(b'{"type":"message"'):
            return
        end = payload.find(b"#", start + 2)
        number = int(payload[start + 2:end])
        self.count[number] += 1
        self.last[number] = time.perf_counter_ns()
        if self.count[number] == self.size:
            waiter = self.waiters.pop(number, None)
            if waiter is not None:
                waiter.set()

    async def join(self, ports: Sequence[int], path: str, headers: Sequence[Sequence[tuple[str, str]]],
                   ready_frames: int, gate: asyncio.Semaphore | None = None, settle: float = 0.5) -> None:
        """Open `size` sockets, socket i on ports[i % len(ports)], at most 100 handshakes at a time (or as
        `gate` allows); wait until each has its `ready_frames` (the gateway's welcome, history, presence)
        and the room has gone quiet."""
        gate = gate or asyncio.Semaphore(100)

        async def one(index: int) -> LeanSocket:
            async with gate:
                return await connect("127.0.0.1", ports[index % len(ports)], path, headers[index % len(headers)],
                                     self.on_message)

        self.sockets = list(await asyncio.gather(*(one(i) for i in range(self.size))))
        await self.quiet(lambda: all(s.received >= ready_frames for s in self.sockets), settle)

    async def quiet(self, ready: object = None, settle: float = 0.5, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        seen = -1
        while time.monotonic() < deadline:
            await asyncio.sleep(settle)
            if (ready is None or ready()) and self.frames == seen:  # type: ignore[operator]
                return
            seen = self.frames
        raise TimeoutError("the room did not settle")

    def send(self, sender: LeanSocket, number: int, frame: bytes) -> None:
        self.sent[number] = time.perf_counter_ns()
        sender.send_text(frame)

    async def close(self) -> None:
        self.closed_early = sum(1 for s in self.sockets if not s.open)
        await asyncio.gather(*(s.close() for s in self.sockets))


def message(number: int, gateway: bool) -> bytes:
    text = f"m#{number}#"
    if gateway:
        return f'{{"type":"message","text":"{text}","client_id":"b{number}"}}'.encode()
    return f'{{"text":"{text}","client_id":"b{number}"}}'.encode()


async def burst(room: Room, first: int, count: int, gateway: bool, servers: Sequence[common.Proc],
                within: float = 120.0) -> Phase:
    numbers = range(first, first + count)
    done = [room.waiters.setdefault(n, asyncio.Event()) for n in numbers]
    window = common.CpuWindow(servers)
    sender = room.sockets[0]
    for number in numbers:
        room.send(sender, number, message(number, gateway))
    try:
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in done)), within)
    except TimeoutError:
        for n in numbers:
            room.waiters.pop(n, None)
    window.stop()
    complete = all(room.count[n] == room.size for n in numbers)
    received = sum(room.count[n] for n in numbers)
    ends = [room.last[n] for n in numbers if room.count[n]]
    elapsed = (max(ends) - room.sent[first]) / 1e9 if ends else 0.0
    latencies = [(room.last[n] - room.sent[n]) / 1e6 for n in numbers if room.count[n] == room.size]
    return Phase("burst", received, elapsed, latencies, complete, window)


async def paced(room: Room, first: int, count: int, gateway: bool, servers: Sequence[common.Proc],
                within: float = 10.0) -> Phase:
    window = common.CpuWindow(servers)
    sender = room.sockets[0]
    busy = 0.0
    for number in range(first, first + count):
        done = room.waiters[number] = asyncio.Event()
        started = time.monotonic()
        room.send(sender, number, message(number, gateway))
        try:
            await asyncio.wait_for(done.wait(), within)
        except TimeoutError:
            break
        busy += time.monotonic() - started
    window.stop()
    numbers = range(first, first + count)
    received = sum(room.count[n] for n in numbers)
    latencies = [(room.last[n] - room.sent[n]) / 1e6 for n in numbers if room.count[n] == room.size]
    return Phase("paced", received, busy, latencies, len(latencies) == count, window)


@dataclass
class Target:
    """One server set-up under comparison and its room of connected clients."""

    label: str
    ports: Sequence[int]  # socket i on ports[i % len(ports)]; the sender (socket 0) on ports[0]
    path: str
    headers: Sequence[Sequence[tuple[str, str]]]
    ready_frames: int  # frames each socket gets on joining (the gateway's welcome, history, presence)
    gateway: bool
    servers: Sequence[common.Proc]
    room: Room | None = None
    phases: dict[str, list[Phase]] = field(default_factory=dict)

    def median(self, name: str) -> Phase:
        """The median round: by deliveries/s for bursts, by p99 latency for paced runs."""
        runs = self.phases[name]
        if name == "burst":
            ordered = sorted(runs, key=lambda p: p.rate)
        else:
            ordered = sorted(runs, key=lambda p: common.percentile(p.latencies_ms, 99))
        return ordered[(len(ordered) - 1) // 2]


async def compare(targets: Sequence[Target], args: argparse.Namespace, with_paced: bool = True) -> None:
    """Every target's room connected at once, then bursts (and paced runs) taken in turns, round after
    round: load that other work puts on the machine meanwhile falls on all of them alike."""
    slots = 2 * args.messages * args.rounds
    for target in targets:
        target.room = Room(args.clients, slots)
        await target.room.join(target.ports, target.path, target.headers, target.ready_frames)
    for round_ in range(args.rounds):
        first = 2 * args.messages * round_
        for target in targets:
            assert target.room is not None
            profile = None
            if args.profile and round_ == 0:
                profile = common.Profile(target.servers[0], args.profile / f"{target.label.split()[0]}-burst.txt")
            phase = await burst(target.room, first, args.messages, target.gateway, target.servers)
            if profile:
                profile.stop()
            target.phases.setdefault("burst", []).append(phase)
            await target.room.quiet()
        for target in targets if with_paced else ():
            assert target.room is not None
            phase = await paced(target.room, first + args.messages, args.messages, target.gateway, target.servers)
            target.phases.setdefault("paced", []).append(phase)
    for target in targets:
        assert target.room is not None
        await target.room.close()
        if target.room.closed_early:
            print(f"! {target.label}: {target.room.closed_early} sockets were closed by the server during the run")


def row(label: str, phase: Phase, base: Phase | None) -> list[object]:
    p50, p99 = common.percentile(phase.latencies_ms, 50), common.percentile(phase.latencies_ms, 99)
    ratio = f"{phase.rate / base.rate:.2f}" if base else ""
    p99_ratio = f"{p99 / common.percentile(base.latencies_ms, 99):.2f}" if base else ""
    return [label, phase.name, phase.rate, ratio, p50, p99, p99_ratio,
            f"{sum(phase.window.server_pct):.0f}%", f"{phase.window.client_pct:.0f}%", phase.window.others(),
            "" if phase.complete else "INCOMPLETE"]


HEADERS = ["server", "phase", "deliveries/s", "× base", "p50 ms", "p99 ms", "p99 × base", "server CPU",
           "client CPU", "others", ""]


async def measure(args: argparse.Namespace, stack: common.Stack) -> int:
    baseline = stack.baseline()
    provider = stack.provider()
    gateway = stack.gateway(provider, options=args.server_option)
    users = [common.bearer(f"fan{i}") for i in range(args.users)]
    base = Target("websockets broadcast()", [baseline.port], "/", [[]], 0, False, [baseline])
    ours = Target("gateway", [gateway.port], f"/ws/fanout{next(_rooms)}", users, 3, True, [gateway])
    await compare([base, ours], args)

    print(f"{args.clients:,} clients in one room, {args.messages} messages per phase, {args.rounds} rounds taken "
          f"in turns (median round shown); latency = send → last socket's receipt")
    rows = [row(base.label, base.median(name), None) for name in ("burst", "paced")]
    rows += [row(ours.label, ours.median(name), base.median(name)) for name in ("burst", "paced")]
    common.table(rows, HEADERS)
    print("server/client CPU: % of one core; others: core time used by neither (other processes, softirq)")
    rate = ours.median("burst").rate / base.median("burst").rate
    p99_burst = p99(ours.median("burst")) / p99(base.median("burst"))
    p99_paced = p99(ours.median("paced")) / p99(base.median("paced"))
    met = rate >= 0.5 and p99_paced <= 2 and p99_burst <= 2
    print(f"headline: gateway/baseline deliveries/s = {rate:.2f} (target ≥ 0.5); p99 = {p99_paced:.2f}× paced, "
          f"{p99_burst:.2f}× burst (target ≤ 2): {common.verdict(met)}")
    return 0 if all(p.complete for t in (base, ours) for runs in t.phases.values() for p in runs) else 1


def p99(phase: Phase) -> float:
    return common.percentile(phase.latencies_ms, 99)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=argv[0], description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--users", type=int, default=50, help="gateway clients share this many users' tokens")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-option", action="append", default=[],
                        help="passed to bench/server.py, e.g. --server-option=--orjson")
    parser.add_argument("--profile", type=Path, help="py-spy each server during the burst; folded stacks here")
    args = parser.parse_args(argv[1:])
    common.profile_dir(parser, args.profile)
    common.become_load_generator()
    common.use_uvloop()
    common.header("fanout", argv + args.server_option)
    with common.Stack() as stack:
        return asyncio.run(measure(args, stack))

