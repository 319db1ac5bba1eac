from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from _support.mounts import fill, tmpfs
from setpoint.errors import ConfigError, StoreError, StoreFaultError
from setpoint.store.db import Database, redact_url
from setpoint.store.migrations import HEAD
from setpoint.store.tables import metadata, projects, utcnow
from setpoint.store.workspace import Store


def test_migrated_schema_matches_tables(store: Store) -> None:
    with store.db.read() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        inspector = sa.inspect(conn)
        for table in metadata.sorted_tables:
            columns = {c["name"] for c in inspector.get_columns(table.name)}
            assert columns == set(table.columns.keys()), table.name


def test_migration_head_constant_matches_alembic() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import setpoint.store.migrations as migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database.sqlite(tmp_path / "s.db")
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.dispose()


def test_reopening_does_not_migrate_again(store: Store) -> None:
    assert store.db.engine is not None  # opening migrates
    again = Database(store.db.url)
    with again.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    again.dispose()


def test_unparseable_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a database URL"):
        _ = Database("not a url").engine


def test_unreachable_server_names_the_url_without_password() -> None:
    db = Database("postgresql://user:secret@127.0.0.1:1/nothing")
    with pytest.raises(StoreError, match="Cannot open the metadata store") as info:
        _ = db.engine
    assert "secret" not in str(info.value)
    assert "***" in redact_url(db.url)


_WRITER = textwrap.dedent(
    """
    import sys
    from setpoint.registry.models import register_model
    from setpoint.store.workspace import Store

    store = Store.open(sys.argv[1])
    for i in range(int(sys.argv[2])):
        files = {"m": f"{sys.argv[3]}-{i}".encode()}
        register_model(store, project="p", kind="test/v1", files=files,
                       lineage={}, metrics={}, params={})
    """
)


def test_concurrent_writers_never_collide(
    store: Store, store_env: dict[str, str], tmp_path: Path
) -> None:
    from setpoint.config.spec import ProjectSpec
    from setpoint.registry.models import list_versions
    from setpoint.registry.projects import upsert_project

    with store.db.write() as conn:
        upsert_project(conn, ProjectSpec(project="p", task="binary", target="y"))
    children = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), "15", name], env=store_env)
        for name in ("a", "b", "c")
    ]
    assert [child.wait(timeout=120) for child in children] == [0, 0, 0]
    versions = list_versions(store, project="p")
    assert [v.version for v in versions] == list(range(1, 46))
    assert len({v.artifacts["m"] for v in versions}) == 45


@pytest.mark.hostile
def test_a_full_disk_refuses_the_write_as_a_store_fault_and_still_reads(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="4m") as disk:
        db = Database.sqlite(disk / "setpoint.db")
        try:
            with db.read() as conn:  # migrated, and the pool keeps this connection open
                conn.execute(sa.select(projects.c.name)).all()
            fill(disk)
            row = {"spec": {"x": "y" * 100_000}, "created_at": utcnow(), "updated_at": utcnow()}
            with pytest.raises(StoreFaultError) as info, db.write() as conn:
                conn.execute(projects.insert().values(name="p", **row))
            assert info.value.path == str(disk / "setpoint.db")
            assert info.value.cause == "no space left on device"
            assert str(info.value).startswith(f"Cannot write to the metadata store {disk}")
            assert "SETPOINT_DB_URL" in str(info.value)
            with db.read() as conn:
                assert conn.execute(sa.select(projects.c.name)).all() == []
        finally:
            db.dispose()
