"""Artifact files that no row references: left by a failed write, found and removed.

The artifact store is content-addressed, so one file can belong to several model
versions and dataset batches, of several projects. A file is removed only when
no row of ``model_versions`` or ``datasets`` names it, checked in a write
transaction that holds every project's lock. A writer re-checks its files in its
own transaction, after taking its project's lock, and stores again any that a
sweep removed in between; so a row never points to a missing file.

``BlobWriter`` is that writer's side: the files one registration or ingest
stored, removed again when it fails.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from setpoint.errors import StoreError
from setpoint.store.artifacts import StoredFile
from setpoint.store.tables import datasets, model_versions, projects
from setpoint.store.workspace import Store

__all__ = [
    "TEMPORARY_MIN_AGE_S",
    "BlobWriter",
    "find_orphans",
    "referenced_artifacts",
    "remove_orphans",
    "remove_unreferenced",
    "writing_blobs",
]

# A temporary file younger than this may be a write in progress, never an orphan.
TEMPORARY_MIN_AGE_S = 3600.0


def referenced_artifacts(conn: Connection) -> set[str]:
    """The sha256 of every file a dataset batch or a model version of any project names."""
    found: set[str] = set(conn.execute(sa.select(datasets.c.artifact)).scalars())
    for manifest in conn.execute(sa.select(model_versions.c.artifacts)).scalars():
        if isinstance(manifest, dict):
            found.update(str(sha) for sha in manifest.values())
    return found


def find_orphans(store: Store, *, now: float | None = None) -> list[StoredFile]:
    """Files nothing references: blobs no row names, and temporary files of
    interrupted writes older than ``TEMPORARY_MIN_AGE_S``. Removes nothing."""
    with store.db.read() as conn:
        kept = referenced_artifacts(conn)
    return _orphans(store, kept, now=now)


def remove_orphans(store: Store, *, now: float | None = None) -> list[StoredFile]:
    """Remove what ``find_orphans`` lists, under every project's lock; the removed files."""
    with store.db.write() as conn:
        _lock_every_project(conn)
        orphans = _orphans(store, referenced_artifacts(conn), now=now)
        for item in orphans:
            store.artifacts.remove(item)
    return orphans


def remove_unreferenced(store: Store, candidates: Iterable[str]) -> list[str]:
    """Remove those of ``candidates`` (sha256) that no row references; the removed ones.

    For a failed write's own files. When the database refuses a write transaction
    (full, read-only), no writer can commit a reference either, so a read decides.
    """
    wanted = sorted(set(candidates))
    if not wanted:
        return []
    try:
        with store.db.write() as conn:
            _lock_every_project(conn)
            return _remove(store, wanted, referenced_artifacts(conn))
    except StoreError:
        with store.db.read() as conn:
            kept = referenced_artifacts(conn)
        return _remove(store, wanted, kept)


class BlobWriter:
    """Stores the blobs of one registration or ingest and remembers which it wrote."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._blobs: dict[str, bytes] = {}
        self.written: list[str] = []

    def put(self, data: bytes) -> str:
        sha256, new = self._store.artifacts.put(data)
        self._blobs[sha256] = data
        if new:
            self.written.append(sha256)
        return sha256

    def ensure_stored(self) -> None:
        """Store again any blob a sweep removed since ``put``: call it inside the write
        transaction, after taking the project's lock, before inserting the rows."""
        for sha256, data in self._blobs.items():
            if not self._store.artifacts.exists(sha256):
                self.put(data)


@contextmanager
def writing_blobs(store: Store) -> Iterator[BlobWriter]:
    """A ``BlobWriter`` whose new files are removed again if the block fails.

    The block's failure is what the caller sees; a failure to clean up leaves
    orphans for ``setpoint gc`` and is not raised over it.
    """
    writer = BlobWriter(store)
    try:
        yield writer
    except BaseException:
        with contextlib.suppress(StoreError):
            remove_unreferenced(store, writer.written)
        raise


def _orphans(store: Store, kept: set[str], *, now: float | None) -> list[StoredFile]:
    clock = time.time() if now is None else now
    orphans = []
    for item in store.artifacts.files():
        if item.sha256 is not None:
            if item.sha256 not in kept:
                orphans.append(item)
        elif item.modified is not None and clock - item.modified >= TEMPORARY_MIN_AGE_S:
            orphans.append(item)
    return orphans


def _remove(store: Store, wanted: list[str], kept: set[str]) -> list[str]:
    removed = []
    for sha256 in wanted:
        if sha256 not in kept:
            store.artifacts.remove(
                StoredFile(
                    path=store.artifacts.path_of(sha256), sha256=sha256, size=0, modified=None
                )
            )
            removed.append(sha256)
    return removed


def _lock_every_project(conn: Connection) -> None:
    # A writer takes its project's lock before it re-checks its files: holding them
    # all (in one order, so two sweeps never deadlock) keeps a writer from committing
    # a reference between this check and the removal.
    conn.execute(sa.select(projects.c.name).order_by(projects.c.name).with_for_update()).all()
