"""Content-addressed artifacts: every blob is stored under its own sha256.

A blob is written under a temporary name and renamed into place, so a reader
never sees a partial file, and a write interrupted at any instant leaves at
worst an orphan temporary file that no record points to. Reads check the
sha256 before returning a single byte to the caller: a corrupted or swapped
file is refused, never loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from setpoint.errors import (
    ArtifactIntegrityError,
    ConfigError,
    InvalidParameterError,
    NotFoundError,
    StoreFaultError,
)
from setpoint.store.faults import disk_fault

__all__ = ["ArtifactStore", "StoredFile", "sha256_bytes", "sha256_file"]

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
    if not _is_digest(sha256):
        raise ArtifactIntegrityError(f"{sha256!r} is not a sha256 hex digest", sha256=sha256)


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file under the artifact store: a blob (``sha256`` set) or a temporary file
    left by an interrupted write (``sha256`` None)."""

    path: str
    sha256: str | None
    size: int
    modified: float | None  # POSIX seconds, where the filesystem tells


class ArtifactStore:
    """Blobs under ``<url>/sha256/<2 hex>/<62 hex>`` on any fsspec filesystem.

    A disk that refuses (full, read-only, permission denied) raises ``StoreFaultError``
    naming the file.
    """

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
        target = self.path_of(sha256)
        try:
            return bool(self._fs.exists(target))
        except OSError as exc:
            raise _fault(exc, target, doing="read") from None

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its sha256. Storing the same bytes twice is a no-op,
        unless the stored copy is shorter or longer than ``data``: then it is replaced."""
        return self.put(data)[0]

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store ``data``: its sha256, and whether this call wrote the file (False when
        the same bytes were stored before)."""
        sha256 = sha256_bytes(data)
        target = self.path_of(sha256)
        try:
            # A file at the address is trusted only at its full size: one cut short (a copy
            # of the store interrupted, a filesystem that kept the rename but not the data)
            # is written again rather than pointed to by a new record.
            if self._fs.exists(target) and self._fs.size(target) == len(data):
                return sha256, False
            if self._local:
                _atomic_local_write(Path(target), data)
            else:
                # An object-store PUT is atomic by itself; a partial object never appears.
                self._fs.pipe_file(target, data)
        except OSError as exc:
            raise _fault(exc, target, doing="write") from None
        return sha256, True

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
        except OSError as exc:
            raise _fault(exc, target, doing="read") from None
        actual = sha256_bytes(data)
        if actual != sha256:
            raise ArtifactIntegrityError(
                f"Artifact {target} is corrupted or was replaced: its sha256 is {actual}, "
                f"the record says {sha256}. It was not loaded.",
                sha256=sha256,
            )
        return data

    def files(self) -> list[StoredFile]:
        """Every file under ``<url>/sha256``, blobs and temporary files, by path."""
        top = f"{self._root}/sha256"
        try:
            found: dict[str, dict[str, Any]] = self._fs.find(top, detail=True)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _fault(exc, top, doing="read") from None
        listed = []
        for path, info in sorted(found.items()):
            if info.get("type", "file") != "file":
                continue
            folder, _, name = path.rstrip("/").rpartition("/")
            digest = folder.rpartition("/")[2] + name
            sha256 = digest if _is_digest(digest) and not name.startswith(".") else None
            modified = info.get("mtime")
            listed.append(
                StoredFile(
                    path=path,
                    sha256=sha256,
                    size=int(info.get("size") or 0),
                    modified=float(modified) if isinstance(modified, int | float) else None,
                )
            )
        return listed

    def remove(self, item: StoredFile) -> None:
        """Delete one file that ``files`` listed; one already gone is no error."""
        if item.sha256 is not None and item.path != self.path_of(item.sha256):
            raise InvalidParameterError(
                owner="ArtifactStore.remove",
                parameter="item",
                expected=f"a file listed under {self._root}/sha256",
                got=item.path,
            )
        if not item.path.startswith(f"{self._root}/sha256/"):
            raise InvalidParameterError(
                owner="ArtifactStore.remove",
                parameter="item",
                expected=f"a file under {self._root}/sha256",
                got=item.path,
            )
        try:
            self._fs.rm_file(item.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _fault(exc, item.path, doing="remove a file of") from None


def _is_digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _fault(exc: OSError, path: str, *, doing: str) -> StoreFaultError:
    return disk_fault(
        exc, path=path, what="the artifact store", setting="SETPOINT_ARTIFACTS_URL", doing=doing
    )


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
        with contextlib.suppress(OSError):
            # On a read-only disk the temporary file was never made; that is no second fault.
            temp.unlink(missing_ok=True)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
