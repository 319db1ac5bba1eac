"""The contract of every component with learned state, in one parametrized test.

As scikit-learn's ``parametrize_with_checks`` and river's ``check_estimator``
do, each component of ``COMPONENTS`` goes through every check that applies:

* ``parameters``: the constructor stores each parameter unchanged under its
  own name (defaults included) and sets no other public attribute;
* ``learned_state``: nothing ending in ``_`` exists before fitting; ``fit``
  returns the component, leaves the parameters as they were, and every
  attribute it adds ends in ``_``;
* ``round_trip``: rebuilt from its serialized form (JSON text, bytes or
  files), the component computes the same outputs, holds the same learned
  state and serializes to the same form;
* ``not_fitted``: used before fitting, it raises a ``SetpointError`` that
  names it and says it is not fitted.

Estimators (``Preprocessor``, ``Calibrator``) are made with their parameters,
then fitted. Components built whole (the heads, ``TabularModel``,
``ThresholdChoice``, ``Reference``) take what ``train_model``,
``choose_threshold`` or ``Reference.build`` learned as constructor arguments,
so they cannot exist unfitted: ``learned_state`` then checks that using them
adds no public attribute, and ``not_fitted`` does not apply. Triggers have
parameters only. The data are a few hundred seeded rows.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest

from setpoint.autopilot.triggers import (
    DriftTrigger,
    Guard,
    MetricTrigger,
    NewLabels,
    RetrainRecord,
    Schedule,
)
from setpoint.config.policy import AutopilotPolicy, TriggerSpec
from setpoint.config.spec import ModelRecipe, Task, ThresholdSpec
from setpoint.errors import SetpointError
from setpoint.stats.drift import detect_drift
from setpoint.stats.reference import Reference
from setpoint.train.calibrate import Calibrator, ThresholdChoice, choose_threshold
from setpoint.train.heads import LightGBMHead, LinearHead, load_head
from setpoint.train.preprocess import Preprocessor
from setpoint.train.tabular_model import TabularModel
from setpoint.train.trainer import train_model

NUMERIC = ["x", "z"]
CATEGORICAL = ["c"]


def _frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, rows)
    frame = pd.DataFrame(
        {
            "x": x,
            "z": np.where(rng.random(rows) < 0.1, np.nan, rng.exponential(2.0, rows)),
            "c": rng.choice(["a", "b", "c", "d", "e"], rows, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
            "ts": pd.date_range("2024-01-01", periods=rows, freq="h"),
        }
    )
    frame["late"] = x + rng.normal(0.0, 0.5, rows) > 0
    frame["delay"] = 2.0 * x + rng.normal(0.0, 1.0, rows)
    frame["score"] = 1.0 / (1.0 + np.exp(-x))
    frame["label"] = np.where(frame["score"] >= 0.5, "late", "on time")
    return frame


TRAIN = _frame(300, seed=0)
NEW = _frame(120, seed=1, shift=0.5)
RNG = np.random.default_rng(2)
SCORES = RNG.beta(2.0, 3.0, 300)
LABELS = RNG.random(300) < SCORES
NEW_SCORES = np.linspace(0.0, 1.0, 41)


@cache
def _trained(task: Task) -> TabularModel:
    """A binary LightGBM model, or a linear regression, trained in a few milliseconds."""
    binary = task is Task.BINARY
    recipe = (
        ModelRecipe(
            params={"learning_rate": 0.3, "min_data_in_leaf": 5, "num_threads": 1},
            early_stopping_rounds=0,
        )
        if binary
        else ModelRecipe(family="linear")
    )
    result = train_model(
        TRAIN,
        task=task,
        target="late" if binary else "delay",
        features_numeric=NUMERIC,
        features_categorical=CATEGORICAL,
        timestamp="ts",
        recipe=recipe,
        primary_metric="pr_auc" if binary else "rmse",
    )
    return result.model


def _fields(value: Any) -> dict[str, Any]:
    """A dataclass instance's constructor arguments, as the very objects it holds."""
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}


def _json(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, allow_nan=False)


@dataclasses.dataclass(frozen=True)
class Component:
    """How the checks make, fit, use and serialize one component.

    ``params`` gives the constructor's arguments (the parameters of an
    estimator, the learned parts of a component built whole); ``fit`` fits a
    new instance and returns what its ``fit`` returned; ``outputs`` is what a
    fitted one computes; ``dump`` and ``load`` go through its serialized form;
    ``uses`` are calls that need learned state.
    """

    id: str
    kind: type
    params: Callable[[], dict[str, Any]]
    fit: Callable[[Any], Any] | None = None
    outputs: Callable[[Any], Any] | None = None
    dump: Callable[[Any], Any] | None = None
    load: Callable[[Any], Any] | None = None
    uses: tuple[Callable[[Any], object], ...] = ()

    def new(self) -> Any:
        return self.kind(**self.params())

    def fitted(self) -> Any:
        component = self.new()
        return component if self.fit is None else self.fit(component)


def _preprocessor(variant: str, **params: Any) -> Component:
    checked = {
        "x": NEW["x"].to_numpy(),
        "z": NEW["z"].to_numpy(),
        "c": NEW["c"].tolist(),
    }
    return Component(
        id=f"Preprocessor-{variant}",
        kind=Preprocessor,
        params=lambda: {"numeric": NUMERIC, "categorical": CATEGORICAL, **params},
        fit=lambda pre: pre.fit(TRAIN),
        outputs=lambda pre: (
            pre.transform(NEW),
            pre.transform_checked(checked),
            pre.feature_names_out(),
        ),
        dump=lambda pre: _json(pre.to_dict()),
        load=lambda text: Preprocessor.from_dict(json.loads(text)),
        uses=(
            lambda pre: pre.transform(NEW),
            lambda pre: pre.transform_checked(checked),
            lambda pre: pre.codes(NEW["c"], "c"),
            lambda pre: pre.feature_names_out(),
            lambda pre: pre.source_columns(),
            lambda pre: pre.to_dict(),
        ),
    )


def _calibrator(method: str | None) -> Component:
    return Component(
        id=f"Calibrator-{method or 'default'}",
        kind=Calibrator,
        params=lambda: {} if method is None else {"method": method},
        fit=lambda cal: cal.fit(SCORES, LABELS),
        outputs=lambda cal: cal.transform(NEW_SCORES),
        dump=lambda cal: _json(cal.to_dict()),
        load=lambda text: Calibrator.from_dict(json.loads(text)),
        uses=(lambda cal: cal.transform(NEW_SCORES), lambda cal: cal.to_dict()),
    )


def _head(task: Task) -> Component:
    kind: type[LightGBMHead | LinearHead] = LightGBMHead if task is Task.BINARY else LinearHead

    def params() -> dict[str, Any]:
        head = _trained(task).head
        if isinstance(head, LightGBMHead):
            return {"model_text": head.model_text}
        return {"kind": head.kind, "coef": head.coef, "intercept": head.intercept}

    def outputs(head: LightGBMHead | LinearHead) -> Any:
        matrix = _trained(task).preprocessor.transform(NEW)
        # One row takes LightGBM's own one-row path (setpoint.train.fastrow).
        return head.predict(matrix), head.predict(matrix[:1]), head.importance()

    return Component(
        id=kind.__name__,
        kind=kind,
        params=params,
        outputs=outputs,
        dump=lambda head: head.to_bytes(),
        load=lambda raw: load_head(kind.family, raw),
    )


def _tabular_model(task: Task) -> Component:
    def params() -> dict[str, Any]:
        model = _trained(task)
        given = {
            "task": model.task,
            "target": model.target,
            "preprocessor": model.preprocessor,
            "head": model.head,
        }
        if task is Task.BINARY:  # a regression keeps the defaults: no classes, no calibration
            given |= {
                "classes": model.classes,
                "calibrator": model.calibrator,
                "threshold": model.threshold,
            }
        return given

    return Component(
        id=f"TabularModel-{task.value}",
        kind=TabularModel,
        params=params,
        outputs=lambda model: (
            model.predict_scores(NEW),
            model.predict(NEW),
            model.feature_importance(),
        ),
        dump=lambda model: model.to_files(),
        load=TabularModel.from_files,
    )


@cache
def _reference() -> Reference:
    return Reference.build(
        TRAIN,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        prediction="score",
        label="label",
        bins=5,
        top_k=3,
        sample_size=50,
        seed=3,
    )


def _parameters_only(kind: type, **params: Any) -> Component:
    return Component(id=kind.__name__, kind=kind, params=lambda: params)


NOW = datetime(2024, 3, 1, tzinfo=UTC)

# Every component with learned state, and every trigger, is listed here: a new
# one must be added to this list (test_every_component_is_listed fails until it is).
COMPONENTS: list[Component] = [
    _preprocessor("tree", min_category_count=5),
    _preprocessor("linear", mode="linear", max_categories=3),
    _calibrator(None),
    _calibrator("sigmoid"),
    _calibrator("none"),
    Component(
        id="ThresholdChoice",
        kind=ThresholdChoice,
        params=lambda: _fields(choose_threshold(LABELS, SCORES, ThresholdSpec())),
        outputs=lambda choice: choice.to_dict(),
        dump=lambda choice: _json(choice.to_dict()),
        load=lambda text: ThresholdChoice.from_dict(json.loads(text)),
    ),
    _head(Task.BINARY),
    _head(Task.REGRESSION),
    _tabular_model(Task.BINARY),
    _tabular_model(Task.REGRESSION),
    Component(
        id="Reference",
        kind=Reference,
        params=lambda: _fields(_reference()),
        outputs=lambda reference: detect_drift(reference, NEW, sample_size=60).to_dict(),
        dump=lambda reference: _json(reference.to_dict()),
        load=lambda text: Reference.from_dict(json.loads(text)),
    ),
    _parameters_only(DriftTrigger, features=3),
    _parameters_only(MetricTrigger, source="realized", level=0.4),
    _parameters_only(
        MetricTrigger, source="estimated", max_drop=0.05, baseline="estimated", min_labels=100
    ),
    _parameters_only(Schedule, every=timedelta(days=7)),
    _parameters_only(NewLabels, count=1000),
    _parameters_only(
        Guard,
        policy=AutopilotPolicy(triggers=TriggerSpec(new_labels=1000)),
        history=(RetrainRecord(started_at=NOW - timedelta(days=1), train_seconds=3.0),),
    ),
]


def _public(component: Any) -> set[str]:
    return {name for name in vars(component) if not name.startswith("_")}


def _defaults(kind: type) -> dict[str, Any]:
    """The constructor's defaults; a dataclass field's default factory is called once."""
    if dataclasses.is_dataclass(kind):
        found: dict[str, Any] = {}
        for f in dataclasses.fields(kind):
            if f.init and f.default is not dataclasses.MISSING:
                found[f.name] = f.default
            elif f.init and f.default_factory is not dataclasses.MISSING:
                found[f.name] = _Made(f.default_factory())
        return found
    return {
        name: parameter.default
        for name, parameter in inspect.signature(kind).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


@dataclasses.dataclass(frozen=True)
class _Made:
    """A default made afresh for each instance: equal, not the same object."""

    value: Any


def _unchanged(got: Any, given: Any) -> bool:
    """As scikit-learn's ``clone`` asks: the very object given, or the very default."""
    if isinstance(given, _Made):
        return type(got) is type(given.value) and bool(got == given.value)
    return got is given


def _assert_same(got: Any, expected: Any, where: str = "output") -> None:
    if isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(got, expected, err_msg=where)
    elif isinstance(expected, Mapping):
        assert isinstance(got, Mapping), where
        assert list(got) == list(expected), where
        for key in expected:
            _assert_same(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, list | tuple):
        assert isinstance(got, list | tuple), where
        assert len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            _assert_same(a, b, f"{where}[{i}]")
    else:
        assert got == expected or (got != got and expected != expected), where


def _check_parameters_stored(component: Any, expected: Mapping[str, Any]) -> None:
    for name, value in expected.items():
        assert hasattr(component, name), f"parameter {name!r} is not stored under its name"
        assert _unchanged(getattr(component, name), value), f"parameter {name!r} was altered"


def check_parameters(case: Component) -> None:
    given = case.params()
    component = case.kind(**given)
    expected = _defaults(case.kind) | given
    assert set(expected) == set(inspect.signature(case.kind).parameters), (
        "every constructor parameter is given or has a default"
    )
    _check_parameters_stored(component, expected)
    assert _public(component) == set(expected), "the constructor sets only its parameters"


def check_learned_state(case: Component) -> None:
    component = case.new()
    before = _public(component)
    assert not sorted(n for n in before if n.endswith("_")), "learned state before fitting"
    if case.fit is None:
        if case.outputs is not None:
            case.outputs(component)
        assert _public(component) == before, "using a component adds no public state"
        return
    assert case.fit(component) is component, "fit returns the component itself"
    _check_parameters_stored(component, _defaults(case.kind) | case.params())
    learned = _public(component) - before
    assert learned, "fit learns nothing"
    assert all(name.endswith("_") for name in learned), f"learned state without _: {learned}"


def check_round_trip(case: Component) -> None:
    assert case.dump is not None
    assert case.load is not None
    assert case.outputs is not None
    original = case.fitted()
    form = case.dump(original)
    restored = case.load(form)
    assert type(restored) is type(original)
    assert case.dump(restored) == form, "the rebuilt component serializes differently"
    _assert_same(case.outputs(restored), case.outputs(original))
    for name in sorted(n for n in _public(original) if n.endswith("_")):
        _assert_same(getattr(restored, name), getattr(original, name), name)


def check_not_fitted(case: Component) -> None:
    assert case.uses, "an estimator lists the calls that need its learned state"
    for use in case.uses:
        with pytest.raises(SetpointError) as caught:
            use(case.new())
        message = str(caught.value)
        assert case.kind.__name__ in message, message
        assert "not fitted" in message, message


def _checks(case: Component) -> list[Callable[[Component], None]]:
    checks = [check_parameters, check_learned_state]
    if case.dump is not None:
        checks.append(check_round_trip)
    if case.fit is not None:
        checks.append(check_not_fitted)
    return checks


@pytest.mark.parametrize(
    ("case", "check"),
    [
        pytest.param(case, check, id=f"{case.id}-{check.__name__.removeprefix('check_')}")
        for case in COMPONENTS
        for check in _checks(case)
    ],
)
def test_contract(case: Component, check: Callable[[Component], None]) -> None:
    check(case)


# Where components live. A public class there with a way to learn or to be
# rebuilt (fit, build, from_*) or a trigger's check is a component.
MODULES = [
    "setpoint.train.preprocess",
    "setpoint.train.calibrate",
    "setpoint.train.heads",
    "setpoint.train.tabular_model",
    "setpoint.stats.reference",
    "setpoint.stats.summaries",
    "setpoint.stats.drift",
    "setpoint.stats.multivariate",
    "setpoint.stats.cbpe",
    "setpoint.autopilot.triggers",
]
_MARKS = ("fit", "build", "from_dict", "from_files", "from_bytes", "check")


def test_every_component_is_listed() -> None:
    listed = {case.kind for case in COMPONENTS}
    found = set()
    for name in MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == name
                and not value.__name__.startswith("_")
                and not getattr(value, "_is_protocol", False)
                and any(hasattr(value, mark) for mark in _MARKS)
            ):
                found.add(value)
    assert found <= listed, f"not in COMPONENTS: {sorted(c.__name__ for c in found - listed)}"
