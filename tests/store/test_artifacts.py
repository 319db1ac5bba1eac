from __future__ import annotations

from pathlib import Path

import pytest

from _support.mounts import fill, read_only, tmpfs
from setpoint.errors import ArtifactIntegrityError, NotFoundError, StoreFaultError
from setpoint.store.artifacts import ArtifactStore, sha256_bytes


def test_round_trip_is_content_addressed(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    sha = store.put_bytes(b"model bytes")
    assert sha == sha256_bytes(b"model bytes")
    assert store.put_bytes(b"model bytes") == sha
    assert store.get_bytes(sha) == b"model bytes"
    assert Path(store.path_of(sha)).is_file()
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.hostile
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


@pytest.mark.hostile
@pytest.mark.parametrize("digest", ["", "zz" * 32, "../" + "a" * 61, "A" * 64])
def test_malformed_digest_is_refused(tmp_path: Path, digest: str) -> None:
    with pytest.raises(ArtifactIntegrityError, match="not a sha256"):
        ArtifactStore(str(tmp_path)).get_bytes(digest)


def test_any_fsspec_url(tmp_path: Path) -> None:
    store = ArtifactStore("memory://setpoint-test/artifacts")
    sha = store.put_bytes(b"in memory")
    assert store.exists(sha)
    assert store.get_bytes(sha) == b"in memory"


@pytest.mark.hostile
def test_a_full_disk_is_a_store_fault_naming_the_file(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="1m") as disk:
        store = ArtifactStore(str(disk))
        kept = store.put_bytes(b"stored before the disk filled")
        fill(disk)
        with pytest.raises(StoreFaultError) as info:
            store.put_bytes(b"x" * 65536)
        assert info.value.cause == "no space left on device"
        assert info.value.path.startswith(f"{disk}/sha256/")
        assert "free space there" in str(info.value)
        assert "SETPOINT_ARTIFACTS_URL" in str(info.value)
        assert not list(disk.rglob("*.tmp"))
        assert store.get_bytes(kept) == b"stored before the disk filled"


@pytest.mark.hostile
def test_a_read_only_disk_refuses_new_bytes_and_serves_stored_ones(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="1m") as disk:
        store = ArtifactStore(str(disk))
        kept = store.put_bytes(b"stored before the remount")
        read_only(disk)
        with pytest.raises(StoreFaultError, match="read-only file system") as info:
            store.put_bytes(b"new")
        assert "remount it read-write" in str(info.value)
        # Bytes already stored need no write.
        assert store.put(b"stored before the remount") == (kept, False)
        assert store.get_bytes(kept) == b"stored before the remount"


def test_files_lists_blobs_and_temporary_files_and_remove_deletes_one(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    sha, written = store.put(b"blob")
    assert written
    assert store.put(b"blob") == (sha, False)
    temporary = Path(store.path_of(sha)).with_name(f".{sha[2:]}.abc.tmp")
    temporary.write_bytes(b"half")
    listed = {item.path: item for item in store.files()}
    assert listed[store.path_of(sha)].sha256 == sha
    assert listed[store.path_of(sha)].size == 4
    assert listed[str(temporary)].sha256 is None
    for item in listed.values():
        store.remove(item)
    assert store.files() == []
    store.remove(next(iter(listed.values())))  # already gone: no error
