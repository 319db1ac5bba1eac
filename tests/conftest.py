"""Shared fixtures: a store on SQLite, and on PostgreSQL when SETPOINT_TEST_DB_URL is set;
the real January flights, and one flights project trained on them (and a copy of it with
three weeks of logged traffic), built once per session for every module that needs one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from setpoint.store.artifacts import ArtifactStore
from setpoint.store.db import Database
from setpoint.store.workspace import Store

if TYPE_CHECKING:
    import pandas as pd

PG_URL = os.environ.get("SETPOINT_TEST_DB_URL", "")

# One OpenMP and one BLAS thread in this process and in every process it starts
# (servers, the command line), unless the caller chose otherwise. The suite runs on
# 2 cores beside its own servers and other jobs: LightGBM's OpenMP threads spin at
# each barrier for a thread whose core another process holds, and training gets
# 20-30 times slower (measured with one busy process: 97 s against 4 s for the same
# multiclass training); with one thread it runs as fast on a quiet machine. Code that
# asks for more threads itself (``num_threads=2``, as ``setpoint simulate`` does) gets
# them, and waits for them passively rather than spinning (6 s against 18 s for that
# training beside other jobs). Set here, before any test module loads numpy or
# LightGBM, which read these once.
for _variable, _value in (
    ("OMP_NUM_THREADS", "1"),
    ("OPENBLAS_NUM_THREADS", "1"),
    ("OMP_WAIT_POLICY", "PASSIVE"),
):
    os.environ.setdefault(_variable, _value)


def _pg_url(schema: str) -> str:
    url = sa.make_url(PG_URL)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


_POSTGRES_PROBE: list[str | None] = []  # the one probe of the session: None, or why it failed


def _require_postgres() -> None:
    """Skip a PostgreSQL test where none was asked for; fail it in CI or where one was.

    A store test skipped in CI would pass a run that never touched PostgreSQL, so
    CI (``CI`` set, as ``.ci/run`` does) treats a missing URL as a failure, as the
    browser tests treat a missing chromium. A URL that is set but cannot be
    reached is a failure anywhere: someone asked for those tests.
    """
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail(
                "CI needs PostgreSQL for the store tests: SETPOINT_TEST_DB_URL is not set",
                pytrace=False,
            )
        pytest.skip("SETPOINT_TEST_DB_URL is not set")
    if not _POSTGRES_PROBE:
        engine = sa.create_engine(_pg_url("public"), connect_args={"connect_timeout": 10})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError as exc:
            _POSTGRES_PROBE.append(str(exc.orig).strip().splitlines()[0])
        else:
            _POSTGRES_PROBE.append(None)
        finally:
            engine.dispose()
    if _POSTGRES_PROBE[0] is not None:
        pytest.fail(
            f"SETPOINT_TEST_DB_URL={sa.make_url(PG_URL)!r} cannot be reached: {_POSTGRES_PROBE[0]}",
            pytrace=False,
        )


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty metadata database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'setpoint.db'}"
        return
    _require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(_pg_url("public"))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[Store]:
    db = Database(db_url)
    yield Store(db=db, artifacts=ArtifactStore(str(tmp_path / "artifacts")), home=tmp_path)
    db.dispose()


@pytest.fixture
def store_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a child process that must open the same store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETPOINT_")}
    env["SETPOINT_DB_URL"] = db_url
    env["SETPOINT_ARTIFACTS_URL"] = str(tmp_path / "artifacts")
    return env


# The flights fixtures import pandas (and so numpy) inside: at this module's import the
# thread variables above are not yet set.


@pytest.fixture(scope="session")
def flight_events(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The real flights of 1 to 14 January 2013 with their weather; never change it."""
    from _support.serving import events

    return events(tmp_path_factory.mktemp("flights-cache"))


@pytest.fixture(scope="session")
def flights_project(flight_events: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project trained on ``flight_events``: flights@1 champion, flights@2 registered.

    Shared by every module: copy it (``_support.serving.copy_project``) to change it.
    """
    from _support.serving import build_project

    root = tmp_path_factory.mktemp("flights-base") / "flights"
    build_project(root, flight_events)
    return root


@pytest.fixture(scope="session")
def logged_project(
    flights_project: Path, flight_events: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A copy of ``flights_project`` with three weeks of logged traffic from
    ``_support.logged.MONDAY``, the third 30 degrees warmer, weeks 1 and 2 labelled.

    Shared by every module: copy it (``shutil.copytree``) to change it, monitoring
    included, which stores its windows.
    """
    from _support.logged import add_logged_weeks

    root = shutil.copytree(flights_project, tmp_path_factory.mktemp("flights-logged") / "flights")
    return add_logged_weeks(root, flight_events)
