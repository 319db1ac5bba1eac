"""Content-addressed artifacts: every blob is stored under its own sha256.

A blob is written under a temporary name and renamed into place, so a reader
never sees a partial file, and a write interrupted at any instant leaves at
worst an orphan temporary file that no record points to. Reads check the
sha256 before returning a single byte to the caller: a corrupted or swapped
file is refused, never loaded.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from setpoint.errors import ArtifactIntegrityError, ConfigError, NotFoundError

__all__ = ["ArtifactStore", "sha256_bytes", "sha256_file"]

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_digest(sha256: str) -> None:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ArtifactIntegrityError(f"{sha256!r} is not a sha256 hex digest", sha256=sha256)


class ArtifactStore:
    """Blobs under ``<url>/sha256/<2 hex>/<62 hex>`` on any fsspec filesystem."""

    def __init__(self, url: str, *, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        try:
            fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"Cannot open the artifact store {url!r}: {exc}", url=url) from None
        self._fs: fsspec.AbstractFileSystem = fs
        self._root = root.rstrip("/")
        self._local = isinstance(fs, LocalFileSystem)

    def path_of(self, sha256: str) -> str:
        _check_digest(sha256)
        return f"{self._root}/sha256/{sha256[:2]}/{sha256[2:]}"

    def exists(self, sha256: str) -> bool:
        return bool(self._fs.exists(self.path_of(sha256)))

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its sha256. Storing the same bytes twice is a no-op,
        unless the stored copy is shorter or longer than ``data``: then it is replaced."""
        sha256 = sha256_bytes(data)
        target = self.path_of(sha256)
        # A file at the address is trusted only at its full size: one cut short (a copy of
        # the store interrupted, a filesystem that kept the rename but not the data) is
        # written again rather than pointed to by a new record.
        if self._fs.exists(target) and self._fs.size(target) == len(data):
            return sha256
        if self._local:
            _atomic_local_write(Path(target), data)
        else:
            # An object-store PUT is atomic by itself; a partial object never appears.
            self._fs.pipe_file(target, data)
        return sha256

    def put_file(self, path: str | Path) -> str:
        """Store a local file's bytes; return their sha256."""
        return self.put_bytes(Path(path).read_bytes())

    def get_bytes(self, sha256: str) -> bytes:
        """The blob's bytes, after checking that they hash to ``sha256``."""
        target = self.path_of(sha256)
        try:
            data: bytes = self._fs.cat_file(target)
        except FileNotFoundError:
            raise NotFoundError(
                kind="artifact", name=sha256, hint=f"Expected at {target}."
            ) from None
        actual = sha256_bytes(data)
        if actual != sha256:
            raise ArtifactIntegrityError(
                f"Artifact {target} is corrupted or was replaced: its sha256 is {actual}, "
                f"the record says {sha256}. It was not loaded.",
                sha256=sha256,
            )
        return data


def _atomic_local_write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
