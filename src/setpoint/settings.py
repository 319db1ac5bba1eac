"""Settings: each one declared once, with its name, default and help text.

A setting is read from the environment (``SETPOINT_<NAME>``) when it is asked
for, so tests and long-lived processes see the value in force at that moment.
``docs/settings.md`` documents every setting, and a test keeps the two in step.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from setpoint.errors import SettingError

__all__ = ["SETTINGS", "Setting", "Settings", "declaration", "get_settings"]


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
    value = _int(text)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise ValueError("must be 0 or a positive integer")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        # int()'s own message ("invalid literal for int() with base 10") is Python's.
        raise ValueError("not a whole number") from None


# The stores setpoint supports; a URL for another database would fail later,
# with a message about a driver instead of about this setting.
_DB_URL = re.compile(r"^(sqlite|postgresql)(\+[A-Za-z0-9_]+)?://")


def _db_url(text: str) -> str:
    if text and not _DB_URL.match(text):
        raise ValueError(
            "not a SQLite or PostgreSQL URL; expected e.g. sqlite:///path/setpoint.db or "
            "postgresql+psycopg://user@host/db, or empty for the embedded store"
        )
    return text


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
        _db_url,
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
        _non_negative_int,
    ),
    Setting(
        "api_key",
        "",
        "Key for a server with serving.predict_auth: key ('setpoint keys create').",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def declaration(name: str) -> Setting:
    """The declaration of the setting called ``name`` (its environment name, default, help).

    >>> declaration("home").env
    'SETPOINT_HOME'
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no setting {name!r}; the settings are {sorted(_BY_NAME)}") from None


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
            # A database URL may carry a password: never echo it.
            shown = _redacted(raw) if setting.name == "db_url" else raw
            raise SettingError(
                f"{setting.env}={shown!r} is invalid: {exc}. {setting.help}",
                name=setting.env,
                value=shown,
            ) from None

    def home_path(self, root: Path) -> Path:
        home = Path(self.home)
        return home if home.is_absolute() else root / home


def _redacted(url: str) -> str:
    """A URL-like setting with any password hidden.

    >>> _redacted("mysql://ann:s3cret@db/x")
    'mysql://ann:***@db/x'
    """
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def get_settings() -> Settings:
    return Settings()
