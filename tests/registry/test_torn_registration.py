"""A registration cut between its files and its rows: what a reader believes afterwards.

Registering stores each blob (temporary name, fsync, rename) and then writes the rows in
one transaction, whose atomicity the database gives. What is left to test is the seam:
blobs without their row, a row whose blob is gone or cut short, a torn blob lying at the
address a later registration reuses. Real files and a real database on each backend.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from setpoint.config.spec import ProjectSpec
from setpoint.errors import ArtifactIntegrityError, NotFoundError
from setpoint.registry.datasets import ingest, load_dataset
from setpoint.registry.events import list_events
from setpoint.registry.models import get_version, list_versions, load_artifacts, register_model
from setpoint.registry.projects import upsert_project
from setpoint.store.artifacts import sha256_bytes
from setpoint.store.workspace import Store

pytestmark = pytest.mark.hostile

FILES = {"model.txt": b"tree\n" * 4000, "reference.json": b'{"bins": [1, 2, 3]}' * 200}


@pytest.fixture
def store(store: Store) -> Store:
    with store.db.write() as conn:
        upsert_project(conn, ProjectSpec(project="p", task="regression", target="y"))
    return store


def register(store: Store, files: dict[str, bytes]) -> int:
    version = register_model(
        store, project="p", kind="test/v1", files=files, lineage={}, metrics={}, params={}
    )
    return version.version


def test_blobs_of_a_registration_killed_before_its_row_are_not_listed(store: Store) -> None:
    assert register(store, {"model.txt": b"first"}) == 1
    # killed after one blob was renamed into place and in the middle of the next one
    store.artifacts.put_bytes(FILES["model.txt"])
    address = Path(store.artifacts.path_of(sha256_bytes(FILES["reference.json"])))
    address.parent.mkdir(parents=True, exist_ok=True)
    (address.parent / f".{address.name}.0123abcd.tmp").write_bytes(FILES["reference.json"][:99])
    assert not store.artifacts.exists(sha256_bytes(FILES["reference.json"]))
    assert [v.version for v in list_versions(store, project="p")] == [1]
    with pytest.raises(NotFoundError):
        get_version(store, project="p", version=2)
    assert [e.payload["version"] for e in list_events(store.db, project="p")] == [1]

    assert register(store, FILES) == 2  # the retry: no gap, and every byte is there
    assert load_artifacts(store, get_version(store, project="p", version=2)) == FILES


def test_a_row_whose_blob_was_cut_short_is_refused_on_load(store: Store) -> None:
    register(store, FILES)
    version = get_version(store, project="p", version=1)
    path = Path(store.artifacts.path_of(version.artifacts["model.txt"]))
    path.write_bytes(FILES["model.txt"][:1000])
    with pytest.raises(ArtifactIntegrityError) as info:
        load_artifacts(store, version)
    message = str(info.value)
    # which model and which of its files, where, what was expected and what was found
    assert "p@1" in message
    assert "'model.txt'" in message
    assert str(path) in message
    assert version.artifacts["model.txt"] in message
    assert sha256_bytes(FILES["model.txt"][:1000]) in message
    assert info.value.http_status == 503

    path.unlink()  # and a row whose blob never reached the disk
    with pytest.raises(NotFoundError, match=str(path)):
        load_artifacts(store, version)


def test_a_torn_blob_at_its_address_is_written_again(store: Store) -> None:
    """A new registration of the same bytes must not point its row at a file cut short."""
    for name, data in FILES.items():
        path = Path(store.artifacts.path_of(sha256_bytes(data)))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[: len(data) // 2] if name == "model.txt" else data)
    number = register(store, FILES)
    assert load_artifacts(store, get_version(store, project="p", version=number)) == FILES


def test_a_dataset_row_whose_blob_was_cut_short_is_refused_on_load(store: Store) -> None:
    spec = ProjectSpec(project="p", task="regression", target="y")
    frame = pd.DataFrame({"x": [float(i) for i in range(200)], "y": [i % 7 for i in range(200)]})
    stored = ingest(store, spec, frame, label="batch.csv").dataset
    path = Path(store.artifacts.path_of(stored.artifact))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ArtifactIntegrityError) as info:
        load_dataset(store, project="p")
    message = str(info.value)
    assert "p/events v1 (batch.csv)" in message
    assert str(path) in message
    assert stored.artifact in message
