"""Server time of each dashboard page, against a project's store.

Starts ``setpoint ui`` on the project, asks for every page ``--rounds`` times
(one untimed warm-up first) over loopback, and prints the median and the
slowest answer per page, in milliseconds, with the size of each page. The
times include loopback HTTP, so they are a little above the server's own.

The issue's budget is 300 ms per page on the quickstart project after a
replayed year. To build that project:

    setpoint quickstart --dir bench/.work/ui
    setpoint serve -C bench/.work/ui --workers 2 --port 8010 &
    setpoint replay -C bench/.work/ui --url http://127.0.0.1:8010 \\
        --from 2013-08-01 --to 2014-01-01 --rate 3000
    setpoint monitor -C bench/.work/ui --window 1w --clock event
    python bench/ui_pages.py --dir bench/.work/ui
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

PAGES = ["/", "/monitoring", "/events", "/quality", "/models/1", "/actions/promote?version=1"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="The project folder.")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "setpoint", "ui", "--dir", str(args.dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/ui"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        load = os.getloadavg()[0]
        print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, load {load:.2f}")
        print("| page | median ms | slowest ms | KB |")
        print("|---|---:|---:|---:|")
        with httpx.Client(timeout=30) as client:
            for path in PAGES:
                client.get(base + path)
                times: list[float] = []
                size = 0
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    answer = client.get(base + path)
                    times.append((time.perf_counter() - started) * 1000)
                    size = len(answer.content)
                    if answer.status_code != 200:
                        raise SystemExit(f"{path}: HTTP {answer.status_code}")
                print(
                    f"| `{path}` | {statistics.median(times):.1f} | {max(times):.1f} | "
                    f"{size / 1024:.0f} |"
                )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
