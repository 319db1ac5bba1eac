"""Fallback load generator of bench/serve.py, used only when ``wrk`` is missing.

Closed loop like wrk: ``--connections`` keep-alive HTTP/1.1 connections, each
sending the next POST as soon as the previous answer is read, for ``--duration``
seconds, from one asyncio process (uvloop if installed). Prints one line
``BENCH {json}`` with the same keys as bench/_wrk_post.lua. It is slower than wrk
and shares the cores with the server, so its figures are lower than wrk's.

    python bench/_loadgen.py URL body.json --connections 16 --duration 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    body = b""  # chunked
    while True:
        size = int((await reader.readline()).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, body
        body += chunk[:-2]


async def worker(
    url: str, body: bytes, until: float, out: dict[str, list[float] | list[str]]
) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies, bad = out["latencies"], out["bad"]
    while time.perf_counter() < until:
        start = time.perf_counter()
        writer.write(request)
        status, answer = await read_response(reader)
        latencies.append(time.perf_counter() - start)  # type: ignore[arg-type]
        if status != 200:
            bad.append(f"{status} {answer[:200]!r}")  # type: ignore[arg-type]
    writer.close()


async def run(url: str, body: bytes, connections: int, duration: float) -> dict[str, object]:
    out: dict[str, list[float] | list[str]] = {"latencies": [], "bad": []}
    start = time.perf_counter()
    await asyncio.gather(*(worker(url, body, start + duration, out) for _ in range(connections)))
    took = time.perf_counter() - start
    micros = np.asarray(out["latencies"], dtype=np.float64) * 1e6
    p50, p90, p99 = np.percentile(micros, [50, 90, 99]) if micros.size else (0, 0, 0)
    return {
        "requests": int(micros.size),
        "duration_us": int(took * 1e6),
        "p50_us": int(p50),
        "p90_us": int(p90),
        "p99_us": int(p99),
        "max_us": int(micros.max(initial=0)),
        "not200": len(out["bad"]),
        "connect": 0,
        "read": 0,
        "write": 0,
        "timeout": 0,
        "status": len(out["bad"]),
        "first_bad": str(out["bad"][0]) if out["bad"] else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=15.0)
    args = parser.parse_args()
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(run(args.url, args.body.read_bytes(), args.connections, args.duration))
    print("BENCH " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
