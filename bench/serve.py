"""Serving throughput and latency: setpoint serve against MLflow, BentoML and a bare handler.

One LightGBM model (200 trees, 30 numeric features, binary), trained by setpoint
on synthetic data with a fixed seed (bench/_serve_model.py), is served in turn by:

* setpoint: ``setpoint serve <project> --workers 2`` (validation against the
  schema, the durable prediction log, metrics: everything it does per request);
* MLflow: ``mlflow models serve --env-manager local --workers 2`` on the booster
  saved with ``mlflow.lightgbm`` (own venv, bench/.venvs/mlflow);
* BentoML: a minimal ``@bentoml.service(workers=2)`` calling the booster
  (own venv, bench/.venvs/bentoml);
* bare: a Starlette route on uvicorn (uvloop, httptools, 2 workers) that parses
  the JSON and calls ``Booster.predict``: the practical ceiling.

Every server has OMP_NUM_THREADS=1 (and SETPOINT_NUM_THREADS=1), gets the same
single-record body (MLflow in its ``dataframe_records`` shape), and must answer
it with a 200 and the booster's own score before and after each run. All four
are started, then measured one at a time while the others idle, in ``--rounds``
rounds (the order reversed every other round), each run waiting until other
processes leave the cores idle. The load is ``wrk`` (Debian package ``wrk``)
with bench/_wrk_post.lua: ``--connections`` connections on ``--threads``
threads, a warm-up, then ``--duration`` seconds; an error or an answer outside
2xx-3xx (wrk's count; with ``--every-response`` anything but 200) fails the
run. Without wrk a Python load generator (bench/_loadgen.py, one process) is
used, and said so. Server CPU is the user + system time of the server's
processes during the run, per request.

    python bench/serve.py                                  # all four, 15 s each
    python bench/serve.py --only bare,mlflow --duration 5  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _serve_peers as peers
from _common import ROOT, WORK, median, print_machine
from _serve_model import BenchModel, build, write_bodies

HERE = WORK / "serve"
ATTEMPTS = 3  # runs of one server in one round, when other processes disturb them
ORDER = ["setpoint", "mlflow", "bentoml", "bare"]
LABELS = {
    "setpoint": "setpoint serve",
    "mlflow": "mlflow models serve",
    "bentoml": "BentoML",
    "bare": "bare Starlette + uvicorn",
}


@dataclass(frozen=True)
class Load:
    connections: int
    threads: int
    duration: float
    warmup: float
    wrk: str | None  # its path; None: the Python fallback
    every: bool = False  # wrk: check each answer is a 200 in Lua (costs wrk some speed)

    def command(self, url: str, body: Path, seconds: float) -> list[str]:
        if self.wrk is None:
            script = str(ROOT / "bench" / "_loadgen.py")
            options = f"--connections {self.connections} --duration {seconds}"
            return [sys.executable, script, url, str(body), *options.split()]
        options = f"-t{self.threads} -c{self.connections} -d{seconds:g}s --latency --timeout 10s"
        script = str(ROOT / "bench" / "_wrk_post.lua")
        return [self.wrk, *options.split(), "-s", script, url, "--", str(body)]

    def run(self, url: str, body: Path, seconds: float) -> dict[str, Any]:
        env = {**os.environ, "BENCH_EVERY_RESPONSE": "1" if self.every else "0"}
        command = self.command(url, body, seconds)
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")]
        if done.returncode != 0 or not lines:
            raise peers.BenchError(f"the load generator failed:\n{done.stdout}{done.stderr}")
        result: dict[str, Any] = json.loads(lines[-1][len("BENCH ") :])
        failed = ("not200", "status", "connect", "read", "write", "timeout")
        if any(result[k] for k in failed) or not result["requests"]:
            raise peers.BenchError(f"{url}: not every request got a 200: {result}")
        result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
        return result


def prepare(name: str, model: BenchModel, bodies: dict[str, Path], args: Any) -> peers.Server:
    port = peers.free_port()
    if name == "setpoint":
        return peers.setpoint_server(model.project_dir, bodies["records"], port, args.workers)
    if name == "mlflow":
        model_dir = HERE / "mlflow-model"
        peers.save_mlflow_model(model.model_file, bodies["records"], model_dir, args.fresh_peers)
        return peers.mlflow_server(
            model_dir, bodies["dataframe_records"], port, args.workers, args.fresh_peers
        )
    if name == "bentoml":
        return peers.bentoml_server(
            model.model_file, bodies["records"], port, args.workers, args.fresh_peers
        )
    return peers.bare_server(model.model_file, bodies["records"], port, args.workers)


def port_of(server: peers.Server) -> int:
    return int(server.command[server.command.index("--port") + 1])


@dataclass
class Running:
    server: peers.Server
    process: subprocess.Popen[bytes]
    port: int
    url: str
    runs: list[dict[str, Any]]


def launch(server: peers.Server, model: BenchModel) -> Running:
    """Start a server, wait until it is ready and check it answers the booster's score."""
    port = port_of(server)
    if peers.port_open(port):
        raise peers.BenchError(f"port {port} is taken before {server.name} starts")
    log = HERE / f"{server.name}.log"
    print(f"\n{server.name}: {' '.join(server.command)}", flush=True)
    process = peers.start(server, log)
    running = Running(server, process, port, f"http://127.0.0.1:{port}{server.predict_path}", [])
    try:
        took = peers.wait_ready(server, process, port, log)
        score = check(running, model)
    except BaseException:
        peers.stop(process, port)
        raise
    print(f"  ready in {took:.1f} s; answers {score:.9f}, the booster's score; {server.versions}")
    return running


def check(running: Running, model: BenchModel) -> float:
    """One request: it must get a 200 and the booster's score for the record."""
    server = running.server
    status, answer = peers.request(running.url, server.body.read_bytes())
    if status != 200:
        raise peers.BenchError(f"{server.name} answered {status}: {answer[:500]!r}")
    score = server.score(json.loads(answer))
    if abs(score - model.score) > 1e-9:
        raise peers.BenchError(f"{server.name} scores {score}, the booster {model.score}")
    return score


def measure(
    running: dict[str, Running], model: BenchModel, load: Load, rounds: int, quiet: float
) -> None:
    """``rounds`` rounds, each a warm-up and a measured run of every server in turn
    (the order reversed every other round); the others stay up, idle. Each run
    waits (up to 10 minutes) until the cores are less than ``quiet`` busy, and is
    taken again (up to ATTEMPTS times) when other processes used more than that."""
    names = list(running)
    for number in range(rounds):
        print(f"\nRound {number + 1}/{rounds}", flush=True)
        for name in names if number % 2 == 0 else names[::-1]:
            got = running[name]
            for attempt in range(1, ATTEMPTS + 1):
                run = one_run(got, load, quiet)
                check(got, model)  # still answering right after the load
                print(
                    f"  {name:9} {run['rps']:8,.0f} req/s  p50 {run['p50_us'] / 1e3:6.2f} ms  "
                    f"p99 {run['p99_us'] / 1e3:6.2f} ms  server CPU {run['cpu_ms']:.3f} "
                    f"ms/request  {run['requests']:,} requests, no errors; other processes "
                    f"{run['others']:.0%} of the cores",
                    flush=True,
                )
                if run["others"] < quiet or attempt == ATTEMPTS:
                    break
                print(f"    (disturbed by other processes: run {attempt + 1}/{ATTEMPTS})")
            got.runs.append(run)


def one_run(got: Running, load: Load, quiet: float) -> dict[str, Any]:
    """A warm-up and a measured run once the cores are quiet; with the server's CPU
    per request and the share of the cores other processes used meanwhile."""
    peers.wait_quiet(quiet, patience=600)
    if load.warmup > 0:
        load.run(got.url, got.server.body, load.warmup)
    before = peers.Usage.now(got.process.pid)
    run = load.run(got.url, got.server.body, load.duration)
    after = peers.Usage.now(got.process.pid)
    run["cpu_ms"] = (after.server - before.server) * 1e3 / run["requests"]
    run["others"] = after.others_since(before)
    return run


def summary(running: Running) -> dict[str, float]:
    runs = running.runs
    return {
        "rps": median([r["rps"] for r in runs]),
        "p50": median([r["p50_us"] / 1e3 for r in runs]),
        "p99": median([r["p99_us"] / 1e3 for r in runs]),
        "cpu": median([r["cpu_ms"] for r in runs]),
        "low": min(r["rps"] for r in runs),
        "high": max(r["rps"] for r in runs),
    }


def print_results(running: dict[str, Running], rounds: int) -> None:
    results = {name: summary(got) for name, got in running.items()}
    bare = results["bare"]["rps"] if "bare" in results else None
    print(f"\nMedian of {rounds} run(s) per server (requests/s min-max in brackets):\n")
    print(
        "| server | requests/s | p50 ms | p99 ms | ratio to bare handler | server CPU ms/request |"
    )
    print("|---|---|---|---|---|---|")
    for name, row in results.items():
        ratio = f"{row['rps'] / bare:.3f}" if bare else "-"
        spread = f" ({row['low']:,.0f}-{row['high']:,.0f})" if rounds > 1 else ""
        print(
            f"| {LABELS[name]} | {row['rps']:,.0f}{spread} | {row['p50']:.2f} | {row['p99']:.2f} "
            f"| {ratio} | {row['cpu']:.3f} |"
        )
    print("\nVersions:")
    for name, got in running.items():
        print(f"  {LABELS[name]}: {got.server.versions}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(ORDER), help="servers, comma-separated")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs per server")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--rows", type=int, default=50_000, help="training rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quiet", type=float, default=0.1, help="wait until the cores are less busy than this"
    )
    parser.add_argument("--fresh-peers", action="store_true", help="recreate the peer venvs")
    parser.add_argument("--python-load", action="store_true", help="use bench/_loadgen.py")
    parser.add_argument(
        "--every-response",
        dest="every",
        action="store_true",
        help="have wrk check in Lua that each answer is a 200, not only 2xx-3xx (slows wrk)",
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if not names or set(names) - set(ORDER):
        parser.error(f"--only takes some of {','.join(ORDER)}")
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rounds must be at least 1, --duration above 0, --warmup 0 or more")
    names = [n for n in ORDER if n in names]

    # SIGTERM (timeout, CI) unwinds like Ctrl+C, so that the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    print(f"$ python bench/serve.py {' '.join(sys.argv[1:])}".rstrip())
    print_machine(["setpoint", "lightgbm", "numpy", "starlette", "uvicorn"])
    wrk = None if args.python_load else shutil.which("wrk")
    load = Load(args.connections, args.threads, args.duration, args.warmup, wrk, args.every)
    if wrk is None:
        print(
            "load       NOTE: wrk not used (install it: apt-get install wrk); the Python "
            "load generator bench/_loadgen.py runs instead, one process: lower figures"
        )
    else:
        version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
        print(
            f"load       {version.split(' Copyright')[0]}, {args.threads} threads, "
            f"{args.connections} connections, {args.warmup:g} s warm-up, "
            f"{args.rounds} x {args.duration:g} s; "
            + ("each answer checked to be 200" if args.every else "wrk counts non-2xx/3xx")
        )
    try:
        HERE.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        model = build(HERE / "project", rows=args.rows, seed=args.seed)
        bodies = write_bodies(model, HERE)
        print(
            f"model      {model.trees} trees, {len(model.features)} numeric features, version "
            f"{model.version} of {model.project_dir.relative_to(ROOT)} (trained in "
            f"{time.perf_counter() - started:.0f} s); peers read {model.model_file.name}"
        )
        servers = {name: prepare(name, model, bodies, args) for name in names}
        running: dict[str, Running] = {}
        try:
            for name in names:
                running[name] = launch(servers[name], model)
            measure(running, model, load, args.rounds, args.quiet)
        finally:
            for got in running.values():
                peers.stop(got.process, got.port)
    except peers.BenchError as exc:
        sys.exit(f"\nerror: {exc}")
    print_results(running, args.rounds)
    first = running[names[0]]
    print("\nLoad, per server and run (URL and body vary; warm-up the same for --warmup s):")
    print("  " + " ".join(load.command(first.url, first.server.body, args.duration)))


if __name__ == "__main__":
    main()
