"""One prediction log per store: the ``PredictionLog`` protocol and the backend switch.

An embedded store keeps each worker's log as segments under
``<home>/predictions/<project>/w<N>/`` (``local_log.py``); a PostgreSQL store
keeps every worker's records in its ``predictions`` table (``db_log.py``).
``open_log`` and ``read_log`` are the only places that choose between them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from setpoint.traffic.local_log import LocalPredictionLog
from setpoint.traffic.segments import read_logs

if TYPE_CHECKING:
    from setpoint.errors import StoreError
    from setpoint.store.workspace import Store

__all__ = ["PredictionLog", "describe_log", "open_log", "read_log", "uses_database"]


class PredictionLog(Protocol):
    """What the server writes predictions through: acknowledged once durable.

    ``append_batch`` stores a request's records together or none of them;
    ``unavailable`` is the error appends raise while the log cannot write (a full
    disk, a database that went away), or None. The log recovers by itself.
    """

    @property
    def backlog(self) -> int: ...

    def append(self, record: Mapping[str, Any]) -> Future[None]: ...

    def append_batch(self, records: Iterable[Mapping[str, Any]]) -> Future[None]: ...

    def unavailable(self) -> StoreError | None: ...

    async def aappend(self, record: Mapping[str, Any]) -> None: ...

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> None: ...

    def roll(self, *, include_active: bool = False) -> list[Path]: ...

    def read(self, *, since: datetime | float | None = None) -> pa.Table: ...

    def close(self) -> None: ...


def uses_database(store: Store) -> bool:
    """Whether the store's predictions live in its database rather than in local segments."""
    return store.db.url.startswith("postgresql")


def _folder(store: Store, project: str) -> Path:
    return store.home / "predictions" / project


def open_log(store: Store, *, project: str, worker: int) -> PredictionLog:
    """The log worker ``worker`` of a server writes ``project``'s predictions to."""
    if uses_database(store):
        from setpoint.traffic.db_log import DatabasePredictionLog

        return DatabasePredictionLog(store.db, project=project)
    return LocalPredictionLog(_folder(store, project) / f"w{worker}")


def read_log(store: Store, *, project: str) -> pa.Table:
    """Every record logged for ``project`` by every worker, oldest first, beside live writers."""
    if uses_database(store):
        from setpoint.traffic.db_log import DatabasePredictionLog

        plog = DatabasePredictionLog(store.db, project=project)
        try:
            return plog.read()
        finally:
            plog.close()
    return read_logs(_folder(store, project))


def describe_log(store: Store, *, project: str) -> str:
    """Where ``project``'s predictions are kept, in words for an error message."""
    return "the predictions table" if uses_database(store) else str(_folder(store, project))
