"""The servers of bench/serve.py: their venvs, command lines, and starting and stopping them.

Each server is started in its own process group (so that stopping it reaches
its workers) with one OpenMP thread per process, and is stopped with SIGTERM to
that group, then SIGKILL if it has not exited after ``STOP_TIMEOUT`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from _common import ROOT

VENVS = ROOT / "bench" / ".venvs"
LIGHTGBM = metadata.version("lightgbm")  # the peers use the dev venv's LightGBM
PINS = {
    "mlflow": ["mlflow==3.17.2", f"lightgbm=={LIGHTGBM}"],
    "bentoml": ["bentoml==1.4.40", f"lightgbm=={LIGHTGBM}"],
}
# One OpenMP thread everywhere; no usage reports (the network only reaches registries).
COMMON_ENV = {
    "OMP_NUM_THREADS": "1",
    "SETPOINT_NUM_THREADS": "1",
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "PYTHONUNBUFFERED": "1",
}
STOP_TIMEOUT = 20.0


class BenchError(RuntimeError):
    """A piece the benchmark needs is missing or broken; the message names it."""


@dataclass
class Server:
    name: str
    command: list[str]
    predict_path: str
    ready_path: str
    body: Path
    score: Callable[[Any], float]  # the score of the first record, from the decoded answer
    env: dict[str, str] = field(default_factory=dict)
    versions: str = ""
    cwd: Path = ROOT


# Venvs -------------------------------------------------------------------------------
def peer_python(name: str, *, fresh: bool = False) -> Path:
    """The venv of a peer, created (or its pins installed) when needed."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    wanted = {p.split("==")[0]: p.split("==")[1] for p in PINS[name]}
    if not fresh and python.exists() and installed(python, list(wanted)) == wanted:
        return python
    print(f"Setting up {venv.relative_to(ROOT)}: pip install {' '.join(PINS[name])}", flush=True)
    if fresh or not python.exists():
        run_step([sys.executable, "-m", "venv", "--clear", str(venv)], f"venv for {name}")
    pip = [str(python), "-m", "pip", "install", "--quiet", *PINS[name]]
    try:
        run_step(pip, f"pip install for {name}")
    except BenchError:
        print("  pip failed; trying once more", flush=True)
        run_step(pip, f"pip install for {name}")
    return python


def installed(python: Path, packages: list[str]) -> dict[str, str]:
    code = "import json, sys\nfrom importlib import metadata as m\nout = {}\n"
    code += "for p in sys.argv[1:]:\n    try: out[p] = m.version(p)\n    except Exception: pass\n"
    code += "print(json.dumps(out))"
    done = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def run_step(command: list[str], what: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if "Location" not in ln]
        raise BenchError(f"{what} failed: {' '.join(command[:6])}\n  " + "\n  ".join(lines[-6:]))
    return done.stdout


# Process control -----------------------------------------------------------------------
def cpu_ticks() -> tuple[int, int]:
    """Busy and total ticks of all cores so far (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def busy_share(seconds: float = 2.0) -> float:
    """The share of all cores' time spent busy over ``seconds``."""
    busy0, total0 = cpu_ticks()
    time.sleep(seconds)
    busy1, total1 = cpu_ticks()
    return (busy1 - busy0) / max(total1 - total0, 1)


@dataclass(frozen=True)
class Usage:
    """CPU seconds so far: all cores busy, a server's processes, this script's children."""

    machine: float
    total: float
    server: float
    children: float

    @classmethod
    def now(cls, server_pid: int) -> Usage:
        busy, total = cpu_ticks()
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        clock = os.sysconf("SC_CLK_TCK")
        own = child.ru_utime + child.ru_stime
        return cls(busy / clock, total / clock, tree_cpu(server_pid), own)

    def others_since(self, before: Usage) -> float:
        """The share of the cores used by processes neither the server nor the load."""
        used = (self.server - before.server) + (self.children - before.children)
        other = (self.machine - before.machine) - used
        return max(other, 0.0) / max(self.total - before.total, 1e-9)


def _stat(pid: int) -> list[str] | None:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone meanwhile
        return None


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it (BentoML's workers leave its process group)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) used so far by ``root`` and its live descendants."""
    ticks = 0
    for pid in descendants(root):
        fields = _stat(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_quiet(below: float, patience: float) -> float:
    """Wait (up to ``patience`` s) until other processes leave the cores idle; the last share."""
    deadline = time.monotonic() + patience
    share = busy_share()
    while share >= below and time.monotonic() < deadline:
        print(f"    (cores {share:.0%} busy with other work: waiting)", flush=True)
        time.sleep(8)
        share = busy_share()
    return share


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start(server: Server, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **COMMON_ENV, **server.env}
    with log.open("wb") as out:
        return subprocess.Popen(
            server.command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=server.cwd,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], port: int) -> None:
    """SIGTERM to the server's process group, SIGKILL after STOP_TIMEOUT; the port is freed."""
    tree = descendants(process.pid)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"  (pid {process.pid} ignored SIGTERM for {STOP_TIMEOUT:.0f} s: SIGKILL)")
    # Workers may outlive their parent: whatever is left of the group goes too.
    with_group = True
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        with_group = False
    if with_group:
        process.wait()
    for pid in tree[1:]:  # started by this server but outside its group, and still there
        if _stat(pid) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while port_open(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    if port_open(port):
        raise BenchError(f"port {port} is still taken after stopping pid {process.pid}")


def request(url: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    call = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(call, timeout=timeout) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def wait_ready(server: Server, process: subprocess.Popen[bytes], port: int, log: Path) -> float:
    """Seconds until ``ready_path`` answers 200; BenchError if the server dies or times out."""
    started, deadline = time.monotonic(), time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{server.name} exited with {process.returncode}:\n{tail(log)}")
        try:
            if request(f"http://127.0.0.1:{port}{server.ready_path}", timeout=2)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.25)
    raise BenchError(f"{server.name} not ready after 180 s:\n{tail(log)}")


def tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    return "  " + "\n  ".join(text[-lines:]) + f"\n  (log: {log})"


# The four servers -------------------------------------------------------------------------
def first(path: str) -> Callable[[Any], float]:
    """Reads the score at ``path`` ("predictions.0.score") of a decoded answer."""

    def read(answer: Any) -> float:
        for key in path.split("."):
            answer = answer[int(key)] if key.isdigit() else answer[key]
        return float(answer)

    return read


def setpoint_server(project: Path, body: Path, port: int, workers: int) -> Server:
    cli = Path(sys.executable).parent / "setpoint"
    base = [str(cli)] if cli.exists() else [sys.executable, "-m", "setpoint"]
    probe = subprocess.run([*base, "serve", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise BenchError(
            "`setpoint serve` is not available in this checkout (`setpoint serve --help` "
            f"exited {probe.returncode}). Measure the others with --only mlflow,bentoml,bare."
        )
    # The project folder: positional (docs/serving.md) or --dir, whichever this CLI takes.
    where = ["--dir", str(project)] if "--dir" in probe.stdout else [str(project)]
    command = [*base, "serve", *where, *f"--port {port} --workers {workers}".split()]
    packages = ["setpoint", "starlette", "uvicorn", "uvloop", "httptools", "orjson", "lightgbm"]
    score = first("predictions.0.score")
    return Server("setpoint", command, "/v1/predict", "/readyz", body, score, {},
                  own_versions(packages))  # fmt: skip


def own_versions(packages: list[str]) -> str:
    """Versions in this (the dev) venv."""
    return ", ".join(f"{p} {metadata.version(p)}" for p in packages)


def with_path(python: Path) -> dict[str, str]:
    """PATH with the venv's bin first: the peers start their own tools (``uvicorn``) by name."""
    return {"PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def mlflow_server(model_dir: Path, body: Path, port: int, workers: int, fresh: bool) -> Server:
    python = peer_python("mlflow", fresh=fresh)
    options = f"--env-manager local --host 127.0.0.1 --port {port} --workers {workers}"
    command = [str(python.parent / "mlflow"), "models", "serve", "-m", str(model_dir)]
    command += options.split()
    got = installed(python, ["mlflow", "lightgbm", "uvicorn", "fastapi"])
    return Server("mlflow", command, "/invocations", "/ping", body, first("predictions.0"),
                  with_path(python), ", ".join(f"{k} {v}" for k, v in got.items()))  # fmt: skip


def save_mlflow_model(model_file: Path, body: Path, out: Path, fresh: bool) -> None:
    python = peer_python("mlflow", fresh=fresh)
    script = ROOT / "bench" / "_mlflow_model.py"
    run_step([str(python), str(script), str(model_file), str(body), str(out)], "mlflow save_model")


def bentoml_server(model_file: Path, body: Path, port: int, workers: int, fresh: bool) -> Server:
    python = peer_python("bentoml", fresh=fresh)
    command = [str(python.parent / "bentoml"), "serve", "_bento_service:Booster"]
    command += ["--working-dir", str(ROOT / "bench"), "--host", "127.0.0.1", "--port", str(port)]
    env = {"BENCH_MODEL": str(model_file), "BENCH_WORKERS": str(workers), **with_path(python)}
    got = installed(python, ["bentoml", "lightgbm", "uvicorn", "starlette"])
    return Server("bentoml", command, "/predict", "/readyz", body, first("0"), env,
                  ", ".join(f"{k} {v}" for k, v in got.items()))  # fmt: skip


def bare_server(model_file: Path, body: Path, port: int, workers: int) -> Server:
    options = f"--host 127.0.0.1 --port {port} --workers {workers} --loop uvloop --http httptools"
    command = [sys.executable, "-m", "uvicorn", "_bare_app:app", "--app-dir", str(ROOT / "bench")]
    command += [*options.split(), "--no-access-log", "--log-level", "warning"]
    packages = ["starlette", "uvicorn", "uvloop", "httptools", "orjson", "lightgbm"]
    env = {"BENCH_MODEL": str(model_file)}
    return Server("bare", command, "/predict", "/health", body, first("scores.0"), env,
                  own_versions(packages))  # fmt: skip
