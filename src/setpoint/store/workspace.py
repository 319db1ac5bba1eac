"""Locate and open a project's store: the metadata database plus the artifacts.

With no settings, everything lives under ``<project folder>/.setpoint/``:
``setpoint.db`` (SQLite, WAL) and ``artifacts/``. ``SETPOINT_DB_URL`` and
``SETPOINT_ARTIFACTS_URL`` move either part to a server or object storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from setpoint.settings import Settings, get_settings
from setpoint.store.artifacts import ArtifactStore
from setpoint.store.db import Database, redact_url

__all__ = ["Store"]


@dataclass(frozen=True, slots=True)
class Store:
    """The metadata database and the artifact store of one workspace."""

    db: Database
    artifacts: ArtifactStore
    home: Path

    @classmethod
    def open(cls, root: Path | str = ".", *, settings: Settings | None = None) -> Store:
        settings = settings or get_settings()
        home = settings.home_path(Path(root).resolve())
        db_url: str = settings.db_url
        if db_url:
            db = Database(db_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        else:
            db = Database.sqlite(
                home / "setpoint.db", busy_timeout_ms=settings.sqlite_busy_timeout_ms
            )
        artifacts_url: str = settings.artifacts_url or str(home / "artifacts")
        return cls(db=db, artifacts=ArtifactStore(artifacts_url), home=home)

    def describe(self) -> dict[str, str]:
        """Where everything is, with any password hidden."""
        return {
            "metadata": redact_url(self.db.url),
            "artifacts": self.artifacts.url,
            "home": str(self.home),
        }
