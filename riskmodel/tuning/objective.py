"""The tuning objective: a survival metric on held-out folds, the same folds for every trial.

The folds come from :func:`riskmodel.validation.stratified_splitter` with the experiment's seed.
After each fold the running mean is reported, so a pruner can stop a poor trial early.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from riskmodel.core.parallel import parallel_map
from riskmodel.errors import NUMERICAL_FAILURES, UserInputError, is_own_error, own_warnings_silenced
from riskmodel.metrics import EvaluationWindow
from riskmodel.models.registry import ParamSpace
from riskmodel.tuning.spaces import suggest
from riskmodel.validation import stratified_splitter
from riskmodel.validation.crossval import fold_labels
from riskmodel.validation.performance import performance_metrics, stratification_labels

__all__ = ["NoFoldValue", "Surplus", "direction", "fold_score", "optuna_module", "run_folds", "splits"]


def optuna_module() -> Any:
    """Optuna, with its per-trial log lines silenced (failures are recorded in the study and MLflow)."""
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise UserInputError("tuning needs optuna: pip install optuna") from exc
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


class Surplus(Exception):
    """The study already has its trials: this one is not run."""


class NoFoldValue(ValueError):
    """No fold of a trial gave a value of the objective (every fit failed numerically)."""


def direction(metric: str) -> str:
    """``minimize`` for the IBS, ``maximize`` for the C-indices and AUC."""
    return "minimize" if metric == "ibs" else "maximize"


def splits(y: np.ndarray, n_splits: int, n_repeats: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The CV folds of every trial, fixed once (stratified as cross-validation: on the cause with
    competing risks)."""
    splitter = stratified_splitter(stratification_labels(y), n_splits, n_repeats, seed)
    labels = fold_labels(y, splitter.cvargs["n_splits"])
    return list(splitter.split(np.zeros(len(y)), labels))


def fold_score(
    model: Any,
    X: Any,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    metric: str,
    window: EvaluationWindow,
    h: float,
) -> float:
    """The objective on one held-out fold (NaN when the fold cannot give it).

    Uno's C and the IBS are measured in the study's one evaluation ``window`` (τ and grid fixed
    for every fold of every trial); td-AUC is at ``h``, one of the window's horizons. A
    competing-risks target is scored by the competing-risk measures of the CIF under the same keys
    (:func:`riskmodel.validation.performance.performance_metrics`).
    """

    def pick(A: Any, idx: np.ndarray) -> Any:
        return A.iloc[idx] if isinstance(A, pd.DataFrame) else A[idx]

    try:
        with own_warnings_silenced():
            fitted = model.fit(pick(X, train), y[train])
            if isinstance(fitted, Pipeline):
                Z, estimator = fitted[:-1].transform(pick(X, test)), fitted[-1]
            else:
                Z, estimator = pick(X, test), fitted
            values = performance_metrics(estimator, Z, y[train], y[test], window)
    except NUMERICAL_FAILURES as exc:
        if is_own_error(exc):
            raise
        return math.nan
    key = f"td_auc_{h:g}" if metric == "td_auc" else metric
    return float(values.get(key, math.nan))


def _fold_unit(
    X: Any, y: np.ndarray, metric: str, window: EvaluationWindow, horizon: float, unit: tuple[Any, Any, Any]
) -> float:
    pipeline, train, test = unit
    return fold_score(pipeline, X, y, train, test, metric, window, horizon)


def run_folds(
    trial: Any,
    make: Callable[[dict[str, Any]], Any],
    X: Any,
    y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    metric: str,
    window: EvaluationWindow,
    horizon: float,
    space: Mapping[str, ParamSpace],
    on_fold: Callable[[int, float], None] | None = None,
) -> tuple[float, list[float]]:
    """Suggest the trial's parameters, score them fold by fold (reporting for pruning)."""
    optuna = optuna_module()
    params = {name: suggest(trial, name, s) for name, s in space.items()}
    scores: list[float] = []
    # one fold after the other here, or all of them at once on the Dask cluster in use
    # (riskmodel.core.parallel), read back in fold order (a pruned trial releases the rest)
    units = [(make(params), train, test) for train, test in folds]
    for k, value in enumerate(parallel_map(_fold_unit, units, shared=(X, y, metric, window, horizon))):
        scores.append(value)
        if on_fold:
            on_fold(k, value)
        if np.isfinite(scores).any():
            trial.report(float(np.nanmean(scores)), k)
            if trial.should_prune():
                raise optuna.TrialPruned()
    if not np.isfinite(scores).any():
        raise NoFoldValue(f"no fold gave a value of {metric}")
    trial.set_user_attr("fold_scores", [None if not math.isfinite(v) else v for v in scores])
    return float(np.nanmean(scores)), scores
