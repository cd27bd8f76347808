"""Harrell's bootstrap optimism correction of a whole pipeline, as R's ``rms::validate``.

Metrics: Harrell's C, Uno's C, time-dependent AUC, the IBS (:mod:`riskmodel.metrics`) and the
calibration slopes and calibration-in-the-large (:mod:`riskmodel.validation.calibration`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from riskmodel.core.parallel import parallel_map
from riskmodel.errors import NUMERICAL_FAILURES, UserInputError, is_own_error, own_warnings_silenced
from riskmodel.metrics import EvaluationWindow, as_window, defined_or_nan
from riskmodel.models.cox import CoxPH, rms_fit_failure
from riskmodel.stats import is_competing
from riskmodel.validation.calibration import calibration_in_the_large, calibration_slope, calibration_slope_at
from riskmodel.validation.competing import cif_observed_expected, cif_slope_at
from riskmodel.validation.crossval import survival_matrix
from riskmodel.validation.performance import performance_metrics, predicted_risk_by

__all__ = ["Validation", "validate", "validation_metrics"]


@dataclass
class Validation:
    """Harrell's bootstrap optimism correction of a whole modelling procedure.

    ``table`` has one row per metric: ``apparent`` (fit on all data, scored on it), ``optimism``
    (mean over resamples of the score on the resample minus the score on the original data),
    ``corrected`` = apparent − optimism, an *approximate* 95 % interval: the 2.5th and 97.5th
    percentiles of apparent − optimism_b over resamples (``ci_low``, ``ci_high``; clipped to [0, 1]
    for C, AUC and IBS). It has no documented coverage (it can cover the true value less often
    than 95 %), so it is labelled approximate wherever it is shown. ``resamples``
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


def validation_metrics(
    model: Any, X: pd.DataFrame, y: np.ndarray, window: EvaluationWindow | Sequence[float], *, Z: Any = None
) -> dict[str, float]:
    """Discrimination, IBS and calibration of a fitted pipeline on (X, y), in the evaluation window.

    The censoring distribution for Uno's C, td-AUC and the IBS is estimated on (X, y) itself.
    ``calibration_slope`` is the Cox coefficient of the linear predictor refitted on (X, y)
    (rms's ``Slope``); ``calibration_slope_<h>`` and ``calibration_large_<h>`` are at each horizon.

    A competing-risks target gets the competing-risk measures of the CIF of the event of interest
    (:func:`riskmodel.validation.performance.performance_metrics`) and, per horizon, the
    calibration slope of the CIF (the Fine-Gray coefficient of cloglog F̂_1(h), Austin et al. 2022;
    :func:`riskmodel.validation.competing.cif_slope_at`) and ``calibration_oe_<h>``, the observed
    Aalen-Johansen CIF over the mean predicted one (1 is ideal); no overall slope.

    ``Z``: ``model[:-1].transform(X)``, when the caller has it already (not transformed again).
    """
    w = as_window(window, y)
    if Z is None:
        Z = model[:-1].transform(X)
    estimator = model[-1]
    out = performance_metrics(estimator, Z, y, y, w)
    out.pop("ibs_km", None)
    if is_competing(y):
        for h in w.horizons:
            defined = h <= estimator.max_time_
            cif = predicted_risk_by(estimator, Z, h, y) if defined else None
            out[f"calibration_slope_{h:g}"] = defined_or_nan(partial(cif_slope_at, y, cif, h)) if defined else math.nan
            out[f"calibration_oe_{h:g}"] = (
                defined_or_nan(partial(cif_observed_expected, y, cif, h)) if defined else math.nan
            )
        return out
    risk = estimator.predict_risk(Z)
    out["calibration_slope"] = defined_or_nan(lambda: calibration_slope(y, _linear_predictor(estimator, risk)))
    for h in w.horizons:
        key = f"calibration_slope_{h:g}"
        if h > estimator.max_time_:
            out[key] = out[f"calibration_large_{h:g}"] = math.nan
            continue
        surv = survival_matrix(estimator, Z, np.array([h]))[:, 0]
        out[key] = defined_or_nan(partial(calibration_slope_at, y, surv, h))
        out[f"calibration_large_{h:g}"] = defined_or_nan(partial(calibration_in_the_large, y, surv, h))
    return out


def _linear_predictor(estimator: Any, risk: np.ndarray) -> np.ndarray:
    return risk if getattr(estimator, "risk_is_log_hazard", False) else np.log(np.maximum(risk, 1e-300))


def _fits_by_maximum_likelihood(estimator: Any) -> bool:
    """An unpenalised Cox model: its linear predictor maximises the partial likelihood of its own
    training data, so its calibration slope there is exactly 1 (rms defines it so)."""
    return isinstance(estimator, CoxPH) and estimator.penalty == 0


def _rows(Z: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of a feature matrix (an array, or a DataFrame from a declared cohort's features)."""
    return Z.iloc[idx] if isinstance(Z, pd.DataFrame) else Z[idx]


def _one_resample(
    pipeline: Any, X: pd.DataFrame, y: np.ndarray, window: EvaluationWindow, seed: np.random.SeedSequence
) -> tuple[dict[str, float] | None, str | None]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), len(y))
    if not y["event"][idx].any():  # with competing risks, the event of interest
        return None, "no event in the resample"
    fitted = clone(pipeline)
    X_boot = X.iloc[idx]  # taken once (a copy of every column) for the features' fit and the resample's score
    try:
        with own_warnings_silenced():
            # the feature steps transform row by row, so the resample's rows of the original data's
            # features are its own features: one transform serves the model's fit and both scores
            fitted[:-1].fit(X_boot, y[idx])
            Z = fitted[:-1].transform(X)
            fitted[-1].fit(_rows(Z, idx), y[idx])
            if _fits_by_maximum_likelihood(fitted[-1]):
                # rms::validate leaves out the resamples whose cph refit fails: separation (no
                # maximum in 10 iterations) or a coefficient that is not estimable
                why = rms_fit_failure(_rows(Z, idx), y[idx])
                if why is not None:
                    return None, why
            boot = validation_metrics(fitted, X_boot, y[idx], window, Z=_rows(Z, idx))
            orig = validation_metrics(fitted, X, y, window, Z=Z)
    except NUMERICAL_FAILURES as exc:
        if is_own_error(exc):
            raise
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    if _fits_by_maximum_likelihood(fitted[-1]):
        boot["calibration_slope"] = 1.0
    overall = [] if is_competing(y) else [boot["calibration_slope"], orig["calibration_slope"]]
    for name, value in zip(("in the resample", "on the original data"), overall, strict=False):
        if not math.isfinite(value):
            # the most overfitted resamples are the ones whose slope refit diverges; dropping them
            # from the slope alone would bias it, so they leave every metric, counted
            return None, f"the calibration slope cannot be estimated {name} (its Cox refit does not converge)"
    return {k: boot[k] - orig.get(k, math.nan) for k in boot}, None


def validate(
    pipeline: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    window: EvaluationWindow | Sequence[float],
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
    data, and records the difference (the optimism), every metric in the same evaluation
    ``window`` (τ, IBS grid and horizons fixed from the whole of ``y``; a list of horizons gives
    that window). Resamples that fail are counted in ``failed`` with their reasons and left out of
    every metric, never dropped silently: no event; for an unpenalised Cox model, the resamples
    ``rms::validate`` leaves out (:func:`riskmodel.models.cox.rms_fit_failure`); a calibration
    slope that cannot be estimated. As in rms, an unpenalised Cox model's slope on its own
    training data is 1 by definition.
    Reproducible from ``seed`` whatever ``n_jobs`` is, and on a Dask cluster (each resample has its own
    seed; results are gathered in resample order).
    ``fitted``: the pipeline already fitted on all of (X, y), when the caller has it (not refitted).
    """
    if n_resamples < 1:
        raise UserInputError(f"n_resamples must be at least 1, got {n_resamples}")
    w = as_window(window, y)
    full = fitted if fitted is not None else clone(pipeline).fit(X, y)
    apparent = validation_metrics(full, X, y, w)
    if _fits_by_maximum_likelihood(full[-1]):
        apparent["calibration_slope"] = 1.0
    seeds = np.random.SeedSequence(seed).spawn(n_resamples)
    # on local cores, or on the Dask cluster in use (riskmodel.core.parallel), in resample order
    jobs = parallel_map(_one_resample, seeds, shared=(pipeline, X, y, w), n_jobs=n_jobs)
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
