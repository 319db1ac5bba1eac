"""The metadata database: engine set-up, migrations and transactions.

SQLite is the embedded default. It runs in WAL mode so that readers never wait
for the writer, and every write transaction starts with ``BEGIN IMMEDIATE`` so
that two processes serialize on the write lock up front instead of failing
half-way when a read lock cannot be upgraded. PostgreSQL needs neither trick.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from setpoint.errors import ConfigError, MissingExtraError
from setpoint.store.faults import database_fault, disk_fault
from setpoint.store.migrations import HEAD

__all__ = ["Database", "redact_url"]

_WRITE = "setpoint_write"
_MIGRATION_LOCK = 7_431_120_001  # arbitrary constant key of a PostgreSQL advisory lock


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


class Database:
    """One metadata database. Cheap to create; the schema is migrated on first use."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 30_000) -> None:
        self.url = url
        self.busy_timeout_ms = busy_timeout_ms
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    @classmethod
    def sqlite(cls, path: Path, *, busy_timeout_ms: int = 30_000) -> Database:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise disk_fault(
                exc, path=str(path.parent), what="the store folder", setting="SETPOINT_HOME"
            ) from None
        return cls(f"sqlite:///{path}", busy_timeout_ms=busy_timeout_ms)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = self._create_engine()
                self._migrate(self._engine)
            return self._engine

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: all of it commits, or none of it does.

        A database that refuses (full, read-only, unreachable) raises ``StoreFaultError``.
        """
        try:
            with self.engine.connect().execution_options(**{_WRITE: True}) as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise database_fault(exc, url=self.url, doing="write to") from None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only snapshot."""
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise database_fault(exc, url=self.url, doing="read") from None

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _create_engine(self) -> Engine:
        try:
            url = make_url(self.url)
        except ArgumentError:
            raise ConfigError(
                "SETPOINT_DB_URL is not a database URL; expected e.g. "
                "sqlite:///path/setpoint.db or postgresql+psycopg://user@host/db",
                url=redact_url(self.url),
            ) from None
        kwargs: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
            # SQLAlchemy would default to psycopg2; setpoint ships psycopg 3.
            url = url.set(drivername="postgresql+psycopg")
        if url.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": self.busy_timeout_ms / 1000}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            engine = sa.create_engine(url, **kwargs)
        except NoSuchModuleError:
            raise ConfigError(
                f"No SQLAlchemy dialect for {url.drivername!r}", url=redact_url(self.url)
            ) from None
        except ModuleNotFoundError as exc:
            raise MissingExtraError(
                extra="postgres", module=exc.name or "psycopg", feature="A PostgreSQL store"
            ) from None
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine, self.busy_timeout_ms)
        return engine

    def _migrate(self, engine: Engine) -> None:
        try:
            with engine.connect().execution_options(**{_WRITE: True}) as conn, conn.begin():
                if engine.dialect.name == "postgresql":
                    # Serializes concurrent first starts; released at commit.
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
                if _current_revision(conn) != HEAD:
                    _run_alembic(conn)
        except OperationalError as exc:
            raise database_fault(exc, url=self.url, doing="open") from None


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so BEGIN is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _current_revision(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _run_alembic(conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")
