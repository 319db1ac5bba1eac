"""A version's stored metrics read through ``ModelVersion.slices`` and ``test_metric``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from setpoint.quickstart.build import quickstart_spec
from setpoint.registry.models import ModelVersion, get_version, register_model
from setpoint.registry.projects import upsert_project
from setpoint.store.workspace import Store


def version(metrics: dict[str, Any]) -> ModelVersion:
    return ModelVersion(
        project="flights",
        version=1,
        kind="tabular",
        artifacts={},
        lineage={},
        metrics=metrics,
        params={},
        description="",
        created_at=datetime(2013, 8, 7, tzinfo=UTC),
    )


def test_the_metrics_training_stores_read_back_per_slice(store: Store) -> None:
    with store.db.write() as conn:
        upsert_project(conn, quickstart_spec())  # the project "flights"
    registered = register_model(
        store,
        project="flights",
        kind="tabular",
        files={"model.txt": b"a model"},
        lineage={},
        metrics={
            "slices": {"valid": {"roc_auc": 0.71}, "test": {"roc_auc": 0.7, "brier": float("nan")}},
            "segments": {},
        },
        params={},
    )
    stored = get_version(store, project="flights", version=registered.version)
    assert stored.slices == {"valid": {"roc_auc": 0.71}, "test": {"roc_auc": 0.7, "brier": None}}
    assert stored.test_metric("roc_auc") == 0.7
    assert stored.test_metric("brier") is None  # NaN is stored as null: not measured
    assert stored.test_metric("f1") is None


@pytest.mark.parametrize(
    "metrics",
    [
        {},
        {"slices": None},
        {"slices": [0.7]},
        {"slices": {"test": "0.7"}},
        {"slices": {"test": {"roc_auc": "0.7"}}},
        {"slices": {"test": {"roc_auc": True}}},
        {"slices": {"valid": {"roc_auc": 0.7}}},
    ],
)
def test_metrics_of_another_shape_read_as_not_measured(metrics: dict[str, Any]) -> None:
    assert version(metrics).test_metric("roc_auc") is None


def test_an_integer_metric_reads_as_a_float() -> None:
    found = version({"slices": {"test": {"rows": 120}}}).test_metric("rows")
    assert found == 120.0
    assert isinstance(found, float)
