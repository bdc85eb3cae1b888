"""The event loop's own primitives, uvloop against asyncio, on one pinned core (issue 11, item 2).

Times a `call_later` + `cancel` (the session watch's timer), a task (create and await), an `asyncio.Event`
set and awaited, and `asyncio.wait_for` around a finished sleep: what the gateway's socket lifecycle
uses per socket. Each loop runs in a fresh process on core 0, in turns, `--rounds` times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

from bench import common

N = 100_000


async def primitives() -> dict[str, float]:
    """µs per operation."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    handles = [loop.call_later(300, lambda: None) for _ in range(N)]
    for handle in handles:
        handle.cancel()
    timer = (time.perf_counter() - started) / N
    started = time.perf_counter()
    for _ in range(N // 10):
        await loop.create_task(asyncio.sleep(0))
    task = (time.perf_counter() - started) / (N // 10)
    started = time.perf_counter()
    for _ in range(N // 10):
        event = asyncio.Event()
        event.set()
        await event.wait()
    event_time = (time.perf_counter() - started) / (N // 10)
    started = time.perf_counter()
    for _ in range(N // 10):
        await asyncio.wait_for(asyncio.sleep(0), 5)
    wait_for = (time.perf_counter() - started) / (N // 10)
    return {"call_later + cancel": timer * 1e6, "task": task * 1e6, "Event set + wait": event_time * 1e6,
            "wait_for": wait_for * 1e6}


def child(loop: str) -> None:
    if loop == "uvloop":
        import uvloop
        result = uvloop.run(primitives())
    else:
        result = asyncio.run(primitives())
    print(" ".join(f"{value:.3f}" for value in result.values()))


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--child":
        child(argv[2])
        return 0
    parser = argparse.ArgumentParser(prog=argv[0], description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv[1:])
    common.header("loops", argv)
    names = ["call_later + cancel", "task", "Event set + wait", "wait_for"]
    runs: dict[str, list[list[float]]] = {"uvloop": [], "asyncio": []}
    for _ in range(args.rounds):
        for loop in runs:
            out = subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "bench.loops", "--child", loop],
                                 capture_output=True, text=True, check=True, cwd=common.ROOT,
                                 env=dict(os.environ, PYTHONPATH=str(common.ROOT)))
            runs[loop].append([float(x) for x in out.stdout.split()])
    rows = []
    for index, name in enumerate(names):
        uv = statistics.median(run[index] for run in runs["uvloop"])
        aio = statistics.median(run[index] for run in runs["asyncio"])
        rows.append([name, f"{uv:.2f}", f"{aio:.2f}", f"{aio / uv:.2f}"])
    common.table(rows, ["µs per operation (median)", "uvloop", "asyncio", "asyncio / uvloop"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
