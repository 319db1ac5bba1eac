"""Fit one model family on preprocessed matrices.

LightGBM gets tabular defaults that a user's ``recipe.params`` override, with
early stopping on the validation slice. The linear family fits scikit-learn's
``LogisticRegression`` or ``Ridge`` and keeps only the coefficients.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from setpoint.config.spec import ModelRecipe, Task
from setpoint.errors import InvalidParameterError, TrainingError
from setpoint.train.heads import LightGBMHead, LinearHead

__all__ = ["canonical_param", "fit_lightgbm", "fit_linear", "lightgbm_params"]

FloatArray = npt.NDArray[np.float64]
Progress = Callable[[float], None]

# LightGBM accepts several names per parameter and silently prefers one; a user
# who writes ``eta`` must still override our ``learning_rate``.
_ALIASES: dict[str, set[str]] = {
    "objective": {"objective_type", "app", "application", "loss"},
    "learning_rate": {"shrinkage_rate", "eta"},
    "num_leaves": {"num_leaf", "max_leaves", "max_leaf", "max_leaf_nodes"},
    "min_data_in_leaf": {"min_data_per_leaf", "min_data", "min_child_samples", "min_samples_leaf"},
    "feature_fraction": {"sub_feature", "colsample_bytree"},
    "bagging_fraction": {"sub_row", "subsample", "bagging"},
    "bagging_freq": {"subsample_freq"},
    "lambda_l2": {"reg_lambda", "lambda", "l2_regularization"},
    "seed": {"random_seed", "random_state"},
    "verbosity": {"verbose"},
    "metric": {"metrics", "metric_types"},
    "num_class": {"num_classes"},
    "scale_pos_weight": set(),
    "is_unbalance": {"unbalance", "unbalanced_sets"},
}
_ROUNDS = {
    "num_iterations", "num_iteration", "n_iter", "num_tree", "num_trees", "num_round",
    "num_rounds", "nrounds", "num_boost_round", "n_estimators", "max_iter",
}  # fmt: skip
_STOPPING = {"early_stopping_round", "early_stopping_rounds", "early_stopping", "n_iter_no_change"}
# Early stopping watches LightGBM's version of the primary metric when it has
# one; otherwise the log loss, which every probability metric tends to follow.
_EARLY_STOPPING_METRIC = {
    Task.BINARY: {"roc_auc": "auc", "pr_auc": "average_precision"},
    Task.MULTICLASS: {"accuracy": "multi_error"},
    Task.REGRESSION: {"mae": "l1", "rmse": "rmse"},
}
MAX_ROUNDS = 2000


def canonical_param(name: str) -> str:
    """The main LightGBM name of a parameter (``eta`` -> ``learning_rate``)."""
    for canonical, aliases in _ALIASES.items():
        if name in aliases:
            return canonical
    return name


def lightgbm_params(
    *,
    task: Task,
    recipe: ModelRecipe,
    n_classes: int,
    primary_metric: str,
    y_train: FloatArray,
) -> tuple[dict[str, Any], int, int]:
    """``(params, num_boost_round, early_stopping_rounds)`` for ``lightgbm.train``."""
    objective = {
        Task.BINARY: "binary",
        Task.MULTICLASS: "multiclass",
        Task.REGRESSION: "regression",
    }
    fallback_metric = {
        Task.BINARY: "binary_logloss",
        Task.MULTICLASS: "multi_logloss",
        Task.REGRESSION: "rmse",
    }
    params: dict[str, Any] = {
        "objective": objective[task],
        "metric": _EARLY_STOPPING_METRIC[task].get(primary_metric, fallback_metric[task]),
        "learning_rate": 0.05,
        "num_leaves": 63,
        # 50 rows per leaf suits real tables; tiny ones would not split at all.
        "min_data_in_leaf": int(min(50, max(1, y_train.size // 20))),
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "seed": recipe.seed,
        "deterministic": True,
        # Fixed, because LightGBM otherwise picks row- or column-wise histograms by
        # timing them, and the choice changes the model bytes.
        "force_col_wise": True,
        "verbosity": -1,
    }
    if task is Task.MULTICLASS:
        params["num_class"] = n_classes
    user = {canonical_param(k): v for k, v in recipe.params.items()}
    rounds, stopping = MAX_ROUNDS, recipe.early_stopping_rounds
    for key in list(user):
        if key in _ROUNDS:
            rounds = int(user.pop(key))
        elif key in _STOPPING:
            stopping = int(user.pop(key))
    balanced = recipe.class_weight == "balanced" and task is Task.BINARY
    if balanced and "scale_pos_weight" not in user and "is_unbalance" not in user:
        positives = float(y_train.sum())
        params["scale_pos_weight"] = (y_train.size - positives) / max(positives, 1.0)
    for key, value in user.items():
        default = params.get(key)
        numeric = isinstance(default, int | float) and not isinstance(default, bool)
        if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidParameterError(
                owner="the lightgbm family",
                parameter=f"model.params.{key}",
                expected=f"a number like {default}",
                got=value,
            )
    params.update(user)
    if rounds < 1:
        raise InvalidParameterError(
            owner="train_model",
            parameter="recipe.params.num_iterations",
            expected=">= 1",
            got=rounds,
        )
    return params, rounds, stopping


def _feature_names(names: list[str]) -> list[str]:
    """LightGBM refuses JSON punctuation in feature names; keep them readable but safe."""
    safe: list[str] = []
    for i, name in enumerate(names):
        clean = re.sub(r"[^0-9A-Za-z_]", "_", name) or f"f{i}"
        safe.append(clean if clean not in safe else f"{clean}_{i}")
    return safe


def fit_lightgbm(
    *,
    params: Mapping[str, Any],
    rounds: int,
    stopping: int,
    train: tuple[FloatArray, FloatArray],
    valid: tuple[FloatArray, FloatArray],
    feature_names: list[str],
    categorical: list[int],
    weights: FloatArray | None = None,
    progress: Progress | None = None,
) -> tuple[LightGBMHead, int]:
    """Train with early stopping on ``valid``; returns the head and the best iteration."""
    import lightgbm as lgb

    names = _feature_names(feature_names)
    train_set = lgb.Dataset(
        train[0],
        label=train[1],
        weight=weights,
        feature_name=names,
        categorical_feature=categorical,
    )
    valid_set = lgb.Dataset(valid[0], label=valid[1], reference=train_set)
    callbacks: list[Callable[..., None]] = []
    if stopping > 0:
        callbacks.append(lgb.early_stopping(stopping, first_metric_only=True, verbose=False))
    if progress is not None:
        every = max(1, rounds // 50)

        def report(env: Any) -> None:
            if (env.iteration + 1) % every == 0:
                progress((env.iteration + 1) / rounds)

        callbacks.append(report)
    booster = lgb.train(
        dict(params),
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=callbacks,
    )
    best = (
        int(booster.best_iteration) if booster.best_iteration > 0 else booster.current_iteration()
    )
    return LightGBMHead(booster.model_to_string(num_iteration=best)), best


_LINEAR_PARAMS = {
    Task.BINARY: {"C", "max_iter", "tol"},
    Task.MULTICLASS: {"C", "max_iter", "tol"},
    Task.REGRESSION: {"alpha"},
}


def fit_linear(
    *,
    task: Task,
    recipe: ModelRecipe,
    n_classes: int,
    train: tuple[FloatArray, FloatArray],
    weights: FloatArray | None = None,
) -> tuple[LinearHead, dict[str, Any], list[str]]:
    """Fit on standardised features; returns the head, the parameters used and notes."""
    # A dependency of scikit-learn, so present wherever the linear family can run.
    from threadpoolctl import threadpool_limits

    unknown = set(recipe.params) - _LINEAR_PARAMS[task]
    if unknown:
        raise InvalidParameterError(
            owner="train_model",
            parameter="recipe.params",
            expected=f"only {sorted(_LINEAR_PARAMS[task])} for the linear family",
            got=sorted(unknown),
        )
    # One BLAS thread: the summation order then does not depend on the machine, so
    # the coefficients are reproducible, and L-BFGS's many small products do not
    # stall on OpenBLAS threads spinning for a busy CPU (measured: 1.4 s vs 40 s).
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_linear(task=task, recipe=recipe, n_classes=n_classes, train=train)


def _fit_linear(
    *,
    task: Task,
    recipe: ModelRecipe,
    n_classes: int,
    train: tuple[FloatArray, FloatArray],
    weights: FloatArray | None = None,
) -> tuple[LinearHead, dict[str, Any], list[str]]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge

    matrix, y = train
    notes: list[str] = []
    if task is Task.REGRESSION:
        params: dict[str, Any] = {"alpha": 1.0, **recipe.params}
        ridge = Ridge(alpha=float(params["alpha"])).fit(matrix, y, sample_weight=weights)
        head = LinearHead(
            kind="identity", coef=ridge.coef_, intercept=np.atleast_1d(ridge.intercept_)
        )
        return head, params, notes
    params = {"C": 1.0, "max_iter": 1000, "tol": 1e-4, **recipe.params}
    model = LogisticRegression(
        C=float(params["C"]),
        max_iter=int(params["max_iter"]),
        tol=float(params["tol"]),
        class_weight="balanced" if recipe.class_weight == "balanced" else None,
        random_state=recipe.seed,
    )
    # Record rather than raise: a not-quite-converged model is still usable and
    # the note tells the user to raise max_iter.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(matrix, y.astype(np.int64), sample_weight=weights)
    notes += [f"LogisticRegression: {w.message}" for w in caught]
    coef, intercept = model.coef_, model.intercept_
    if task is Task.BINARY:
        return LinearHead(kind="logistic", coef=coef, intercept=intercept), params, notes
    if coef.shape[0] == 1:  # two classes come back in binary form; softmax([0, z]) matches
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.r_[0.0, intercept]
    if coef.shape[0] != n_classes:
        raise TrainingError(
            f"The training slice has {coef.shape[0]} of the {n_classes} classes; "
            "every class needs training rows."
        )
    return LinearHead(kind="softmax", coef=coef, intercept=intercept), params, notes
