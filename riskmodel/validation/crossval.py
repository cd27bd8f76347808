"""Repeated, stratified K-fold cross-validation of a whole pipeline (features + model).

In a small test fold a metric may be undefined (no event before a horizon, follow-up shorter than
the horizon); it is then NaN and counted, never silently dropped. A fold whose fit fails
numerically is counted with its reason.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedShuffleSplit

from riskmodel.core.parallel import parallel_map
from riskmodel.errors import NUMERICAL_FAILURES, RiskModelWarning, UserInputError, is_own_error
from riskmodel.metrics import EvaluationWindow, as_window
from riskmodel.validation.performance import performance_metric_names, performance_metrics, stratification_labels

__all__ = [
    "CrossValidation",
    "cross_validate",
    "fold_labels",
    "holdout_validate",
    "stratified_splitter",
    "survival_matrix",
]


@dataclass
class CrossValidation:
    """Per-fold metrics and their summary over folds."""

    folds: pd.DataFrame  # one row per (repeat, fold), one column per metric
    n_splits: int  # the folds actually used (fewer than asked when events are fewer)
    failed_fits: int = 0
    failures: list[str] = field(default_factory=list)
    fold_warnings: list[str] = field(default_factory=list)  # e.g. a Cox fit that did not converge

    def summary(self) -> pd.DataFrame:
        """Mean and SD over every fold of every repeat (a fold without a value is left out of both),
        and how many folds had a value. The SD is the spread of single held-out folds, the honest
        picture of how much one small test set's figure varies (the SD of repeat means is far
        smaller and says little)."""
        folds = self.folds.drop(columns=["repeat", "fold"])
        return pd.DataFrame({"mean": folds.mean(), "sd": folds.std(ddof=1), "folds_with_value": folds.notna().sum()})


def stratified_splitter(event: np.ndarray, n_splits: int, n_repeats: int, seed: int) -> RepeatedStratifiedKFold:
    """Repeated K-fold stratified on the event indicator (or on the cause, 0/1/2, with competing risks).

    Stratification needs every fold to hold an event (and a patient without one, when there are
    any): with fewer of them than folds, the folds are reduced (the splitter's ``n_splits`` says so).
    """
    event = np.asarray(event) == 1
    classes = [int(event.sum())] + ([int((~event).sum())] if (~event).any() else [])
    folds = min(n_splits, *classes)
    if folds < 2:
        raise UserInputError(
            f"stratified {n_splits}-fold cross-validation needs at least 2 events and 2 censored patients; "
            f"this data has {int(event.sum())} events and {int((~event).sum())} censored"
        )
    return RepeatedStratifiedKFold(n_splits=folds, n_repeats=n_repeats, random_state=seed)


def cross_validate(
    pipeline: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    window: EvaluationWindow | Sequence[float],
    *,
    n_splits: int = 3,
    n_repeats: int = 10,
    seed: int = 0,
    n_jobs: int = 1,
    progress: Callable[[], None] | None = None,
) -> CrossValidation:
    """Repeated K-fold, stratified on the event indicator (on the cause, 0/1/2, for a competing-risks
    target), refitting the whole ``pipeline`` per fold. The metrics are those of
    :func:`riskmodel.validation.performance.performance_metrics`: survival, or competing-risk
    measures of the CIF of the event of interest for a competing-risks target.

    ``pipeline`` is a scikit-learn Pipeline whose last step is a riskmodel survival family.
    ``window``: the :class:`~riskmodel.metrics.EvaluationWindow` every fold is scored in (a list of
    horizons gives the window of the whole of ``y``). A fold whose fit fails numerically is counted
    in ``failed_fits`` (with its reason), not dropped silently; riskmodel's own errors (a bad
    parameter) stop the run. ``n_jobs``: local processes for the folds (-1: every core; on a Dask
    cluster in use, its workers); the table is the same bit for bit whatever it is.
    """
    w = as_window(window, y)
    splitter = stratified_splitter(stratification_labels(y), n_splits, n_repeats, seed)
    labels = fold_labels(y, splitter.cvargs["n_splits"])
    names = performance_metric_names(y, w.horizons)
    rows: list[dict[str, float]] = []
    failures: list[str] = []
    noted: list[str] = []
    k = splitter.cvargs["n_splits"]
    places = [divmod(i, k) for i in range(k * n_repeats)]
    units = [
        (f"repeat {r}, fold {f}", train, test)
        for (r, f), (train, test) in zip(places, splitter.split(X, labels), strict=True)
    ]
    # folds run here, on local cores or on the Dask cluster in use (riskmodel.core.parallel); their
    # results come back in fold order, so the table is the same wherever they ran
    for (repeat, fold), (metrics, notes, failure) in zip(
        places, parallel_map(_one_fold, units, shared=(pipeline, X, y, w, names), n_jobs=n_jobs), strict=True
    ):
        noted += notes
        if failure is not None:
            failures.append(failure)
        rows.append({"repeat": repeat, "fold": fold, **metrics})
        if progress:
            progress()
    return CrossValidation(pd.DataFrame(rows), splitter.cvargs["n_splits"], len(failures), failures, noted)


def holdout_validate(
    pipeline: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    window: EvaluationWindow | Sequence[float],
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    progress: Callable[[], None] | None = None,
) -> CrossValidation:
    """One random held-out split, stratified as the folds of :func:`cross_validate` are: the
    pipeline fitted on ``1 - test_fraction`` of the patients and scored on the rest (the scheme of
    a cohort with many thousands of events, where one large test set is precise). The result has
    one "fold" (repeat 0, fold 0; its SD is undefined) and ``n_splits`` 1."""
    w = as_window(window, y)
    labels = fold_labels(y, 2)
    train, test = next(StratifiedShuffleSplit(1, test_size=test_fraction, random_state=seed).split(X, labels))
    names = performance_metric_names(y, w.horizons)
    row, noted, failure = _one_fold(pipeline, X, y, w, names, ("held-out split", np.sort(train), np.sort(test)))
    if progress:
        progress()
    failures = [failure] if failure is not None else []
    return CrossValidation(pd.DataFrame([{"repeat": 0, "fold": 0, **row}]), 1, len(failures), failures, noted)


def _one_fold(
    pipeline: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    w: EvaluationWindow,
    names: list[str],
    unit: tuple[str, np.ndarray, np.ndarray],
) -> tuple[dict[str, float], list[str], str | None]:
    """One fold (``unit``: where it is, e.g. "repeat 0, fold 1", and its train and test rows): its
    metrics, its own warnings (non-convergence, a stage unseen in its training part: kept with the
    fold, not shown once per fold), and why its fit failed (or None)."""
    where, train, test = unit
    fitted = clone(pipeline)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RiskModelWarning)
            fitted.fit(X.iloc[train], y[train])
            Z = fitted[:-1].transform(X.iloc[test])
            metrics = performance_metrics(fitted[-1], Z, y[train], y[test], w)
        own = [c for c in caught if issubclass(c.category, RiskModelWarning)]
        noted = [f"{where}: {c.message}" for c in own]
        return {k: metrics.get(k, math.nan) for k in names}, noted, None
    except NUMERICAL_FAILURES as exc:
        if is_own_error(exc):
            raise
        return dict.fromkeys(names, math.nan), [], f"{where}: {exc}"


def fold_labels(y: np.ndarray, n_splits: int) -> np.ndarray:
    """The labels the folds are stratified on: the cause (0/1/2) with competing risks, the event
    otherwise. Competing events fewer than the folds are stratified with the censored."""
    labels = stratification_labels(y)
    if (labels == 2).sum() < n_splits:
        labels = np.where(labels == 2, 0, labels)
    return labels


def survival_matrix(model: Any, Z: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A fitted family's S(t) at ``grid`` as a plain (patients × times) array."""
    return np.asarray(model.predict_survival(Z, grid).to_numpy(), dtype=float)
