"""One command per benchmark: `.venv/bin/python bench/run.py NAME [options]` (NAME --help for options).

  handshake       authenticated handshakes/s (cookie, header) vs. a bare endpoint on the same server
  provider_calls  provider calls for 1,000 concurrent handshakes: one token, distinct tokens, again in TTL
  fanout          one room, 1,000 clients, 200 messages: gateway vs. raw websockets + broadcast()
  memory          RSS per idle authenticated connection at 1,000 and 5,000 (compression off and on)
  scale           10,000 authenticated connections held 60 s with pings: held, dropped, RSS
  redis           fan-out over two instances with the Redis broker vs. one with the embedded broker
  cluster         two instances over a three-shard Redis Cluster vs. over one Redis: fan-out, rate over 30 rooms
  storm           5,000 clients in 10 rooms dropped at once (close, restart), all reconnecting: vs. bare
  resume          one user's resume storm (3,000 messages of 2,000 characters) vs. another user's p99
  soak            1,000 chatting clients, 5 % reconnecting each minute, 10 minutes (--minutes)
  options         uvloop/asyncio, httptools/h11, websockets-sansio/wsproto, orjson: handshakes and fan-out
  loops           the event loop's primitives (timers, tasks, events, wait_for): uvloop vs. asyncio
  all             every one of them but soak, in turn
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NAMES = ("handshake", "provider_calls", "fanout", "memory", "scale", "redis", "cluster", "storm", "resume", "soak",
         "options", "loops")
MODULES = {"redis": "redis_fanout", "cluster": "redis_cluster"}  # a module named redis would shadow the client library


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in (*NAMES, "all"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    names = [n for n in NAMES if n != "soak"] if argv[0] == "all" else [argv[0]]
    status = 0
    for name in names:
        module = importlib.import_module(f"bench.{MODULES.get(name, name)}")
        status = module.main([f"bench/run.py {name}", *argv[1:]]) or status
        print(flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
