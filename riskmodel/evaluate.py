"""Metrics and cross-validation of a whole pipeline (features + model).

Metrics: Harrell's C, Uno's C (IPCW, truncated at the largest horizon), time-dependent
cumulative/dynamic AUC at each horizon, and the integrated Brier score (IBS) over the horizons'
span, with the Kaplan-Meier null model's IBS alongside. The C-indices and the IBS are the
O(n log n) and vectorised versions in :mod:`riskmodel.metrics`. In a small test fold a metric may be
undefined (no event before a horizon, follow-up shorter than the horizon); it is then NaN and
counted, never silently dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import RepeatedStratifiedKFold

from riskmodel.errors import RiskModelWarning, UserInputError
from riskmodel.metrics import harrell_c, integrated_brier, uno_c
from riskmodel.models.base import check_survival_target, step_values
from riskmodel.stats import kaplan_meier

__all__ = [
    "CrossValidation",
    "cross_validate",
    "harrell_c",
    "survival_metrics",
]


def survival_metrics(
    y_train: np.ndarray,
    y_test: np.ndarray,
    risk: np.ndarray,
    survival: Callable[[np.ndarray], np.ndarray],
    horizons: Sequence[float],
) -> dict[str, float]:
    """All metrics for one test set. ``survival(times)`` returns S(t) for the test patients.

    Keys: ``harrell_c``, ``uno_c``, ``td_auc_<h>`` per horizon, ``ibs``, ``ibs_km``.
    """
    event_tr, time_tr = check_survival_target(y_train)
    event_te, time_te = np.asarray(y_test["event"], bool), np.asarray(y_test["time"], float)
    out: dict[str, float] = {"harrell_c": _safe(lambda: harrell_c(event_te, time_te, risk))}
    hs = np.asarray(horizons, float)
    out["uno_c"] = _safe(partial(uno_c, y_train, y_test, risk, min(hs.max(), time_tr.max())))
    for h in hs:
        ok = h < time_te.max() and ((time_te <= h) & event_te).any() and (time_te > h).any()
        out[f"td_auc_{h:g}"] = _safe(partial(_td_auc, y_train, y_test, risk, float(h))) if ok else math.nan
    # IBS on a grid over the horizons' span that the test follow-up and the censoring KM support
    upper = min(hs.max(), np.nextafter(time_te.max(), 0), time_tr.max())
    lower = max(float(time_te.min()), 1e-9)
    out["ibs"] = out["ibs_km"] = math.nan
    if upper > lower:
        grid = np.linspace(lower, upper, 25)[:-1]
        km_t, km_s = kaplan_meier(time_tr, event_tr)
        null = np.tile(step_values(km_t, km_s, grid, before=1.0), (len(time_te), 1))
        out["ibs"] = _safe(partial(integrated_brier, y_train, y_test, survival(grid), grid))
        out["ibs_km"] = _safe(partial(integrated_brier, y_train, y_test, null, grid))
    return out


def _td_auc(y_train: np.ndarray, y_test: np.ndarray, risk: np.ndarray, horizon: float) -> float:
    from sksurv.metrics import cumulative_dynamic_auc

    return float(cumulative_dynamic_auc(y_train, y_test, risk, [horizon])[0][0])


def _safe(fn: Callable[[], float]) -> float:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = fn()
    except (ValueError, ZeroDivisionError, IndexError):
        return math.nan
    return value if math.isfinite(value) else math.nan


@dataclass
class CrossValidation:
    """Per-fold metrics and their summary over repeats."""

    folds: pd.DataFrame  # one row per (repeat, fold), one column per metric
    n_splits: int  # the folds actually used (fewer than asked when events are fewer)
    failed_fits: int = 0
    failures: list[str] = field(default_factory=list)
    fold_warnings: list[str] = field(default_factory=list)  # e.g. a Cox fit that did not converge

    def summary(self) -> pd.DataFrame:
        """Mean and SD over repeats (each repeat averages its folds), and how many folds had a value."""
        per_repeat = self.folds.groupby("repeat").mean(numeric_only=True).drop(columns="fold", errors="ignore")
        valid = self.folds.drop(columns=["repeat", "fold"]).notna().sum()
        return pd.DataFrame({"mean": per_repeat.mean(), "sd": per_repeat.std(ddof=1), "folds_with_value": valid})


def cross_validate(
    pipeline: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    horizons: Sequence[float],
    *,
    n_splits: int = 3,
    n_repeats: int = 10,
    seed: int = 0,
    progress: Callable[[], None] | None = None,
) -> CrossValidation:
    """Repeated K-fold, stratified on the event indicator, refitting the whole ``pipeline`` per fold.

    ``pipeline`` is a scikit-learn Pipeline whose last step is a riskmodel survival family.
    A fold whose fit fails is counted in ``failed_fits`` (with its reason), not dropped silently.
    """
    event = np.asarray(y["event"], bool)
    # Stratification needs every fold to hold an event (and a censored patient, when there are any):
    # with fewer of them than folds, the folds are reduced, and the result says so (n_splits).
    classes = [int(event.sum())] + ([int((~event).sum())] if (~event).any() else [])
    folds = min(n_splits, *classes)
    if folds < 2:
        raise UserInputError(
            f"stratified {n_splits}-fold cross-validation needs at least 2 events and 2 censored patients; "
            f"this data has {int(event.sum())} events and {int((~event).sum())} censored"
        )
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=n_repeats, random_state=seed)
    rows: list[dict[str, float]] = []
    failures: list[str] = []
    noted: list[str] = []
    for i, (train, test) in enumerate(splitter.split(X, event)):
        repeat, fold = divmod(i, splitter.cvargs["n_splits"])
        fitted = clone(pipeline)
        try:
            # A fold's own warnings (non-convergence, a stage unseen in its training part) are kept
            # with the fold, not shown once per fold.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RiskModelWarning)
                fitted.fit(X.iloc[train], y[train])
                Z = fitted[:-1].transform(X.iloc[test])
                model = fitted[-1]
                reachable = [h for h in horizons if h <= model.max_time_]
                metrics = survival_metrics(
                    y[train],
                    y[test],
                    model.predict_risk(Z),
                    partial(_survival_array, model, Z),
                    reachable or [model.max_time_],
                )
            noted += [
                f"repeat {repeat}, fold {fold}: {w.message}" for w in caught if issubclass(w.category, RiskModelWarning)
            ]
            metrics = {k: metrics.get(k, math.nan) for k in _metric_names(horizons)}
        except (ValueError, np.linalg.LinAlgError, ArithmeticError) as exc:
            failures.append(f"repeat {repeat}, fold {fold}: {exc}")
            metrics = dict.fromkeys(_metric_names(horizons), math.nan)
        rows.append({"repeat": repeat, "fold": fold, **metrics})
        if progress:
            progress()
    return CrossValidation(pd.DataFrame(rows), folds, len(failures), failures, noted)


def _survival_array(model: Any, Z: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_survival(Z, grid).to_numpy(), dtype=float)


def _metric_names(horizons: Sequence[float]) -> list[str]:
    return ["harrell_c", "uno_c", *[f"td_auc_{h:g}" for h in horizons], "ibs", "ibs_km"]
