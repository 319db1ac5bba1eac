from __future__ import annotations

from pathlib import Path

import pytest

from setpoint.errors import ArtifactIntegrityError, NotFoundError
from setpoint.store.artifacts import ArtifactStore, sha256_bytes


def test_round_trip_is_content_addressed(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    sha = store.put_bytes(b"model bytes")
    assert sha == sha256_bytes(b"model bytes")
    assert store.put_bytes(b"model bytes") == sha
    assert store.get_bytes(sha) == b"model bytes"
    assert Path(store.path_of(sha)).is_file()
    assert not list(tmp_path.rglob("*.tmp"))


def test_corrupted_blob_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    sha = store.put_bytes(b"original")
    Path(store.path_of(sha)).write_bytes(b"tampered")
    with pytest.raises(ArtifactIntegrityError, match="corrupted or was replaced") as info:
        store.get_bytes(sha)
    assert info.value.sha256 == sha


def test_missing_blob_names_the_path(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    missing = "a" * 64
    with pytest.raises(NotFoundError, match=missing):
        store.get_bytes(missing)


@pytest.mark.parametrize("digest", ["", "zz" * 32, "../" + "a" * 61, "A" * 64])
def test_malformed_digest_is_refused(tmp_path: Path, digest: str) -> None:
    with pytest.raises(ArtifactIntegrityError, match="not a sha256"):
        ArtifactStore(str(tmp_path)).get_bytes(digest)


def test_any_fsspec_url(tmp_path: Path) -> None:
    store = ArtifactStore("memory://setpoint-test/artifacts")
    sha = store.put_bytes(b"in memory")
    assert store.exists(sha)
    assert store.get_bytes(sha) == b"in memory"
