"""The fan-out baseline: a chat room on the raw `websockets` library, fanned out with broadcast().

`python bench/baseline.py --port P`. Every text frame a client sends is parsed, stamped like the
gateway's stored message (id, room, user, ts, client_id) and broadcast to every open connection. No
authentication, no storage, no acks, no presence: the floor the gateway is measured against. Same loop
(uvloop when installed), same frame limit, compression off, pings every 20 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from websockets.asyncio.server import ServerConnection, broadcast, serve

clients: set[ServerConnection] = set()
last = [0, -1]


def next_id() -> str:
    ms = int(time.time() * 1000)
    if ms <= last[0]:
        last[1] += 1
    else:
        last[0], last[1] = ms, 0
    return f"{last[0]}-{last[1]}"


async def handler(websocket: ServerConnection) -> None:
    clients.add(websocket)
    user = {"id": f"bench:{id(websocket)}", "name": "anonymous"}
    try:
        async for raw in websocket:
            frame = json.loads(raw)
            message = {"type": "message", "id": next_id(), "room": "bench", "user": user,
                       "text": frame.get("text", ""), "ts": last[0]}
            if frame.get("client_id"):
                message["client_id"] = frame["client_id"]
            broadcast(clients, json.dumps(message, separators=(",", ":"), ensure_ascii=False))
    finally:
        clients.discard(websocket)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=4096, ping_interval=20,
                     ping_timeout=20, backlog=4096) as server:
        print(f"websockets baseline pid {os.getpid()}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    try:
        import uvloop
        uvloop.run(main(port))
    except ImportError:
        asyncio.run(main(port))
