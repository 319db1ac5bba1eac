"""Promote under load: how long in-flight predictions wait while the champion moves.

Builds a flights project of quickstart size (default model parameters, the
months given by --months, a fifth of them held out), serves it with one worker,
and sends a steady stream of single-record predictions from client threads.
In each round it moves the champion twice; it reports, for each phase, the median and
p99 latency, the worst latency and the longest gap between two answers:

- steady: no alias moves;
- admin promote: POST /v1/admin/promote (the server gates, in a child process, then swaps);
- CLI promote: `setpoint model promote` in another process (the gate runs
  there; the server only loads, warms and swaps the new version).

    python bench/promote_stall.py [--months 7] [--threads 2] [--rounds 3] [--steady 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from _common import WORK, print_machine, print_table

import setpoint
from setpoint.config.loader import SPEC_FILE, dump_spec
from setpoint.config.spec import ModelRecipe, SplitSpec
from setpoint.project import Project
from setpoint.quickstart.build import quickstart_spec
from setpoint.quickstart.flights import flight_events

# The server and the CLI run the setpoint this script imported (PYTHONPATH decides).
ENV = {**os.environ, "PYTHONPATH": str(Path(setpoint.__file__).resolve().parent.parent)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def bodies(frame: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    """``n`` single-record predict bodies: no target, times as ISO text, NaN as null."""
    rows = frame.drop(columns=["late"]).iloc[:n]
    return [
        {"records": [record]}
        for record in json.loads(rows.to_json(orient="records", date_format="iso"))
    ]


def build(root: Path, *, months: int, fresh: bool) -> Any:
    """Version 1 (champion) and version 2 (registered), both with default sizes."""
    events = flight_events(cache=WORK / "cache")
    local = events["scheduled_at"].dt.tz_convert("America/New_York")
    frame = events[local.dt.month <= months].reset_index(drop=True)
    built = root / f"built-{months}"
    if built.exists() and not fresh:
        project = Project.open(root)
        if (
            project.aliases().get("champion") != 1
        ):  # an earlier run was stopped between its promotes
            project.promote(1, force=True, reason="bench: start from version 1")
        project.store.db.dispose()
        return frame
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    split = SplitSpec(test_fraction=0.2, valid_fraction=0.15)
    spec = quickstart_spec().model_copy(update={"model": ModelRecipe(split=split)})
    (root / SPEC_FILE).write_text(dump_spec(spec), encoding="utf-8")
    project = Project.open(root)
    project.ingest(frame, name="events")
    project.train(dataset="events")
    project.store.db.dispose()
    other = spec.model_copy(
        update={"model": ModelRecipe(split=split, params={"learning_rate": 0.08})}
    )
    (root / SPEC_FILE).write_text(dump_spec(other), encoding="utf-8")
    project = Project.open(root)
    project.train(dataset="events", promote=False)
    project.store.db.dispose()
    (root / SPEC_FILE).write_text(dump_spec(spec), encoding="utf-8")
    built.touch()
    return frame


class Stream:
    """Client threads, each sending one single-record predict after another."""

    def __init__(self, url: str, bodies: list[dict[str, Any]], threads: int) -> None:
        self.url, self.bodies = url, bodies
        self.done: list[tuple[float, float]] = []  # (sent, answered), monotonic seconds
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            n = 0
            while not self._stop.is_set():
                sent = time.monotonic()
                response = client.post("/v1/predict", json=self.bodies[n % len(self.bodies)])
                answered = time.monotonic()
                n += 1
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")
                self.done.append((sent, answered))

    def figures(self, windows: list[tuple[float, float]]) -> dict[str, float]:
        """Over ``windows``: latency percentiles, the worst latency and the longest
        gap between two answers, in ms."""
        took: list[float] = []
        gaps: list[float] = []
        for since, until in windows:
            took += [a - s for s, a in self.done if since <= s <= until]
            ends = sorted(a for s, a in self.done if since <= a <= until)
            gaps += [b - a for a, b in zip([since, *ends], [*ends, until], strict=True)]
        took.sort()

        def pct(p: float) -> float:
            return took[min(len(took) - 1, int(p * len(took)))] * 1000 if took else float("nan")

        return {
            "requests": len(took),
            "p50": pct(0.50),
            "p99": pct(0.99),
            "worst": took[-1] * 1000 if took else float("nan"),
            "gap": max(gaps) * 1000,
        }


def serve(root: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "setpoint", "serve", "--dir", str(root)]
    command += ["--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(command, env=ENV, start_new_session=True)


def wait_served_by(url: str, version: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                if client.get("/readyz").json().get("champion") == version:
                    return
            except (httpx.TransportError, KeyError, TypeError):
                pass
            time.sleep(0.05)
    raise TimeoutError(f"version {version} was not served in {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=7, help="January to this month")
    parser.add_argument("--threads", type=int, default=2, help="client threads")
    parser.add_argument("--steady", type=float, default=5.0, help="seconds of steady state a round")
    parser.add_argument("--rounds", type=int, default=3, help="promotes of each kind")
    parser.add_argument("--fresh", action="store_true", help="build the project again")
    args = parser.parse_args()
    print_machine(["lightgbm", "pandas", "uvicorn", "httpx"])
    root = WORK / "promote-stall"
    started = time.perf_counter()
    frame = build(root, months=args.months, fresh=args.fresh)
    print(
        f"project    {len(frame):,} rows (2013-01 to 2013-{args.months:02d}), built in "
        f"{time.perf_counter() - started:.0f} s"
    )
    key = subprocess.run(
        [
            sys.executable,
            "-m",
            "setpoint",
            "keys",
            "create",
            "-C",
            str(root),
            f"bench-{os.getpid()}",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = serve(root, port)
    rows: list[list[str]] = []
    try:
        wait_served_by(url, 1)
        stream = Stream(url, bodies(frame, 500), args.threads)
        stream.start()
        time.sleep(2)  # past the first requests' warm-up
        phases: dict[str, list[tuple[float, float]]] = {"steady": [], "admin": [], "cli": []}
        took: dict[str, list[float]] = {"admin": [], "cli": []}
        for _ in range(args.rounds):
            t0 = time.monotonic()
            time.sleep(args.steady)
            phases["steady"].append((t0, time.monotonic()))

            t0 = time.monotonic()
            answer = httpx.post(
                f"{url}/v1/admin/promote",
                json={"version": 2, "force": True, "reason": "bench"},
                headers={"Authorization": f"Bearer {key}"},
                timeout=300,
            )
            answer.raise_for_status()
            wait_served_by(url, 2)
            phases["admin"].append((t0, time.monotonic()))
            took["admin"].append(time.monotonic() - t0)

            time.sleep(1)
            t0 = time.monotonic()
            back = ["model", "promote", "-C", str(root), "1", "--force", "--reason", "bench"]
            subprocess.run(
                [sys.executable, "-m", "setpoint", *back], env=ENV, capture_output=True, check=True
            )
            wait_served_by(url, 1)
            phases["cli"].append((t0, time.monotonic()))
            took["cli"].append(time.monotonic() - t0)
            time.sleep(1)
        stream.stop()

        def each(phase: str) -> str:
            return ", ".join(f"{t:.1f}" for t in took[phase]) + " s"

        names = {
            "steady": f"steady ({args.steady:.0f} s a round)",
            "admin": f"POST /v1/admin/promote ({each('admin')})",
            "cli": f"setpoint model promote ({each('cli')})",
        }
        for phase, windows in phases.items():
            f = stream.figures(windows)
            rows.append(
                [
                    names[phase],
                    f"{f['requests']:.0f}",
                    f"{f['p50']:.1f}",
                    f"{f['p99']:.1f}",
                    f"{f['worst']:.0f}",
                    f"{f['gap']:.0f}",
                ]
            )
        if stream.failures:
            print(f"FAILURES: {len(stream.failures)}, first: {stream.failures[0]}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    print_table(
        f"Single-record predicts from {args.threads} client thread(s), 1 worker, "
        f"{args.rounds} rounds (ms)",
        ["phase", "requests", "p50", "p99", "worst", "longest gap"],
        rows,
    )


if __name__ == "__main__":
    main()
