"""`setpoint serve` while its prediction log cannot be written, and bodies it cannot log.

A full disk (a real, small tmpfs under the project's predictions) and a PostgreSQL
outage (a server the test owns) must turn the server not ready and its predictions
into 503s, and the server must recover by itself once the log can be written
again, with every acknowledged prediction logged exactly once. Mounting a tmpfs
and running PostgreSQL need root here; without it the tests are skipped, except
in CI, where they fail.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from _support.mounts import cannot, fill, tmpfs
from _support.serving import (
    ServerProcess,
    build_project,
    copy_project,
    free_port,
    records,
    serving,
)
from setpoint.traffic.segments import read_logs

pytestmark = [pytest.mark.slow, pytest.mark.hostile]

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def wait_until_ready(http: httpx.Client, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (ready := http.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, ready.text
        time.sleep(0.05)


def error_of(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert (error["status"], error["kind"]) == (status, kind), error
    return error


def test_a_full_disk_makes_the_server_unready_until_there_is_room_again(
    project_dir: Path, flights: pd.DataFrame
) -> None:
    folder = project_dir / ".setpoint" / "predictions"
    answered: list[str] = []  # request ids of the 200s
    refused: list[str] = []
    with tmpfs(folder, size="2m"):
        with serving(project_dir) as server, httpx.Client(base_url=server.url, timeout=10) as http:

            def predict(start: int) -> httpx.Response:
                # batches of 5: a write then spans pages, so a full disk cuts it midway
                response = http.post(
                    "/v1/predict", json={"records": records(flights, 5, start=start)}
                )
                if response.status_code == 200:
                    answered.append(response.json()["request_id"])
                else:
                    refused.append(response.json()["error"]["request_id"])
                return response

            for n in range(20):
                assert predict(5 * n).status_code == 200
            filler = fill(folder)
            # the segment's last page may still have room for a batch or so
            tries = 0
            while (response := predict(100 + 5 * tries)).status_code == 200:
                tries += 1
                assert tries < 20, "the full disk never failed a write"
            error = error_of(response, 503, "unavailable")
            assert "prediction log" in error["message"]
            assert "No space left on device" in error["message"], error
            ready = error_of(http.get("/readyz"), 503, "log_unavailable")
            assert "cannot be written" in ready["message"]
            assert "No space left on device" in ready["message"], ready
            for n in range(5):  # refused at once while the disk is full
                error_of(predict(105 + 5 * n), 503, "unavailable")

            filler.unlink()
            wait_until_ready(http)
            for n in range(20):
                assert predict(200 + 5 * n).status_code == 200
        logged = read_logs(folder / "flights").select(["request_id", "index"]).to_pylist()
    assert len(answered) == 40 + tries
    counts = collections.Counter((row["request_id"], row["index"]) for row in logged)
    assert set(counts) == {(rid, i) for rid in answered for i in range(5)}  # none refused
    assert set(counts.values()) == {1}


def run_as_postgres(*args: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True)


class OwnPostgres:
    """A PostgreSQL server of the test's own: its data directory, port and socket folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        run_as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.folder / "data"), "-A", "trust",
            "-U", "postgres", "--no-sync", "--no-instructions",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        run_as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-l",
            str(self.folder / "server.log"), "-w", "-o", options, "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        run_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-w",
                        "-m", mode, "stop")  # fmt: skip


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        cannot(f"PostgreSQL 15 ({PG_BIN}) and runuser are needed to run a PostgreSQL server")
    if os.geteuid() != 0:
        cannot("running PostgreSQL as the postgres user needs root")
    folder = Path(tempfile.mkdtemp(prefix="setpoint-pg-"))
    shutil.chown(folder, user="postgres")
    server = OwnPostgres(folder)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if (folder / "data" / "postmaster.pid").exists():
            server.stop("immediate")
        shutil.rmtree(folder)


def test_a_postgresql_outage_makes_the_server_unready_until_it_is_back(
    own_postgres: OwnPostgres,
    tmp_path: Path,
    flights: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sqlalchemy as sa

    env = {k: v for k, v in os.environ.items() if not k.startswith("SETPOINT_")}
    env["SETPOINT_DB_URL"] = own_postgres.url
    monkeypatch.setenv("SETPOINT_DB_URL", own_postgres.url)
    root = tmp_path / "pg"
    build_project(root, flights.iloc[:4000])
    answered: list[str] = []
    server = ServerProcess(root, env=env)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as http:

            def predict(start: int) -> httpx.Response:
                response = http.post(
                    "/v1/predict", json={"records": records(flights, 1, start=start)}
                )
                if response.status_code == 200:
                    answered.append(response.json()["request_id"])
                return response

            for n in range(10):
                assert predict(n).status_code == 200
            own_postgres.stop("immediate")
            error = error_of(predict(10), 503, "unavailable")
            assert "prediction log" in error["message"], error
            ready = error_of(http.get("/readyz"), 503, "log_unavailable")
            assert "cannot be written" in ready["message"], ready
            for n in range(3):
                error_of(predict(11 + n), 503, "unavailable")
            own_postgres.start()
            wait_until_ready(http)
            for n in range(10):
                assert predict(20 + n).status_code == 200
    finally:
        server.kill()
    engine = sa.create_engine(own_postgres.url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT request_id, count(*) FROM predictions GROUP BY request_id")
            ).all()
    finally:
        engine.dispose()
    counts = dict(rows)
    assert len(answered) == 20
    assert all(counts.get(rid) == 1 for rid in answered), counts  # none lost, none twice


@pytest.fixture(scope="module")
def logging_server(
    flights_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server for the tests that read what it logged of a request they sent."""
    root = copy_project(flights_project, tmp_path_factory.mktemp("logging") / "flights")
    with serving(root) as running:
        yield running


def logged_ids(server: ServerProcess) -> set[str]:
    table = read_logs(server.root / ".setpoint" / "predictions" / "flights")
    return set(table.column("request_id").to_pylist())


@pytest.mark.parametrize(
    ("levels", "at"),
    [
        (10_000, 3),  # deeper than orjson parses: it was a 400 that blamed the JSON
        (300, 2),  # parsed, but deeper than orjson encodes: a 500 as the log encoded record 2
    ],
)
def test_deep_nesting_in_an_unused_column_is_refused_and_nothing_of_it_is_logged(
    logging_server: ServerProcess, flights: pd.DataFrame, levels: int, at: int
) -> None:
    batch: list[dict[str, Any]] = records(flights, 5, start=300)
    batch[at]["late"] = "NESTED"  # the target: a column of the schema the model does not use
    body = json.dumps({"records": batch}).replace('"NESTED"', "[" * levels + "]" * levels)
    with httpx.Client(base_url=logging_server.url, timeout=10) as http:
        response = http.post(
            "/v1/predict", content=body, headers={"content-type": "application/json"}
        )
        error = error_of(response, 422, "invalid_request")
        assert "deeper than 32 levels" in error["message"], error
        assert f"records[{at}].late[0]" in error["message"], error
        assert error["errors"][0]["kind"] == "too_deep"
        assert (error["errors"][0]["record"], error["errors"][0]["field"]) == (at, "late")
        # the body, records and a record are 3 levels: 29 more reach the bound, and pass
        fine = http.post(
            "/v1/predict",
            content=body.replace("[" * levels + "]" * levels, "[" * 29 + "]" * 29),
            headers={"content-type": "application/json"},
        )
        assert fine.status_code == 200, fine.text
    logged = logged_ids(logging_server)
    assert fine.json()["request_id"] in logged  # the log is read after the answer
    assert error["request_id"] not in logged
