"""The gateway as the benchmarks run it: `gateway serve`'s app and uvicorn settings, plus bench-only routes
mounted here (gateway/ is not changed):

- `WS /bench/bare`: accepts, then waits for the client's close (sends nothing).
- `WS /bench/storm-bare`: accepts (selecting gateway.chat.v1 when offered, as /ws/{room} does), sends one
  small welcome-like frame, then waits for the client's close: the minimal work a chat server must do
  for a socket, served by the same build, middleware and protocol class as /ws/{room}. The baseline of
  the handshake and storm benchmarks (a query string such as `?after=` is accepted and ignored).
- `WS /bench/auth/{room}`: /ws/{room}'s own dependencies (room name, credentials), then as
  storm-bare: splits the cost of a socket between authentication and the chat session.
- `GET /bench/stats`: asyncio tasks, RSS, open descriptors and hub counters, for memory and soak.

Settings come from GATEWAY_* variables (the bench scripts raise the limits there). Options select
alternatives for the record: --ws wsproto, --loop asyncio, --http h11, --deflate, --orjson.
Run as a file (`python bench/server.py`), so that PYTHONPATH may point at a scratch copy of gateway/.
"""

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH: a scratch gateway/ wins


def use_orjson() -> None:
    """Swap the stdlib json in the chat frame codec for orjson (same output: compact, UTF-8 kept)."""
    import orjson

    import gateway.chat.frames as frames
    import gateway.chat.hub as hub
    import gateway.routes.chat as chat

    def encode(frame: dict[str, Any]) -> str:
        return orjson.dumps(frame).decode()

    class Json:
        loads = staticmethod(orjson.loads)

    frames.encode = encode
    for module in (frames, hub, chat):  # they imported `encode` by name
        setattr(module, "encode", encode)  # noqa: B010 - names mypy cannot see as exported
    setattr(frames, "json", Json)  # noqa: B010


class GcClock:
    """Time the cyclic garbage collector takes in this process (gc.callbacks), for /bench/stats."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._started
            self.collections[info["generation"]] += 1


GC = GcClock()


def process_stats() -> dict[str, int]:
    rss = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return {"tasks": len(asyncio.all_tasks()), "rss_kib": rss, "fds": len(os.listdir("/proc/self/fd")),
            "gc_ms": round(GC.seconds * 1000), "gc_full": GC.collections[2],
            "gc_young": GC.collections[0] + GC.collections[1], "gc_objects": len(gc.get_objects())}


# No `from __future__ import annotations` here: FastAPI reads the routes' annotations, which name
# classes imported inside build().
def build(orjson: bool) -> tuple[Any, Any]:
    from fastapi import WebSocket
    from fastapi.responses import JSONResponse
    from starlette.websockets import WebSocketDisconnect

    from gateway.app import create_app
    from gateway.config import load_settings

    if orjson:
        use_orjson()
    settings = load_settings(env_file=None)
    app = create_app(settings)

    async def until_closed(websocket: WebSocket) -> None:
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        except WebSocketDisconnect:
            pass

    @app.websocket("/bench/bare")
    async def bare(websocket: WebSocket) -> None:
        await websocket.accept()
        await until_closed(websocket)

    from gateway.security import CHAT_PROTOCOL

    @app.websocket("/bench/storm-bare")
    async def storm_bare(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol=CHAT_PROTOCOL if CHAT_PROTOCOL in offered else None)
        await websocket.send_text(json.dumps({"type": "welcome", "user": {"id": "bench:bare", "name": "bare"},
                                              "room": "bare", "server_time": int(time.time() * 1000)},
                                             separators=(",", ":")))
        await until_closed(websocket)

    @app.get("/bench/stats")
    async def stats(types: bool = False) -> JSONResponse:
        hub = app.state.gateway.hub
        if types:  # what the collector tracks, by type (for a before/after look at a storm)
            from collections import Counter

            return JSONResponse(dict(Counter(type(o).__qualname__ for o in gc.get_objects()).most_common(60)))
        cache = app.state.gateway.authenticator.cache
        return JSONResponse(process_stats() | {
            "sockets": hub.open_sockets(), "deliveries": hub.deliveries, "messages_in": hub.messages_in,
            "cache_entries": len(cache), "cache_hits": cache.hits, "cache_misses": cache.misses,
            "validating": len(cache._inflight)})  # provider calls in flight: each a task, maybe a socket

    from gateway.routes.chat import room_name
    from gateway.security import current_principal

    async def authenticated_only(websocket: WebSocket) -> None:
        """/ws/{room}'s checks (room name, credentials, cache), none of the chat: where the time goes.
        Then as storm-bare (one frame, wait for the close)."""
        await room_name(websocket.path_params["room"])
        await current_principal(websocket)
        await storm_bare(websocket)

    app.router.add_websocket_route("/bench/auth/{room}", authenticated_only)

    return app, settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--ws", help="a uvicorn WebSocket implementation instead of the gateway's own class")
    parser.add_argument("--loop", help="auto (uvloop when installed) or asyncio")
    parser.add_argument("--http", help="auto (httptools when installed) or h11")
    parser.add_argument("--deflate", action="store_true", help="turn permessage-deflate on (the gateway: off)")
    parser.add_argument("--orjson", action="store_true", help="encode and decode chat frames with orjson")
    args = parser.parse_args()

    import uvicorn

    from gateway.logs import setup_logging
    from gateway.server import uvicorn_config

    app, settings = build(args.orjson)
    setup_logging(args.log_level, settings.log_format)
    config = uvicorn_config(app, "127.0.0.1", args.port, args.log_level, settings.ws_ping_interval,
                            settings.ws_ping_timeout, settings.trusted_proxies, settings.gc_threshold, backlog=4096)
    config.ws_per_message_deflate = args.deflate
    if args.ws:
        config.ws = args.ws
    if args.loop:
        config.loop = args.loop
    if args.http:
        config.http = args.http
    print(f"gateway bench server pid {os.getpid()} ws={getattr(config.ws, '__name__', config.ws)} "
          f"loop={config.loop} http={config.http} deflate={args.deflate} orjson={args.orjson}", flush=True)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
