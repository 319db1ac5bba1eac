"""Settings: each one declared once, with its name, default and help text.

A setting is read from the environment (``SETPOINT_<NAME>``) when it is asked
for, so tests and long-lived processes see the value in force at that moment.
``docs/settings.md`` documents every setting, and a test keeps the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from setpoint.errors import SettingError

__all__ = ["SETTINGS", "Setting", "Settings", "get_settings"]


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its environment name, default, parser and help text."""

    name: str
    default: str
    help: str
    parse: Callable[[str], Any] = str

    @property
    def env(self) -> str:
        return f"SETPOINT_{self.name.upper()}"


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "home",
        ".setpoint",
        "Folder that holds the embedded store: the SQLite metadata file, artifacts and caches. "
        "Relative paths are taken from the project folder.",
    ),
    Setting(
        "db_url",
        "",
        "SQLAlchemy URL of the metadata store, e.g. postgresql+psycopg://user@host/db. "
        "Empty means a SQLite file <home>/setpoint.db in WAL mode.",
    ),
    Setting(
        "artifacts_url",
        "",
        "Where artifacts live: a local folder or any fsspec URL (s3://bucket/prefix, ...). "
        "Empty means <home>/artifacts.",
    ),
    Setting(
        "sqlite_busy_timeout_ms",
        "30000",
        "How long a SQLite writer waits for another writer's lock before failing, in ms.",
        _positive_int,
    ),
    Setting(
        "num_threads",
        "0",
        "Threads for model training and scoring; 0 lets LightGBM use every core.",
        int,
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


class Settings:
    """A read-only view of the settings in force, from an environment mapping."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def __getattr__(self, name: str) -> Any:
        setting = _BY_NAME.get(name)
        if setting is None:
            raise AttributeError(name)
        raw = self._environ.get(setting.env, setting.default)
        try:
            return setting.parse(raw)
        except ValueError as exc:
            raise SettingError(
                f"{setting.env}={raw!r} is invalid: {exc}. {setting.help}",
                name=setting.env,
                value=raw,
            ) from None

    def home_path(self, root: Path) -> Path:
        home = Path(self.home)
        return home if home.is_absolute() else root / home


def get_settings() -> Settings:
    return Settings()
