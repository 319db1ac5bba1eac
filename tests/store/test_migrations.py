"""Migrations against tables.py on SQLite and PostgreSQL: types, indexes, upgrading old stores."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

import setpoint.store.migrations as migrations
from setpoint.store.db import Database
from setpoint.store.migrations import HEAD
from setpoint.store.tables import metadata, monitor_windows, utcnow
from setpoint.store.workspace import Store

SERVING = {"feedback", "api_keys", "predictions"}
MONITORING = {"monitor_windows"}
JOBS = {"jobs"}


def _alembic(conn: sa.Connection, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["connection"] = conn
    getattr(command, action)(config, revision)


def test_migrated_schema_is_tables_py_to_the_index(store: Store) -> None:
    # autogenerate's comparison: columns, types, nullability, indexes and unique constraints
    with store.db.read() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_a_store_at_0001_is_upgraded_in_place_and_can_go_back(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "0001")
            now = utcnow()
            conn.execute(
                sa.text(
                    "INSERT INTO projects (name, spec, created_at, updated_at) "
                    "VALUES ('old', '{}', :now, :now)"
                ),
                {"now": now.replace(tzinfo=None)},
            )
        assert SERVING.isdisjoint(sa.inspect(engine).get_table_names())

        db = Database(db_url)  # opening an old store migrates it
        try:
            with db.read() as conn:
                revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
                tables = set(sa.inspect(conn).get_table_names())
                kept = conn.execute(sa.text("SELECT name FROM projects")).scalars().all()
        finally:
            db.dispose()
        assert revision == HEAD
        assert tables >= SERVING | MONITORING | JOBS
        assert kept == ["old"]

        with engine.begin() as conn:
            _alembic(conn, "downgrade", "0001")
        names = set(sa.inspect(engine).get_table_names())
        assert SERVING.isdisjoint(names)
        assert MONITORING.isdisjoint(names)
        assert JOBS.isdisjoint(names)
        assert "projects" in names
    finally:
        engine.dispose()


def test_a_store_at_0002_gains_monitor_windows_and_can_go_back(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "0002")
        assert MONITORING.isdisjoint(sa.inspect(engine).get_table_names())

        db = Database(db_url)
        try:
            with db.write() as conn:  # the new table takes a row, keyed as documented
                conn.execute(
                    monitor_windows.insert(),
                    {
                        "project": "p",
                        "model_version": 1,
                        "window": "1d",
                        "clock": "event",
                        "window_start": utcnow(),
                        "window_end": utcnow(),
                        "n": 3,
                        "n_labelled": 0,
                        "fingerprint": "f",
                        "result": "{}",
                        "computed_at": utcnow(),
                    },
                )
            with db.read() as conn:
                revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
                inspector = sa.inspect(conn)
                key = inspector.get_pk_constraint("monitor_windows")["constrained_columns"]
                indexes = {i["name"] for i in inspector.get_indexes("monitor_windows")}
        finally:
            db.dispose()
        assert revision == HEAD
        assert key == ["project", "model_version", "window", "clock", "window_start"]
        assert "ix_monitor_windows_project_end" in indexes

        with engine.begin() as conn:
            _alembic(conn, "downgrade", "0002")
        names = set(sa.inspect(engine).get_table_names())
        assert MONITORING.isdisjoint(names)
        assert JOBS.isdisjoint(names)
        assert names >= SERVING
    finally:
        engine.dispose()


# (alias, version, reason) as the code of 0001-0004 wrote them, and the kind each must get.
OLD_MOVES = [
    ("champion", 1, "gate passed: +0.02", "promote"),
    ("challenger", 2, "gate not passed: no lead", "challenger"),
    ("champion", 2, "forced past a failed gate: try it", "promote"),
    ("champion", 1, "rollback: live metric fell", "rollback"),
    ("champion", 2, "ROLLBACK: only the old code's exact prefix counts", "promote"),
    ("shadow", 2, "rollback: not the champion, so not a rollback", "shadow"),
    ("shadow", None, "autopilot: watch over", "clear"),
    ("canary", 2, "set by hand", "canary"),
    ("canary", None, "canary rollback: p99 latency 9.1 ms over 0.001 ms", "canary_pulled"),
    ("canary", None, "unset by hand", "clear"),
    ("baseline", 1, "set by hand", "set"),
    ("challenger", 1, "set by hand", "set"),
]


def test_a_store_at_0004_gains_alias_kinds_back_filled_from_the_reasons(db_url: str) -> None:
    from setpoint.registry.aliases import AliasKind, alias_history_of, set_alias

    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "0004")
            now = utcnow().replace(tzinfo=None)
            conn.execute(
                sa.text(
                    "INSERT INTO projects (name, spec, created_at, updated_at) "
                    "VALUES ('old', '{}', :now, :now)"
                ),
                {"now": now},
            )
            for version in (1, 2):
                conn.execute(
                    sa.text(
                        "INSERT INTO model_versions (project, version, kind, artifacts, lineage, "
                        "metrics, params, description, created_at) "
                        "VALUES ('old', :v, 'test/v1', '{}', '{}', '{}', '{}', '', :now)"
                    ),
                    {"v": version, "now": now},
                )
            for alias, version, reason, _ in OLD_MOVES:
                conn.execute(
                    sa.text(
                        "INSERT INTO alias_history (project, alias, version, previous_version, "
                        "reason, actor, at) VALUES ('old', :alias, :version, NULL, :reason, "
                        "'test', :now)"
                    ),
                    {"alias": alias, "version": version, "reason": reason, "now": now},
                )
        columns = {c["name"] for c in sa.inspect(engine).get_columns("alias_history")}
        assert "kind" not in columns

        db = Database(db_url)  # opening the old store migrates it
        try:
            history = alias_history_of(db, project="old")
            with db.read() as conn:
                revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
                [kind] = [
                    c for c in sa.inspect(conn).get_columns("alias_history") if c["name"] == "kind"
                ]
                indexes = {i["name"] for i in sa.inspect(conn).get_indexes("alias_history")}
            with db.write() as conn:  # a rollback now says so by its kind, not its reason
                set_alias(
                    conn,
                    project="old",
                    alias="champion",
                    version=1,
                    kind=AliasKind.ROLLBACK,
                    reason="by kind",
                    actor="test",
                )
        finally:
            db.dispose()
        assert revision == HEAD
        assert kind["nullable"] is False
        assert "ix_alias_history_project" in indexes
        assert [(c.alias, c.version, c.reason, c.kind.value) for c in history] == OLD_MOVES
        assert all(isinstance(c.kind, AliasKind) for c in history)

        with engine.begin() as conn:
            _alembic(conn, "downgrade", "0004")
            reasons = conn.execute(
                sa.text("SELECT reason FROM alias_history ORDER BY id")
            ).scalars()
            # The code of 0004 knows a rollback only by its prefix: the new one gains it,
            # the old ones keep theirs once.
            assert list(reasons) == [reason for _, _, reason, _ in OLD_MOVES] + [
                "rollback: by kind"
            ]
        columns = {c["name"] for c in sa.inspect(engine).get_columns("alias_history")}
        assert "kind" not in columns
    finally:
        engine.dispose()


def test_a_store_at_0005_keeps_its_keys_as_admin_keys(db_url: str) -> None:
    from setpoint.registry.api_keys import create_key, key_scope, list_keys

    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "0005")
            conn.execute(
                sa.text(
                    "INSERT INTO api_keys (name, key_hash, created_at) VALUES ('ops', :hash, :now)"
                ),
                {"hash": "0" * 64, "now": utcnow().replace(tzinfo=None)},
            )
        db = Database(db_url)  # opening the old store migrates it
        try:
            assert [(k.name, k.scope) for k in list_keys(db)] == [("ops", "admin")]
            labels = create_key(db, name="labels", scope="feedback")
            assert key_scope(db, labels) == ("labels", "feedback")
        finally:
            db.dispose()
        with engine.begin() as conn:
            _alembic(conn, "downgrade", "0005")
            # the code of 0005 would take any key for an admin key: the feedback one goes
            names = conn.execute(sa.text("SELECT name FROM api_keys")).scalars()
            assert list(names) == ["ops"]
        columns = {c["name"] for c in sa.inspect(engine).get_columns("api_keys")}
        assert "scope" not in columns
    finally:
        engine.dispose()
