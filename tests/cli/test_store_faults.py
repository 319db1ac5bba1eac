"""A full or read-only disk under the store: one line that says what to do, and no
file left behind that no row references; ``setpoint gc`` finds and removes such files.

Each case runs the real command line on a copy of the session's flights project,
with its database or its artifacts on a real tmpfs, remounted read-only or filled
up (root ignores ``chmod``). The spec's trees are changed so that ``train`` makes
files the store does not hold yet, as a new model does.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pandas as pd
import pytest

from _support.cli import run
from _support.mounts import fill, read_only, tmpfs
from _support.serving import copy_project
from setpoint.config.loader import SPEC_FILE, dump_spec, load_spec
from setpoint.project import Project
from setpoint.store.artifacts import ArtifactStore

pytestmark = pytest.mark.hostile


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], f"{word!r} not in: {errors[0]}"
    return errors[0]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def count(db: Path, table: str) -> int:
    with closing(sqlite3.connect(db)) as conn:
        found: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return found


@pytest.fixture(scope="module")
def base(flights_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The flights project, its spec asking for smaller trees than its two versions have."""
    root = copy_project(flights_project, tmp_path_factory.mktemp("faults") / "flights")
    spec = load_spec(root / SPEC_FILE)
    model = spec.model.model_copy(update={"params": {"n_estimators": 12, "num_leaves": 7}})
    (root / SPEC_FILE).write_text(dump_spec(spec.model_copy(update={"model": model})))
    return root


@pytest.fixture
def project(base: Path, tmp_path: Path) -> Path:
    return copy_project(base, tmp_path / "flights")


@contextmanager
def database_on_a_full_disk(root: Path, mount: Path) -> Iterator[dict[str, str]]:
    """The project's database moved onto a tmpfs that is then filled up; the
    environment that points the command line at it.

    This process holds a connection open meanwhile, so that SQLite's shared-memory
    index exists before the disk fills: a reader then needs no new byte, and the
    first write is the first thing refused, as on a disk that filled up while in use.
    """
    with tmpfs(mount, size="16m"):
        shutil.move(root / ".setpoint" / "setpoint.db", mount / "setpoint.db")
        with closing(sqlite3.connect(mount / "setpoint.db")) as holder:
            holder.execute("SELECT count(*) FROM model_versions").fetchone()
            fill(mount)
            yield {"SETPOINT_DB_URL": f"sqlite:///{mount / 'setpoint.db'}"}


def test_train_on_a_read_only_store_is_one_line_and_changes_nothing(
    project: Path, tmp_path: Path
) -> None:
    home = project / ".setpoint"
    saved = tmp_path / "saved"
    shutil.move(home, saved)
    with tmpfs(home, content=saved):
        read_only(home)
        before = files_under(home)
        result = run("train", cwd=project)
        line = assert_one_line_error(result, str(home), "read-only")
        assert "remount it read-write" in line
        assert files_under(home) == before


def test_train_on_a_read_only_artifact_store_names_the_file(project: Path, tmp_path: Path) -> None:
    mount = tmp_path / "artifacts"
    with tmpfs(mount, content=project / ".setpoint" / "artifacts"):
        read_only(mount)
        versions = count(project / ".setpoint" / "setpoint.db", "model_versions")
        result = run("train", cwd=project, env={"SETPOINT_ARTIFACTS_URL": str(mount)})
        assert_one_line_error(result, str(mount / "sha256"), "read-only file system")
        assert count(project / ".setpoint" / "setpoint.db", "model_versions") == versions


def test_train_when_the_database_disk_fills_removes_the_files_it_wrote(
    project: Path, tmp_path: Path
) -> None:
    artifacts = project / ".setpoint" / "artifacts"
    before = files_under(artifacts)
    mount = tmp_path / "db"
    with database_on_a_full_disk(project, mount) as env:
        result = run("train", cwd=project, env=env)
        assert_one_line_error(result, str(mount / "setpoint.db"), "no space left on device")
        assert count(mount / "setpoint.db", "model_versions") == 2
    # The model's files were stored before its row was refused: none is left.
    assert files_under(artifacts) == before


@pytest.fixture
def next_batch(project: Path, flight_events: pd.DataFrame) -> Path:
    """The last 300 flights again under new ids: a batch the store does not hold."""
    rows = flight_events.tail(300).copy()
    rows["flight_id"] = "again-" + rows["flight_id"].astype(str)
    path = project / "next.parquet"
    rows.to_parquet(path)
    return path


@pytest.mark.parametrize("full", ["artifacts", "database"])
def test_ingest_on_a_full_disk_stores_no_batch(
    project: Path, tmp_path: Path, next_batch: Path, full: str
) -> None:
    artifacts = project / ".setpoint" / "artifacts"
    mount = tmp_path / full
    if full == "artifacts":
        with tmpfs(mount, size="16m", content=artifacts):
            fill(mount)
            before = files_under(mount)
            env = {"SETPOINT_ARTIFACTS_URL": str(mount)}
            result = run("data", "ingest", str(next_batch), cwd=project, env=env)
            assert_one_line_error(result, str(mount / "sha256"), "no space left on device")
            assert files_under(mount) == before
        assert count(project / ".setpoint" / "setpoint.db", "datasets") == 1
    else:
        before = files_under(artifacts)
        with database_on_a_full_disk(project, mount) as env:
            result = run("data", "ingest", str(next_batch), cwd=project, env=env)
            assert_one_line_error(result, str(mount / "setpoint.db"), "no space left on device")
            assert count(mount / "setpoint.db", "datasets") == 1
        assert files_under(artifacts) == before


def test_gc_lists_and_with_yes_removes_only_unreferenced_files(project: Path) -> None:
    artifacts = project / ".setpoint" / "artifacts"
    referenced = files_under(artifacts)
    store = ArtifactStore(str(artifacts))
    planted, _ = store.put(b"the files of a registration that failed")
    # Temporary files of interrupted writes: one of an hour ago, one being written now.
    old = artifacts / "sha256" / planted[:2] / f".{planted[2:]}.0123.tmp"
    old.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    young = artifacts / "sha256" / planted[:2] / f".{planted[2:]}.4567.tmp"
    young.write_bytes(b"half")

    listed = run("gc", cwd=project)
    assert listed.returncode == 0, listed.stderr
    assert store.path_of(planted) in listed.stdout
    assert str(old) in listed.stdout
    assert str(young) not in listed.stdout
    assert "2 file(s)" in listed.stdout
    assert "nothing was removed" in listed.stdout
    assert store.exists(planted)
    assert old.exists()

    removed = run("gc", "--yes", cwd=project)
    assert removed.returncode == 0, removed.stderr
    assert "Removed 2 file(s)" in removed.stdout
    assert not store.exists(planted)
    assert not old.exists()
    assert young.exists()
    young.unlink()
    assert files_under(artifacts) == referenced
    project_api = Project.open(project)
    try:
        for version in project_api.versions():
            project_api.load_model(version.version)  # every file, sha256-checked
        assert len(project_api.versions()) == 2
    finally:
        project_api.store.db.dispose()

    again = run("gc", cwd=project)
    assert again.returncode == 0
    assert "No unreferenced file" in again.stdout
