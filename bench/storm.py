"""Reconnect storm: N authenticated clients (default 5,000) in 10 rooms, one distinct user each (so presence
is real), all connected and settled; then all dropped at once, then all reconnecting at once with
`?after=<the last message id each one holds>`. The same storm against the bare endpoint in the same run.

Drops, in turn (`--modes`):
- close: every client sends its close frame at once and waits up to --close-timeout s for the server's;
  no close frame back, or a code other than 1000, is an unclean close.
- restart: SIGTERM to the server process, then the same command on the same port with the same history
  file (clients see the server's close frame, 1012 or 1001, or just the drop).

Before each drop every room gets --messages messages (so each client holds a real last id); while the
clients are away (after the close, or after the restart) each room gets --away more, which every client's
resumed history must hold exactly ("resume errors"). The validation cache is warm for every storm, so the
storm measures the gateway, not the provider: the first connection of each user fills it (TTL raised to
15 min for the run), and after a restart, which empties it, one GET /auth/check per user fills it again
before the storm (provider calls during the storms are printed: 0 expected).

A storm lasts from the first reconnect until every client has its welcome and history (its last page,
if paged: "back in"; the bare endpoint's clients: its one frame), and "quiet" until no frame has arrived
for --quiet s, the server is idle and its hub holds as many sockets as the clients have open. Every
frame a client receives from its reconnect until quiet is counted by its JSON "type". After quiet, each
client's presence list (a `presence` frame's full list replaces it whenever one comes; `join` and `leave`
are applied in order; coalesced forms are accepted too: `join`/`leave` with "users", `presence` with
"joined"/"left") must equal the set of users connected to its room. Failures: refused handshakes,
connection errors, clients not back within --timeout s, sockets closed by the server during the storm.

The bare baseline is a second bench/server.py process (the same build, middleware and protocol class)
whose clients use WS /bench/storm-bare: accept, one small welcome-like frame, wait for the close. It runs
Python's own collector thresholds (700,10,10), as a bare FastAPI app does; the gateway runs its default
GATEWAY_GC_THRESHOLD (`--bare-gc 50000,10,10` gives the baseline the same).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common
from bench.wsclient import HandshakeFailed, LeanSocket, connect

HOST = "127.0.0.1"
PROTOCOL = ("Sec-WebSocket-Protocol", "gateway.chat.v1")
PREFIX = b'{"type":"'
USER_KEY = b'"user":{"id":"'
KINDS = ("welcome", "history", "presence", "join", "leave", "other")
PENDING, BACK, FAILED = 0, 1, 2


class Fleet:
    """The clients of one server and what they received in the current phase."""

    def __init__(self, name: str, server: common.Proc, bare: bool, presence: str = "changes") -> None:
        self.name = name
        self.server = server
        self.bare = bare
        self.presence = presence
        self.clients: list[Client] = []
        self.counts: dict[bytes, int] = {}
        self.sizes: dict[bytes, int] = {}  # payload bytes by type
        self.lists: dict[bytes, frozenset[str]] = {}  # full presence lists seen, by their frame's bytes
        self.frames = 0
        self.pending = 0
        self.storming = False
        self.failures: Counter[str] = Counter()
        self.posted: dict[str, list[str]] = {}  # every message id posted, by room, in order

    def after(self, room: str, last_id: str) -> list[str] | None:
        """What a resume after `last_id` must return (None: not known)."""
        ids = self.posted.get(room, [])
        return ids[ids.index(last_id) + 1:] if last_id in ids else None

    def reset(self) -> None:
        self.counts = {}
        self.sizes = {}
        self.lists = {}
        self.frames = 0
        self.failures = Counter()
        self.pending = len(self.clients)


class Client:
    """One user's socket; frames are looked at as bytes, JSON decoded only where the check needs the body."""

    __slots__ = ("acks", "back_at", "expected", "fleet", "head", "history_ids", "last_id", "presence",
                 "presence_frames", "room", "socket", "state", "user", "user_id", "welcomed")

    def __init__(self, fleet: Fleet, user: str, room: str, headers: Sequence[tuple[str, str]]) -> None:
        self.fleet = fleet
        self.user = user
        self.room = room
        self.head = "".join(f"{name}: {value}\r\n" for name, value in [*headers, PROTOCOL]).encode()
        self.socket: LeanSocket | None = None
        self.state = PENDING
        self.back_at = 0.0
        self.welcomed = False
        self.user_id = ""
        self.presence: set[str] | frozenset[str] = set()
        self.presence_frames = 0
        self.last_id = ""
        self.history_ids: list[str] | None = None
        self.expected: list[str] | None = None  # the resumed history it must get
        self.acks: list[str] = []

    # --- the phases ---------------------------------------------------------------------------------------

    def begin(self) -> None:
        self.expected = self.fleet.after(self.room, self.last_id)
        self.back_at = 0.0
        self.socket = None
        self.state = PENDING
        self.welcomed = False
        self.presence = set()
        self.presence_frames = 0
        self.history_ids = None

    async def open(self, port: int, path: str) -> None:
        key = base64.b64encode(os.urandom(16))
        request = (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n").encode() + self.head + b"\r\n"
        loop = asyncio.get_running_loop()
        try:
            _, socket = await loop.create_connection(lambda: LeanSocket(request, key, self.on_message), HOST, port)
            self.socket = socket
            await socket.opened
        except HandshakeFailed as exc:
            self.fail(f"refused {exc.status}")
            return
        except OSError as exc:  # ConnectionError included
            self.fail(f"connection error: {type(exc).__name__}")
            return
        socket.closed.add_done_callback(self.on_closed)

    def fail(self, reason: str) -> None:
        if self.state == FAILED:
            return
        if self.state == PENDING:
            self.fleet.pending -= 1
        self.state = FAILED
        self.fleet.failures[reason] += 1

    def back(self) -> None:
        if self.state == PENDING:
            self.state = BACK
            self.back_at = time.monotonic()
            self.fleet.pending -= 1

    def on_closed(self, closed: asyncio.Future[int | None]) -> None:
        if self.socket is None or closed is not self.socket.closed:
            return  # an earlier connection's
        if self.fleet.storming:
            code = closed.result()
            when = "before its history" if self.state == PENDING else "after settling"
            reason = f" {self.socket.close_reason!r}" if self.socket.close_reason else ""
            self.fail(f"closed by the server {when} ({code if code is not None else 'no close frame'}{reason})")

    @property
    def open_now(self) -> bool:
        return self.socket is not None and self.socket.open

    # --- frames -------------------------------------------------------------------------------------------

    def on_message(self, socket: LeanSocket, payload: bytes) -> None:
        fleet = self.fleet
        fleet.frames += 1
        if payload.startswith(PREFIX):
            kind = payload[9:payload.find(b'"', 9)]
        else:
            kind = str(_json(payload).get("type", "?")).encode()
        counts = fleet.counts
        counts[kind] = counts.get(kind, 0) + 1
        sizes = fleet.sizes
        sizes[kind] = sizes.get(kind, 0) + len(payload)
        if kind == b"join" or kind == b"leave":
            self.presence_frames += 1
            start = payload.find(USER_KEY)
            if start >= 0:
                start += len(USER_KEY)
                user_id = payload[start:payload.find(b'"', start)]
                if b"\\" not in user_id:
                    presence = self.mutable_presence()
                    if kind == b"join":
                        presence.add(user_id.decode())
                    else:
                        presence.discard(user_id.decode())
                    return
            self.presence_change(kind, _json(payload))
        elif kind == b"message":
            self.last_id = _json(payload)["id"]
        elif kind == b"welcome":
            self.welcomed = True
            self.user_id = _json(payload).get("user", {}).get("id", "")
            if fleet.bare:
                self.back()
        elif kind == b"history":  # maybe in pages: each but the last has "more": true
            frame = _json(payload)
            ids = [m["id"] for m in frame.get("messages", [])]
            self.history_ids = ids if self.history_ids is None else self.history_ids + ids
            if ids:
                self.last_id = ids[-1]
            if self.welcomed and not frame.get("more"):
                self.back()
        elif kind.startswith(b"presence"):
            self.presence_frames += 1
            # A full list goes to every socket of the room as the same bytes: decoded once per fleet.
            known = fleet.lists.get(payload)
            if known is None:
                frame = _json(payload)
                if "users" not in frame or "joined" in frame or "left" in frame:
                    self.presence_change(kind, frame)
                    return
                known = fleet.lists[payload] = frozenset(user["id"] for user in frame["users"])
            self.presence = known
        elif kind == b"ack":
            self.acks.append(_json(payload)["id"])

    def mutable_presence(self) -> set[str]:
        if isinstance(self.presence, frozenset):  # shared with the room's other sockets: copy on write
            self.presence = set(self.presence)
        return self.presence

    def presence_change(self, kind: bytes, frame: dict[str, Any]) -> None:
        if kind == b"join" or kind == b"leave":
            users = [frame["user"]] if "user" in frame else frame.get("users", [])
            presence = self.mutable_presence()
            for user in users:
                if kind == b"join":
                    presence.add(user["id"])
                else:
                    presence.discard(user["id"])
            return
        if "users" in frame:  # a full list: replaces what we had, whenever it comes
            self.presence = {user["id"] for user in frame["users"]}
        presence = self.mutable_presence()
        for user in frame.get("joined", ()):
            presence.add(user["id"])
        for user in frame.get("left", ()):
            presence.discard(user["id"])


def _json(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class Storm:
    fleet: str
    mode: str
    drop_s: float = 0.0
    drop_codes: Counter[str] = field(default_factory=Counter)
    unclean: int = 0
    restart_s: str = ""
    back_s: float = float("nan")
    p50_s: float = float("nan")
    quiet_s: float = float("nan")
    failures: Counter[str] = field(default_factory=Counter)
    counts: dict[str, float] = field(default_factory=dict)
    presence_per_client: float = 0.0
    presence_max: int = 0
    presence_kib: float = 0.0
    total_kib: float = 0.0
    other_types: str = ""
    cpu_s: float = 0.0
    gc_s: float = 0.0  # of cpu_s: the cyclic garbage collector
    gc_full: int = 0  # its full collections
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    client_pct: float = 0.0
    others: str = ""
    presence_mismatches: int | None = None
    mismatch_example: str = ""
    resume_errors: int | None = None
    unsettled: str = ""
    provider_calls: int = 0


# --- phases --------------------------------------------------------------------------------------------

PRESENCE = {"changes": "?presence=changes", "full": ""}  # the page asks for changes (docs/protocol.md)


def path_of(fleet: Fleet, client: Client, after: bool) -> str:
    """The handshake's path; the bare endpoint ignores the query, sent anyway so both are the same size."""
    base = ("/bench/storm-bare" if fleet.bare else f"/ws/{client.room}") + PRESENCE[fleet.presence]
    if not (after and client.last_id):
        return base
    return f"{base}{'&' if '?' in base else '?'}after={client.last_id}"


async def wait_until_async(count: Callable[[], Awaitable[int]], within: float, every: float = 0.1) -> None:
    """Until `count()` is 0, at most `within` s."""
    deadline = time.monotonic() + within
    while await count():
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(every)


async def wait_until(done: Callable[[], bool], within: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(every)


async def hub_sockets(server: common.Proc) -> int:
    stats = await asyncio.to_thread(common.get_json, f"{server.url}/bench/stats")
    return int(stats["sockets"])


async def settle(fleet: Fleet, quiet: float, within: float, samples: list[int] | None = None) -> tuple[float, str]:
    """Until no frame has arrived for `quiet` s, the server was idle meanwhile (under 20 % of a core), and
    (gateway) its hub holds as many sockets as the clients have open: no close or leave still on its way.
    At most `within` s. (The time of the last frame, "" or what had not settled.)"""
    server = fleet.server
    frames, last_frame = fleet.frames, time.monotonic()
    window, window_cpu = last_frame, server.cpu_seconds()
    deadline = last_frame + within
    why = "frames still arriving"
    while True:
        await asyncio.sleep(0.05)
        now = time.monotonic()
        if samples is not None:
            samples.append(server.rss_kib())
        if fleet.frames != frames:
            frames, last_frame = fleet.frames, now
            window, window_cpu = now, server.cpu_seconds()
        elif now - window >= quiet:
            busy = (server.cpu_seconds() - window_cpu) / (now - window)
            held = open_now = 0
            if not fleet.bare:
                held, open_now = await hub_sockets(server), sum(1 for c in fleet.clients if c.open_now)
            if busy < 0.2 and held == open_now:
                return last_frame, ""
            why = (f"server busy ({100 * busy:.0f}% of a core)" if busy >= 0.2 else
                   f"the server holds {held:,} sockets, the clients {open_now:,}")
            window, window_cpu = time.monotonic(), server.cpu_seconds()
        if now > deadline:
            return last_frame, f"not settled in {within:g} s: {why}"


async def connect_all(fleet: Fleet, args: argparse.Namespace) -> str:
    """The fleet's first connection, --concurrency at a time: sets up the rooms (and fills the cache)."""
    for client in fleet.clients:
        client.begin()
    fleet.reset()
    fleet.storming = True
    gate = asyncio.Semaphore(args.concurrency)
    started = time.monotonic()

    async def one(client: Client) -> None:
        async with gate:
            await client.open(fleet.server.port, path_of(fleet, client, False))

    await asyncio.gather(*(one(client) for client in fleet.clients))
    await wait_until(lambda: fleet.pending <= 0, args.timeout)
    back = time.monotonic() - started
    end, why = await settle(fleet, args.quiet, 120)
    fleet.storming = False
    failed = sum(fleet.failures.values())
    note = f"; failures: {dict(fleet.failures)}" if failed else ""
    return (f"{fleet.name}: {len(fleet.clients) - failed:,} of {len(fleet.clients):,} connected in {back:.1f} s, "
            f"quiet after {end - started:.1f} s ({fleet.frames:,} frames){note}{'; ' + why if why else ''}")


async def post(fleet: Fleet, rooms: Sequence[str], count: int, cookies: dict[str, list[tuple[str, str]]],
               label: str) -> dict[str, list[str]]:
    """`count` messages into each room from a poster socket of its own (user poster<N>), acked: the ids, by
    room. A poster the server closes (4408 if it joins during a wave of leaves) sends again (same client_id:
    stored once), three tries."""

    async def one(room: str) -> list[str]:
        ids = [f"{label}-{room}-{number}" for number in range(count)]
        acks: dict[str, str] = {}
        for _ in range(3):
            done = asyncio.Event()

            def on_message(socket: LeanSocket, payload: bytes, done: asyncio.Event = done) -> None:
                if payload.startswith(b'{"type":"ack"'):
                    ack = _json(payload)
                    acks[ack["client_id"]] = ack["id"]
                    if len(acks) == count:
                        done.set()

            socket = await connect(HOST, fleet.server.port, f"/ws/{room}", [*cookies[room], PROTOCOL], on_message)
            socket.closed.add_done_callback(lambda _, done=done: done.set())
            for number, client_id in enumerate(ids):
                if client_id not in acks:
                    socket.send_text(json.dumps({"type": "message", "text": f"{label} {number}",
                                                 "client_id": client_id}))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 60)
            await socket.close()
            if len(acks) == count:
                break
            print(f"! {fleet.name}: the poster in {room} got {len(acks)} of {count} acks (closed with "
                  f"{socket.close_code}); again", flush=True)
        return [acks[client_id] for client_id in ids if client_id in acks]

    ids = await asyncio.gather(*(one(room) for room in rooms))
    for room, posted in zip(rooms, ids, strict=True):
        fleet.posted.setdefault(room, []).extend(posted)
    return dict(zip(rooms, ids, strict=True))


async def warm_cache(fleet: Fleet, cookies: Sequence[Sequence[tuple[str, str]]], connections: int = 32,
                     batch: int = 4) -> tuple[int, float]:
    """One GET /auth/check per user with its cookie (HTTP keep-alive, pipelined): (refused, seconds)."""
    started = time.monotonic()
    port = fleet.server.port
    requests = [f"GET /auth/check HTTP/1.1\r\nHost: {HOST}:{port}\r\nCookie: {dict(headers)['Cookie']}\r\n\r\n"
                .encode() for headers in cookies]
    refused = 0

    async def worker(chunk: list[bytes]) -> None:
        nonlocal refused
        reader, writer = await asyncio.open_connection(HOST, port)
        for first in range(0, len(chunk), batch):
            part = chunk[first:first + batch]
            writer.write(b"".join(part))
            for _ in part:
                head = await reader.readuntil(b"\r\n\r\n")
                if head[9:12] != b"202":
                    refused += 1
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
        writer.close()

    await asyncio.gather(*(worker(requests[i::connections]) for i in range(connections)))
    return refused, time.monotonic() - started


async def warm(fleet: Fleet, cookies: Sequence[Sequence[tuple[str, str]]], provider: common.Proc, what: str) -> str:
    calls = common.provider_calls(provider).get("userinfo", 0)
    cpu = fleet.server.cpu_seconds()
    refused, seconds = await warm_cache(fleet, cookies)
    cpu = fleet.server.cpu_seconds() - cpu
    calls = common.provider_calls(provider).get("userinfo", 0) - calls
    return (f"{fleet.name}: {what}: {len(cookies):,} GET /auth/check in {seconds:.1f} s, {calls:,} provider calls, "
            f"server CPU {cpu:.1f} s ({1000 * cpu / max(len(cookies), 1):.1f} ms per token; {refused} refused)")


async def drop(fleet: Fleet, mode: str, args: argparse.Namespace, stack: common.Stack, storm: Storm) -> None:
    sockets = [c.socket for c in fleet.clients if c.socket is not None and c.open_now]
    waiting = [s.closed for s in sockets] or [asyncio.get_running_loop().create_future()]
    started = time.monotonic()
    if mode == "close":
        for socket in sockets:
            socket.start_close()
        await asyncio.wait(waiting, timeout=args.close_timeout)
        storm.drop_s = time.monotonic() - started
    else:
        restart = asyncio.ensure_future(asyncio.to_thread(stack.restart, fleet.server))
        await asyncio.wait(waiting, timeout=args.close_timeout)
        storm.drop_s = time.monotonic() - started
        fleet.server, exited, ready = await restart
        storm.restart_s = f"{exited:.1f} + {ready:.1f}"
        print(f"{fleet.name}: SIGTERM → every client closed in {storm.drop_s:.1f} s, the process exited in "
              f"{exited:.1f} s, up and ready again in {ready:.1f} s", flush=True)
    for socket in sockets:
        if socket.closed.done():
            code = socket.closed.result()
            storm.drop_codes["no close frame" if code is None else str(code)] += 1
        else:
            storm.drop_codes[f"none in {args.close_timeout:g} s"] += 1
            socket.abort()
    if mode == "close":
        storm.unclean = sum(n for code, n in storm.drop_codes.items() if code != "1000")


async def reconnect(fleet: Fleet, args: argparse.Namespace, storm: Storm, provider: common.Proc) -> None:
    """Every client at once, with ?after=: until all are back (or failed) and the rooms are quiet."""
    server = fleet.server
    profile = None
    if args.profile is not None:
        profile = common.Profile(server, args.profile / f"storm-{fleet.name}-{storm.mode}.txt")
    for client in fleet.clients:
        client.begin()
    fleet.reset()
    calls = common.provider_calls(provider).get("userinfo", 0)
    window = common.CpuWindow([server])
    gc_before = await asyncio.to_thread(common.get_json, f"{server.url}/bench/stats")
    types_before = await asyncio.to_thread(common.get_json, f"{server.url}/bench/stats?types=true") \
        if args.gc_types else {}
    cpu_before = server.cpu_seconds()
    storm.rss_before = server.rss_kib()
    samples = [storm.rss_before]
    fleet.storming = True
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    tasks = [loop.create_task(client.open(server.port, path_of(fleet, client, True))) for client in fleet.clients]
    deadline = started + args.timeout
    while fleet.pending > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        samples.append(server.rss_kib())
    for client in fleet.clients:
        if client.state == PENDING:
            client.fail(f"timeout: not back in {args.timeout:g} s")
            if client.socket is not None:
                client.socket.abort()
    for task in tasks:
        task.cancel()
    quiet, storm.unsettled = await settle(fleet, args.quiet, args.timeout, samples)
    fleet.storming = False
    window.stop()
    if profile is not None:
        profile.stop(12)
        for line in self_time(profile.out, 12):
            print(f"  self {line}")
    storm.cpu_s = server.cpu_seconds() - cpu_before
    gc_after = await asyncio.to_thread(common.get_json, f"{server.url}/bench/stats")
    if args.gc_types:
        types_after = await asyncio.to_thread(common.get_json, f"{server.url}/bench/stats?types=true")
        grown = {k: (v - types_before.get(k, 0)) / len(fleet.clients) for k, v in types_after.items()}
        print(f"{fleet.name}, {storm.mode}: objects the collector tracks, per client: "
              + ", ".join(f"{k} {v:.1f}" for k, v in sorted(grown.items(), key=lambda kv: -kv[1])[:24] if v >= 0.5))
    storm.gc_s = (gc_after["gc_ms"] - gc_before["gc_ms"]) / 1000
    storm.gc_full = gc_after["gc_full"] - gc_before["gc_full"]
    print(f"{fleet.name}, {storm.mode}: GC {storm.gc_s:.2f} s in {gc_after['gc_young'] - gc_before['gc_young']:,} "
          f"young and {storm.gc_full} full collections; tracked objects {gc_before['gc_objects']:,} → "
          f"{gc_after['gc_objects']:,}", flush=True)
    storm.rss_peak = max(samples)
    storm.rss_after = server.rss_kib()
    storm.client_pct = window.client_pct
    storm.others = window.others()
    storm.provider_calls = common.provider_calls(provider).get("userinfo", 0) - calls
    back = [c.back_at - started for c in fleet.clients if c.back_at]  # closed later or not: they came back
    if back:
        storm.back_s = max(back)
        storm.p50_s = statistics.median(back)
    storm.quiet_s = quiet - started
    storm.failures = fleet.failures
    n = max(len(fleet.clients), 1)
    named = {kind.encode() for kind in KINDS}
    counts = {kind: fleet.counts.get(kind.encode(), 0) / n for kind in KINDS[:-1]}
    counts["presence"] += sum(v for k, v in fleet.counts.items() if k.startswith(b"presence") and k not in named) / n
    counts["other"] = sum(v for k, v in fleet.counts.items() if k not in named and not k.startswith(b"presence")) / n
    storm.counts = counts
    storm.other_types = ", ".join(f"{k.decode()} {v:,}" for k, v in sorted(fleet.counts.items())
                                  if k not in named)
    storm.presence_per_client = sum(c.presence_frames for c in fleet.clients) / n
    presence_kinds = [k for k in fleet.sizes if k in (b"join", b"leave") or k.startswith(b"presence")]
    storm.presence_kib = sum(fleet.sizes[k] for k in presence_kinds) / n / 1024
    storm.total_kib = sum(fleet.sizes.values()) / n / 1024
    storm.presence_max = max((c.presence_frames for c in fleet.clients), default=0)


def self_time(folded: Path, top: int) -> list[str]:
    """Where the samples were, innermost frame only (the function and line), from py-spy's folded output."""
    found: Counter[str] = Counter()
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        found[stack.rsplit(";", 1)[-1].replace(str(common.ROOT) + "/", "")] += int(count)
    total = max(sum(found.values()), 1)
    return [f"{100 * n / total:5.1f}%  {name}" for name, n in found.most_common(top)]


def check(fleet: Fleet, storm: Storm, away: dict[str, list[str]] | None) -> None:
    """After quiet: every connected client's presence list is its room's connected users; its resumed history
    holds exactly the messages posted while it was away."""
    if fleet.bare:
        return
    rooms: dict[str, list[Client]] = {}
    for client in fleet.clients:
        if client.state == BACK and client.open_now:
            rooms.setdefault(client.room, []).append(client)
    mismatches = 0
    for members in rooms.values():
        expected = {c.user_id for c in members}
        for client in members:
            if client.presence != expected:
                mismatches += 1
                if not storm.mismatch_example:
                    missing, extra = expected - client.presence, client.presence - expected
                    storm.mismatch_example = (f"{client.user} in {client.room}: {len(missing)} missing "
                                              f"{sorted(missing)[:3]}, {len(extra)} extra {sorted(extra)[:3]}")
    storm.presence_mismatches = mismatches
    if away is not None:
        storm.resume_errors = sum(1 for members in rooms.values() for c in members
                                  if c.expected is not None and c.history_ids != c.expected)


# --- the run -------------------------------------------------------------------------------------------

async def run_fleet(fleet: Fleet, args: argparse.Namespace, stack: common.Stack, provider: common.Proc,
                    cookies: Sequence[Sequence[tuple[str, str]]], rooms: Sequence[str]) -> list[Storm]:
    if not fleet.bare:
        print(await warm(fleet, cookies, provider, "cache warmed"), flush=True)
    print(await connect_all(fleet, args), flush=True)
    poster_cookies = dict(zip(rooms, common.cookies(fleet.server, [f"poster{r}" for r in range(len(rooms))]),
                              strict=True))
    storms = []
    for mode in args.modes:
        storm = Storm(fleet.name, mode)
        if not fleet.bare:  # real last ids: every client gets these
            posted = await post(fleet, rooms, args.messages, poster_cookies, f"before-{mode}")
            await wait_until(lambda: all(not c.open_now or c.last_id in posted[c.room][-1:]  # noqa: B023
                                         for c in fleet.clients), 30)
            _, why = await settle(fleet, args.quiet, 60)
            if why:
                print(f"! {fleet.name}: before the drop: {why}")
        await drop(fleet, mode, args, stack, storm)
        away = None
        if not fleet.bare:
            if mode == "restart":  # the cache is gone with the process: fill it again first
                print(await warm(fleet, cookies, provider, "cache warmed again"), flush=True)
            else:  # away: once the server has seen every client leave
                await wait_until_async(lambda: hub_sockets(fleet.server), 60)
            away = await post(fleet, rooms, args.away, poster_cookies, f"away-{mode}")
        await reconnect(fleet, args, storm, provider)
        check(fleet, storm, away)
        print(f"{fleet.name}, {mode}: back in {storm.back_s:.2f} s, quiet after {storm.quiet_s:.2f} s, "
              f"failures {sum(storm.failures.values())}", flush=True)
        storms.append(storm)
    for client in fleet.clients:
        if client.socket is not None and client.open_now:
            client.socket.start_close()
    await asyncio.sleep(1.0)
    for client in fleet.clients:
        if client.socket is not None:
            client.socket.abort()
    return storms


def codes(counter: Counter[str]) -> str:
    return ", ".join(f"{code} ×{n:,}" for code, n in counter.most_common()) or "-"


def report(storms: list[Storm], args: argparse.Namespace) -> int:
    bare = {s.mode: s for s in storms if s.fleet == "bare"}
    rows = []
    for s in storms:
        base = bare.get(s.mode)
        ratio = s.back_s / base.back_s if base and s.fleet != "bare" and base.back_s > 0 else None
        cpu = s.cpu_s / base.cpu_s if base and s.fleet != "bare" and base.cpu_s > 0 else None
        rows.append([s.fleet, s.mode, f"{s.drop_s:.2f}", codes(s.drop_codes), s.unclean if s.mode == "close" else "-",
                     f"{s.back_s:.2f}", f"{s.p50_s:.2f}", f"{ratio:.2f}" if ratio is not None else "",
                     f"{s.quiet_s:.2f}", sum(s.failures.values()), f"{s.cpu_s:.1f}",
                     f"{cpu:.2f}" if cpu is not None else "", f"{s.gc_s:.1f} ({s.gc_full})",
                     f"{s.rss_before / 1024:.0f} → {s.rss_peak / 1024:.0f}", f"{s.client_pct:.0f}%", s.others])
    common.table(rows, ["server", "drop", "drop s", "server's close codes", "unclean", "back in s", "p50 s",
                        "× bare", "quiet s", "failures", "server CPU s", "CPU × bare", "GC s (full)",
                        "RSS MiB before → peak",
                        "client CPU", "others"])
    print("CPU × bare: the server's CPU seconds for the storm against the bare server's; less moved than the "
          "times by other load on the machine (the 'others' column); GC s: of that CPU, the cyclic garbage "
          "collector's (its full collections)")
    print()
    rows = []
    for s in storms:
        rows.append([s.fleet, s.mode, *(f"{s.counts.get(k, 0):.2f}" for k in KINDS), f"{s.presence_per_client:.2f}",
                     s.presence_max, f"{s.presence_kib:.1f}", f"{s.total_kib:.1f}",
                     "-" if s.presence_mismatches is None else s.presence_mismatches,
                     "-" if s.resume_errors is None else s.resume_errors, s.provider_calls])
    common.table(rows, ["server", "drop", *KINDS, "presence frames", "max", "presence KiB", "all KiB",
                        "presence mismatches", "resume errors", "provider calls"])
    print("frames per client from its reconnect until quiet, by JSON type; presence frames = presence + join + "
          "leave (+ other presence* types); KiB: their payload per client")
    for s in storms:
        for reason, n in s.failures.most_common():
            print(f"! {s.fleet}, {s.mode}: {n:,} × {reason}")
        if s.unsettled:
            print(f"! {s.fleet}, {s.mode}: {s.unsettled}")
        if s.mismatch_example:
            print(f"! {s.fleet}, {s.mode}: presence mismatch, e.g. {s.mismatch_example}")
        if s.other_types:
            print(f"  {s.fleet}, {s.mode}: other types: {s.other_types}")
    gateway = [s for s in storms if s.fleet == "gateway"]
    ratios = {s.mode: s.back_s / bare[s.mode].back_s for s in gateway if s.mode in bare and bare[s.mode].back_s > 0}
    failures = sum(sum(s.failures.values()) for s in gateway)
    presence = max((s.presence_per_client for s in gateway), default=0.0)
    mismatches = sum(s.presence_mismatches or 0 for s in gateway)
    worst = max(ratios.values(), default=float("inf"))
    print(f"headline: {args.clients:,} clients, storm time gateway/bare = "
          + ", ".join(f"{r:.2f} ({m})" for m, r in ratios.items())
          + f" (target ≤ 1.25): {common.verdict(worst <= 1.25)}; failures {failures} (target 0): "
          f"{common.verdict(failures == 0)}; presence frames per client {presence:.1f} (target ≤ 5): "
          f"{common.verdict(presence <= 5)}; presence mismatches {mismatches} (target 0): "
          f"{common.verdict(mismatches == 0)}")
    ok = worst <= 1.25 and failures == 0 and presence <= 5 and mismatches == 0
    return 0 if ok else 1


async def measure(args: argparse.Namespace, stack: common.Stack) -> int:
    if common.descriptor_limit() < args.clients + 500:
        print(f"! the descriptor limit is {common.descriptor_limit()}: fewer than {args.clients:,} sockets can open")
    provider = stack.provider()
    env = {"GATEWAY_VALIDATION_CACHE_TTL": "900",
           "GATEWAY_VALIDATION_CACHE_SIZE": str(max(10_000, 2 * args.clients))}
    # The baseline is a bare endpoint as one would write it: Python's own collector (the gateway's is tuned,
    # GATEWAY_GC_THRESHOLD; --bare-gc to give the baseline the same).
    bare_server = stack.gateway(provider, name="bare", env={**env, "GATEWAY_GC_THRESHOLD": args.bare_gc})
    gateway = stack.gateway(provider, name="gateway", env=env)
    rooms = [f"storm{r}" for r in range(args.rooms)]
    users = [f"s{i}" for i in range(args.clients)]
    started = time.monotonic()
    cookies = common.cookies(gateway, users)
    print(f"{args.clients:,} clients, {args.rooms} rooms of {args.clients // args.rooms:,}, one user each; "
          f"presence as {args.presence}; "
          f"{args.messages} messages per room before each drop, {args.away} while away; "
          f"cookies sealed in {time.monotonic() - started:.1f} s", flush=True)
    storms: list[Storm] = []
    for name, server, bare in (("bare", bare_server, True), ("gateway", gateway, False)):
        fleet = Fleet(name, server, bare, args.presence)
        fleet.clients = [Client(fleet, user, rooms[i % len(rooms)], cookies[i]) for i, user in enumerate(users)]
        if bare:  # it ignores ?after=; sent anyway, so that both handshakes are the same size
            for client in fleet.clients:
                client.last_id = "1764000000000-0"
        storms += await run_fleet(fleet, args, stack, provider, cookies, rooms)
    print()
    return report(storms, args)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=argv[0], description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--presence", choices=sorted(PRESENCE), default="changes",
                        help="presence batches as changes (as the page asks) or as full lists")
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--modes", type=lambda v: v.split(","), default=["close", "restart"],
                        help="comma-separated: close, restart (default both, in that order)")
    parser.add_argument("--messages", type=int, default=3, help="per room before each drop")
    parser.add_argument("--away", type=int, default=2, help="per room while the clients are away")
    parser.add_argument("--timeout", type=float, default=60.0, help="s for every client to be back")
    parser.add_argument("--close-timeout", type=float, default=10.0, help="s to wait for the server's close frames")
    parser.add_argument("--quiet", type=float, default=1.5,
                        help="s without a frame: the storm is over (longer than the presence settle, up to 1 s)")
    parser.add_argument("--concurrency", type=int, default=500, help="handshakes at a time for the first connection")
    parser.add_argument("--bare-gc", default="700,10,10",
                        help="the baseline's GATEWAY_GC_THRESHOLD (default: Python's own)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    parser.add_argument("--gc-types", action="store_true",
                        help="print what the collector tracks per client after each storm, by type")
    parser.add_argument("--profile", type=Path, help="a directory: py-spy records the servers during each storm")
    args = parser.parse_args(argv[1:])
    if set(args.modes) - {"close", "restart"}:
        parser.error("--modes: close, restart")
    common.profile_dir(parser, args.profile)
    common.become_load_generator(args.clients + 2000)
    common.use_uvloop()
    common.header("storm", argv)
    with common.Stack(keep=args.keep) as stack:
        if args.keep:
            print(f"# work directory (logs): {stack.workdir}")
        return asyncio.run(measure(args, stack))
