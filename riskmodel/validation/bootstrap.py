"""Harrell's bootstrap optimism correction of a whole pipeline, as R's ``rms::validate``.

Metrics: Harrell's C, Uno's C, time-dependent AUC, the IBS (:mod:`riskmodel.metrics`) and the
calibration slopes and calibration-in-the-large (:mod:`riskmodel.validation.calibration`).
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

from riskmodel.errors import RiskModelWarning, UserInputError
from riskmodel.metrics import defined_or_nan, survival_metrics
from riskmodel.models.cox import CoxPH, converges_like_rms
from riskmodel.validation.calibration import calibration_in_the_large, calibration_slope, calibration_slope_at
from riskmodel.validation.crossval import survival_matrix

__all__ = ["Validation", "validate", "validation_metrics"]


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
    Z = model[:-1].transform(X)
    estimator = model[-1]
    risk = estimator.predict_risk(Z)
    reachable = [h for h in horizons if h <= estimator.max_time_] or [estimator.max_time_]
    out = survival_metrics(y, y, risk, partial(survival_matrix, estimator, Z), reachable)
    out.pop("ibs_km", None)
    log_hazard = risk if getattr(estimator, "risk_is_log_hazard", False) else np.log(np.maximum(risk, 1e-300))
    out["calibration_slope"] = defined_or_nan(lambda: calibration_slope(y, log_hazard))
    for h in horizons:
        key = f"calibration_slope_{h:g}"
        if h > estimator.max_time_:
            out[key] = out[f"calibration_large_{h:g}"] = math.nan
            continue
        surv = survival_matrix(estimator, Z, np.array([h]))[:, 0]
        out[key] = defined_or_nan(partial(calibration_slope_at, y, surv, h))
        out[f"calibration_large_{h:g}"] = defined_or_nan(partial(calibration_in_the_large, y, surv, h))
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
