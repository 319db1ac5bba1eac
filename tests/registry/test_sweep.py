"""Artifact files no row references: a failed registration removes its own, a sweep
removes the rest, and neither ever removes a file a row references. SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest

from setpoint.config.spec import ProjectSpec
from setpoint.errors import NotFoundError, SetpointError
from setpoint.registry.models import get_version, load_artifacts, register_model
from setpoint.registry.projects import lock_project, upsert_project
from setpoint.registry.sweep import (
    BlobWriter,
    find_orphans,
    remove_orphans,
    remove_unreferenced,
    writing_blobs,
)
from setpoint.store.workspace import Store

pytestmark = pytest.mark.hostile

SPEC = ProjectSpec(project="p", task="binary", target="y")


@pytest.fixture
def project(store: Store) -> Store:
    with store.db.write() as conn:
        upsert_project(conn, SPEC)
    return store


def register(store: Store, project: str = "p", **files: bytes) -> int:
    return register_model(
        store, project=project, kind="test/v1", files=files, lineage={}, metrics={}, params={}
    ).version


def blobs(store: Store) -> set[str]:
    return {item.sha256 for item in store.artifacts.files() if item.sha256}


def test_a_failed_registration_removes_the_files_it_wrote_and_no_other(project: Store) -> None:
    register(project, m=b"shared")
    before = blobs(project)
    # No project 'ghost': refused after its files were stored.
    with pytest.raises(NotFoundError, match="ghost"):
        register(project, "ghost", m=b"shared", n=b"new")
    assert blobs(project) == before
    assert project.artifacts.get_bytes(next(iter(before))) == b"shared"


def test_a_file_another_registration_references_meanwhile_is_kept(project: Store) -> None:
    written: list[str] = []

    def fails_after_another_commits() -> None:
        with writing_blobs(project) as writer:
            written.append(writer.put(b"both"))
            # Another registration stores the same bytes and commits first.
            register(project, m=b"both")
            raise SetpointError("refused later")

    with pytest.raises(SetpointError, match="refused later"):
        fails_after_another_commits()
    (sha,) = written
    assert project.artifacts.exists(sha)
    assert remove_unreferenced(project, [sha]) == []


def test_a_file_a_sweep_removed_before_the_rows_is_stored_again(project: Store) -> None:
    writer = BlobWriter(project)
    sha = writer.put(b"slow writer")
    assert [item.sha256 for item in remove_orphans(project)] == [sha]
    assert not project.artifacts.exists(sha)
    with project.db.write() as conn:
        lock_project(conn, "p")
        writer.ensure_stored()
    assert project.artifacts.get_bytes(sha) == b"slow writer"


def test_a_sweep_lists_and_removes_only_unreferenced_files(project: Store) -> None:
    kept = register(project, a=b"model a", b=b"model b")
    orphan, _ = project.artifacts.put(b"orphan")
    assert [item.sha256 for item in find_orphans(project)] == [orphan]
    assert project.artifacts.exists(orphan)  # listing removes nothing
    assert [item.sha256 for item in remove_orphans(project)] == [orphan]
    assert find_orphans(project) == []
    files = load_artifacts(project, get_version(project, project="p", version=kept))
    assert files == {"a": b"model a", "b": b"model b"}
