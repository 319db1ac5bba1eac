"""A real flights project and a real `setpoint serve` process on loopback, for server tests."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from setpoint.config.loader import SPEC_FILE, dump_spec
from setpoint.config.spec import ModelRecipe, ServingSpec, SplitSpec
from setpoint.project import Project
from setpoint.quickstart.build import quickstart_spec
from setpoint.quickstart.flights import flight_events

REPO = Path(__file__).resolve().parents[2]


def events(cache: Path) -> pd.DataFrame:
    """The real flights of 1 to 14 January 2013, with their weather."""
    frame = flight_events(cache=cache)
    local = frame["scheduled_at"].dt.tz_convert("America/New_York")
    keep = (local.dt.month == 1) & (local.dt.day <= 14)
    return frame[keep].reset_index(drop=True)


def build_project(
    root: Path, frame: pd.DataFrame, *, serving: dict[str, Any] | None = None
) -> None:
    """Ingest ``frame``, train version 1 (champion) and version 2 (registered, not promoted)."""
    root.mkdir(parents=True, exist_ok=True)
    spec = quickstart_spec().model_copy(
        update={
            "model": ModelRecipe(
                params={"n_estimators": 60, "num_leaves": 15},
                split=SplitSpec(test_fraction=0.2, valid_fraction=0.15),
            ),
            "serving": ServingSpec(**(serving or {})),
        }
    )
    (root / SPEC_FILE).write_text(dump_spec(spec), encoding="utf-8")
    project = Project.open(root)
    project.ingest(frame, name="events")
    project.train(dataset="events")
    project.store.db.dispose()
    # A second, different model for swaps: registered without taking the alias.
    tweaked = spec.model_copy(
        update={
            "model": spec.model.model_copy(update={"params": {"n_estimators": 20, "num_leaves": 4}})
        }
    )
    (root / SPEC_FILE).write_text(dump_spec(tweaked), encoding="utf-8")
    project = Project.open(root)
    project.train(dataset="events", promote=False)
    project.store.db.dispose()
    (root / SPEC_FILE).write_text(dump_spec(spec), encoding="utf-8")


def set_serving(root: Path, **serving: Any) -> None:
    """Rewrite the spec's ``serving`` section (read by servers started afterwards)."""
    from setpoint.config.loader import load_spec

    spec = load_spec(root / SPEC_FILE)
    spec = spec.model_copy(update={"serving": ServingSpec(**serving)})
    (root / SPEC_FILE).write_text(dump_spec(spec), encoding="utf-8")


def copy_project(base: Path, target: Path) -> Path:
    shutil.copytree(base, target, ignore=shutil.ignore_patterns("predictions", "run"))
    return target


def records(frame: pd.DataFrame, n: int, *, start: int = 0) -> list[dict[str, Any]]:
    """``n`` rows as JSON records: no target, NaN as null, times as ISO text."""
    out = []
    for row in frame.iloc[start : start + n].to_dict("records"):
        row.pop("late", None)
        for key, value in row.items():
            if isinstance(value, pd.Timestamp):
                row[key] = value.isoformat()
            elif isinstance(value, float) and math.isnan(value):
                row[key] = None
        out.append(row)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    """`setpoint serve` in its own process group (so kill -9 reaches every worker)."""

    def __init__(
        self,
        root: Path,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, **(env or {})}
        full_env.setdefault("PYTHONPATH", str(REPO / "src"))
        self.log_path = root / f"serve-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "setpoint",
                "serve",
                "--dir",
                str(root),
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
                *args,
            ],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0, *, path: str = "/readyz") -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as http:  # one client: each new one costs ~20 ms
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited: {self.log()}")
                try:
                    if http.get(f"{self.url}{path}").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"the server was not ready in {timeout} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=30)
        self._log.close()


@contextmanager
def serving(
    root: Path,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    ready: bool = True,
    args: tuple[str, ...] = (),
) -> Iterator[ServerProcess]:
    server = ServerProcess(root, workers=workers, env=env, args=args)
    try:
        server.wait_ready(path="/readyz" if ready else "/healthz")
        yield server
    finally:
        server.kill(signal.SIGTERM)
