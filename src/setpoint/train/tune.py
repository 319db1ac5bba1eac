"""Hyper-parameter search with Optuna (the optional ``tune`` extra).

The data is split and preprocessed once; each trial fits the recipe's family
on the training slice and scores the primary metric on the validation slice
(the test slice is never looked at). The TPE sampler is seeded with
``recipe.seed``, so a search bounded by trials, not time, is reproducible.
Parameters the user fixed in ``recipe.params`` are not searched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from setpoint.config.spec import ModelRecipe, Task
from setpoint.errors import InvalidParameterError, MissingExtraError
from setpoint.train.fitting import canonical_param, fit_lightgbm, fit_linear, lightgbm_params
from setpoint.train.heads import LightGBMHead, LinearHead
from setpoint.train.metrics import HIGHER_IS_BETTER, metric_function, metric_names
from setpoint.train.prepare import Prepared, prepare

__all__ = ["tune"]


def _suggest(trial: Any, recipe: ModelRecipe, task: Task, fixed: set[str]) -> dict[str, Any]:
    """A point of the search space, skipping what the user fixed."""
    space: dict[str, Callable[[], Any]]
    if recipe.family == "linear":
        name = "alpha" if task is Task.REGRESSION else "C"
        space = {name: lambda: trial.suggest_float(name, 1e-3, 100.0, log=True)}
    else:
        space = {
            "learning_rate": lambda: trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "num_leaves": lambda: trial.suggest_int("num_leaves", 15, 255, log=True),
            "min_data_in_leaf": lambda: trial.suggest_int("min_data_in_leaf", 10, 500, log=True),
            "feature_fraction": lambda: trial.suggest_float("feature_fraction", 0.5, 1.0),
            "bagging_fraction": lambda: trial.suggest_float("bagging_fraction", 0.5, 1.0),
            "lambda_l2": lambda: trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
        }
    return {key: draw() for key, draw in space.items() if key not in fixed}


def _score(prep: Prepared, recipe: ModelRecipe, primary_metric: str) -> float:
    y_train, y_valid = prep.y["train"], prep.y["valid"]
    head: LightGBMHead | LinearHead
    if recipe.family == "linear":
        head, _, _ = fit_linear(
            task=prep.task,
            recipe=recipe,
            n_classes=len(prep.classes),
            train=(prep.x["train"], y_train),
        )
    else:
        params, rounds, stopping = lightgbm_params(
            task=prep.task,
            recipe=recipe,
            n_classes=len(prep.classes),
            primary_metric=primary_metric,
            y_train=y_train,
        )
        head, _ = fit_lightgbm(
            params=params,
            rounds=rounds,
            stopping=stopping,
            train=(prep.x["train"], y_train),
            valid=(prep.x["valid"], y_valid),
            feature_names=prep.preprocessor.feature_names_out(),
            categorical=prep.preprocessor.categorical_indices,
        )
    precision = recipe.threshold.precision or 0.8
    metric = metric_function(primary_metric, precision_target=precision)
    return metric(y_valid, head.predict(prep.x["valid"]))


def tune(
    df: pd.DataFrame,
    *,
    task: Task | str,
    target: str,
    features_numeric: Sequence[str],
    features_categorical: Sequence[str],
    timestamp: str | None,
    recipe: ModelRecipe,
    primary_metric: str,
    trials: int | None = None,
    timeout_s: float | None = None,
    positive_label: Any = None,
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """Search, then return ``recipe.params`` updated with the best parameters found.

    ``trials`` and ``timeout_s`` default to ``recipe.tuning``; with neither,
    nothing is searched and ``recipe.params`` comes back unchanged.
    """
    try:
        import optuna
    except ImportError as exc:
        raise MissingExtraError(
            extra="tune", module="optuna", feature="Hyper-parameter search"
        ) from exc
    task = Task(task)
    trials = recipe.tuning.trials if trials is None else trials
    timeout_s = recipe.tuning.timeout_s if timeout_s is None else timeout_s
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
        raise InvalidParameterError(owner="tune", parameter="trials", expected=">= 0", got=trials)
    if timeout_s is not None and not timeout_s > 0:
        raise InvalidParameterError(
            owner="tune", parameter="timeout_s", expected="> 0", got=timeout_s
        )
    if primary_metric not in metric_names(task):
        raise InvalidParameterError(
            owner="tune",
            parameter="primary_metric",
            expected=f"one of {metric_names(task)}",
            got=primary_metric,
        )
    if trials == 0 and timeout_s is None:
        return dict(recipe.params)

    prep = prepare(
        df,
        task=task,
        target=target,
        features_numeric=features_numeric,
        features_categorical=features_categorical,
        timestamp=timestamp,
        recipe=recipe,
        positive_label=positive_label,
    )
    fixed = {canonical_param(key) for key in recipe.params}
    planned = trials or None

    def objective(trial: Any) -> float:
        candidate = _suggest(trial, recipe, task, fixed)
        trial_recipe = recipe.model_copy(update={"params": {**recipe.params, **candidate}})
        value = _score(prep, trial_recipe, primary_metric)
        if progress is not None and planned:
            progress("tune", min(1.0, (trial.number + 1) / planned))
        return value

    previous = optuna.logging.get_verbosity()
    # Trial-by-trial INFO lines would drown the CLI; errors still surface.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            direction="maximize" if HIGHER_IS_BETTER[primary_metric] else "minimize",
            sampler=optuna.samplers.TPESampler(seed=recipe.seed),
        )
        study.optimize(objective, n_trials=planned, timeout=timeout_s)
    finally:
        optuna.logging.set_verbosity(previous)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        return dict(recipe.params)
    return {**recipe.params, **study.best_trial.params}
