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
from riskmodel.models.cox import CoxPH, converges_like_rms
from riskmodel.stats import kaplan_meier

__all__ = [
    "CrossValidation",
    "Validation",
    "cross_validate",
    "harrell_c",
    "survival_metrics",
    "validate",
    "validation_metrics",
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


def stratified_splitter(event: np.ndarray, n_splits: int, n_repeats: int, seed: int) -> RepeatedStratifiedKFold:
    """Repeated K-fold stratified on the event indicator.

    Stratification needs every fold to hold an event (and a censored patient, when there are any):
    with fewer of them than folds, the folds are reduced (the splitter's ``n_splits`` says so).
    """
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
    splitter = stratified_splitter(event, n_splits, n_repeats, seed)
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
    return CrossValidation(pd.DataFrame(rows), splitter.cvargs["n_splits"], len(failures), failures, noted)


def _survival_array(model: Any, Z: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_survival(Z, grid).to_numpy(), dtype=float)


def _metric_names(horizons: Sequence[float]) -> list[str]:
    return ["harrell_c", "uno_c", *[f"td_auc_{h:g}" for h in horizons], "ibs", "ibs_km"]


# --------------------------------------------------------------------------- bootstrap validation
@dataclass
class Validation:
    """Harrell's bootstrap optimism correction of a whole modelling procedure.

    ``table`` has one row per metric: ``apparent`` (fit on all data, scored on it), ``optimism``
    (mean over resamples of the score on the resample minus the score on the original data),
    ``corrected`` = apparent − optimism, a 95 % percentile interval of apparent − optimism_b over
    resamples (``ci_low``, ``ci_high``; clipped to [0, 1] for C, AUC and IBS), and ``resamples``
    (how many gave the metric a value: a slope is undefined in a resample with no event before its
    horizon, or where the fit separates).
    """

    table: pd.DataFrame
    per_resample: pd.DataFrame  # one row per resample: its optimism per metric (aggregates only)
    n_resamples: int
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def corrected(self, metric: str) -> float:
        """The optimism-corrected value of one metric."""
        return float(self.table.at[metric, "corrected"])  # type: ignore[arg-type]


def validation_metrics(model: Any, X: pd.DataFrame, y: np.ndarray, horizons: Sequence[float]) -> dict[str, float]:
    """Discrimination, IBS and calibration slopes of a fitted pipeline on (X, y).

    The censoring distribution for Uno's C, td-AUC and the IBS is estimated on (X, y) itself.
    """
    from riskmodel.calibration import calibration_in_the_large, calibration_slope, calibration_slope_at

    Z = model[:-1].transform(X)
    estimator = model[-1]
    risk = estimator.predict_risk(Z)
    reachable = [h for h in horizons if h <= estimator.max_time_] or [estimator.max_time_]
    out = survival_metrics(y, y, risk, partial(_survival_array, estimator, Z), reachable)
    out.pop("ibs_km", None)
    log_hazard = risk if getattr(estimator, "risk_is_log_hazard", False) else np.log(np.maximum(risk, 1e-300))
    out["calibration_slope"] = _safe(lambda: calibration_slope(y, log_hazard))
    for h in horizons:
        key = f"calibration_slope_{h:g}"
        if h > estimator.max_time_:
            out[key] = out[f"calibration_large_{h:g}"] = math.nan
            continue
        surv = _survival_array(estimator, Z, np.array([h]))[:, 0]
        out[key] = _safe(partial(calibration_slope_at, y, surv, h))
        out[f"calibration_large_{h:g}"] = _safe(partial(calibration_in_the_large, y, surv, h))
    for h in horizons:
        out.setdefault(f"td_auc_{h:g}", math.nan)
    return out


def _one_resample(
    pipeline: Any, X: pd.DataFrame, y: np.ndarray, horizons: Sequence[float], seed: np.random.SeedSequence
) -> tuple[dict[str, float] | None, str | None]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), len(y))
    if not y["event"][idx].any():
        return None, "no event in the resample"
    fitted = clone(pipeline)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RiskModelWarning)
            fitted.fit(X.iloc[idx], y[idx])
            constant = getattr(fitted[-1], "constant_", None)
            if constant is not None and constant.any():
                # a linear model cannot estimate a coefficient for a feature with one value in the
                # resample; R's coxph returns NA there and rms::validate excludes the resample
                return None, "singular: a feature has a single value in the resample"
            # separation leaves the unpenalised likelihood without a maximum; rms::validate drops
            # resamples whose cph fit fails to converge, and this is its rule
            unpenalised = isinstance(fitted[-1], CoxPH) and fitted[-1].penalty == 0
            if unpenalised and not converges_like_rms(fitted[:-1].transform(X.iloc[idx]), y[idx]):
                return None, "did not converge (rms's rule): a feature separates the events in the resample"
            boot = validation_metrics(fitted, X.iloc[idx], y[idx], horizons)
            orig = validation_metrics(fitted, X, y, horizons)
    except (ValueError, np.linalg.LinAlgError, ArithmeticError) as exc:
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    return {k: boot[k] - orig.get(k, math.nan) for k in boot}, None


def validate(
    pipeline: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    horizons: Sequence[float],
    *,
    n_resamples: int = 200,
    seed: int = 0,
    n_jobs: int = 1,
    progress: Callable[[], None] | None = None,
    fitted: Any = None,
) -> Validation:
    """Bootstrap optimism correction (Harrell; as R's ``rms::validate``) of the whole ``pipeline``.

    Each of ``n_resamples`` bootstrap samples refits a clone of the complete pipeline (feature
    derivation, model, and any tuning inside it), scores it on its own sample and on the original
    data, and records the difference (the optimism). Resamples that fail (no event, a singular
    fit) are counted in ``failed`` with their reasons and excluded, never dropped silently.
    Reproducible from ``seed`` whatever ``n_jobs`` is (each resample has its own seed).
    ``fitted``: the pipeline already fitted on all of (X, y), when the caller has it (not refitted).
    """
    from joblib import Parallel, delayed

    if n_resamples < 1:
        raise UserInputError(f"n_resamples must be at least 1, got {n_resamples}")
    full = fitted if fitted is not None else clone(pipeline).fit(X, y)
    apparent = validation_metrics(full, X, y, horizons)
    seeds = np.random.SeedSequence(seed).spawn(n_resamples)
    jobs = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_one_resample)(pipeline, X, y, horizons, s) for s in seeds
    )
    rows: list[dict[str, float]] = []
    failures: list[str] = []
    for i, (optimism, failure) in enumerate(jobs):
        if optimism is None:
            failures.append(f"resample {i}: {failure}")
        else:
            rows.append({"resample": i, **optimism})
        if progress:
            progress()
    per = pd.DataFrame(rows, columns=["resample", *apparent])
    table = []
    for metric, value in apparent.items():
        opt = per[metric].dropna() if len(per) else pd.Series(dtype=float)
        corrected_b = value - opt
        if metric.startswith(("harrell_c", "uno_c", "td_auc", "ibs")):  # bounded metrics keep their range
            corrected_b = corrected_b.clip(0.0, 1.0)
        table.append(
            {
                "metric": metric,
                "apparent": value,
                "optimism": float(opt.mean()) if len(opt) else math.nan,
                "corrected": value - float(opt.mean()) if len(opt) else math.nan,
                "ci_low": float(np.quantile(corrected_b, 0.025)) if len(opt) else math.nan,
                "ci_high": float(np.quantile(corrected_b, 0.975)) if len(opt) else math.nan,
                "resamples": len(opt),
            }
        )
    return Validation(pd.DataFrame(table).set_index("metric"), per, n_resamples, len(failures), failures)
