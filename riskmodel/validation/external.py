"""External validation of a fixed model on patients it never saw, with bootstrap CIs.

The model is fixed: its predictions are computed once, and the 95 % intervals are percentile
intervals over bootstrap resamples of the validation *patients* (Steyerberg, Clinical Prediction
Models, 2nd ed., ch. 17; Riley et al., BMJ 2024;384:e074819). Every measure below is computed on
each resample exactly as on the whole sample.

* **Discrimination**: Harrell's C, Uno's C truncated at the largest horizon, the
  cumulative/dynamic AUC at each horizon (of the predicted risk 1 − S(h)). Censoring weights come
  from the validation data's own censoring distribution.
* **Overall accuracy**: the IPCW Brier score at each horizon (Graf et al., Stat Med 1999;18:2529-45),
  the integrated Brier score, and each scaled against the Kaplan-Meier null model of the
  validation data (1 − Brier/Brier_KM; Steyerberg et al., Epidemiology 2010;21:128-38).
* **Calibration**: O/E at each horizon, the observed Kaplan-Meier risk over the mean predicted
  risk; the calibration slope (Cox regression of the outcome on the linear predictor, for a Cox
  model, and at each horizon on log(−log Ŝ(h)) for every family); ICI, E50 and E90 (Austin,
  Harrell & van Klaveren, Stat Med 2020;39:2714-42); grouped and smoothed calibration curves
  with bands (:func:`riskmodel.validation.calibration.calibration_curve`).
* **Clinical utility**: the decision curve at each horizon (Vickers et al. 2008).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.metrics import defined_or_nan, harrell_c, integrated_brier, td_auc, uno_c
from riskmodel.models.competing import CompetingRiskEstimator
from riskmodel.models.cox import CoxPH
from riskmodel.models.recalibrated import Recalibrated
from riskmodel.stats import kaplan_meier, step_values
from riskmodel.validation.calibration import (
    CalibrationCurve,
    calibration_curve,
    calibration_slope,
    calibration_slope_at,
    smooth_calibration,
)
from riskmodel.validation.decision import net_benefit

__all__ = [
    "IBS_POINTS",
    "THRESHOLDS",
    "ExternalValidation",
    "FixedPredictions",
    "bootstrap_table",
    "brier_at",
    "external_validation",
    "fixed_predictions",
    "is_linear",
    "measure_table",
    "observed_expected",
    "point_estimates",
]

IBS_POINTS = 25
THRESHOLDS = np.round(np.arange(0.01, 0.81, 0.01), 2)  # decision-curve threshold probabilities


@dataclass(frozen=True)
class FixedPredictions:
    """A fixed model's predictions for the validation patients (rows), computed once."""

    horizons: tuple[float, ...]
    risk: np.ndarray  # the model's risk score (higher = worse)
    survival: np.ndarray  # S(h), one column per horizon
    grid: tuple[float, ...]  # the IBS time points
    survival_grid: np.ndarray  # S(t) on the grid
    linear_predictor: np.ndarray | None  # a Cox model's log hazard ratio, else None

    def take(self, idx: np.ndarray) -> FixedPredictions:
        """The predictions of rows ``idx`` (a bootstrap resample)."""
        lp = None if self.linear_predictor is None else self.linear_predictor[idx]
        return FixedPredictions(
            self.horizons, self.risk[idx], self.survival[idx], self.grid, self.survival_grid[idx], lp
        )


def ibs_grid(y: Any, horizons: Sequence[float], points: int = IBS_POINTS) -> tuple[float, ...]:
    """From the first validation time (or τ/points) to the largest horizon τ."""
    tau = float(max(horizons))
    first = float(np.min(y["time"]))
    lower = first if first < tau else tau / points
    return tuple(float(t) for t in np.linspace(lower, tau, points))


def fixed_predictions(estimator: Any, Z: Any, y: Any, horizons: Sequence[float]) -> FixedPredictions:
    """Risk, S(h) and S on the IBS grid of a fitted survival estimator for design ``Z``."""
    h = tuple(float(v) for v in horizons)
    grid = ibs_grid(y, h)
    risk = np.asarray(estimator.predict_risk(Z), dtype=float)
    surv = np.asarray(estimator.predict_survival(Z, list(h)).to_numpy(), dtype=float)
    surv_grid = np.asarray(estimator.predict_survival(Z, list(grid)).to_numpy(), dtype=float)
    return FixedPredictions(h, risk, surv, grid, surv_grid, risk if is_linear(estimator) else None)


def is_linear(estimator: Any) -> bool:
    """Whether the risk score is a Cox linear predictor: a Cox model, the mean of the Cox models
    fitted on multiple imputations (the mean of their linear predictors is one), or a recalibrated
    model (γ·r, the linear predictor of its recalibration Cox model)."""
    if isinstance(estimator, CoxPH | Recalibrated):
        return True
    fitted = getattr(estimator, "models_", None)
    if isinstance(estimator, CompetingRiskEstimator) or not isinstance(fitted, list):
        return False
    return bool(fitted) and all(isinstance(m, CoxPH) for m in fitted)


def _censoring_weights(y: Any, horizon: float) -> tuple[np.ndarray, float]:
    """1/G(T_i) for each patient (∞ where G is 0) and G(horizon), G the censoring Kaplan-Meier."""
    from sksurv.nonparametric import CensoringDistributionEstimator

    cens = CensoringDistributionEstimator().fit(y)
    time = np.asarray(y["time"], float)
    g_y = np.asarray(cens.predict_proba(np.minimum(time, horizon)), dtype=float)
    return g_y, float(cens.predict_proba(np.array([horizon]))[0])


def brier_at(y: Any, survival_at_h: Any, horizon: float) -> float:
    """IPCW Brier score of S(``horizon``) (Graf et al. 1999), censoring weights from ``y`` itself.

    BS(t) = mean[ S(t)² · 1(T ≤ t, event) / G(T) + (1 − S(t))² · 1(T > t) / G(t) ], G the
    Kaplan-Meier estimate of the censoring distribution (as scikit-survival's ``brier_score``).
    """
    s = np.asarray(survival_at_h, dtype=float)
    time, event = np.asarray(y["time"], float), np.asarray(y["event"], bool)
    g_y, g_t = _censoring_weights(y, horizon)
    if g_t <= 0:
        return math.nan
    case = (time <= horizon) & event
    with np.errstate(divide="ignore", invalid="ignore"):
        case_term = np.where(case, np.square(s) / np.where(g_y > 0, g_y, np.inf), 0.0)
    control = np.where(time > horizon, np.square(1.0 - s) / g_t, 0.0)
    return float(np.mean(case_term + control))


def km_survival(y: Any, times: Any) -> np.ndarray:
    """The Kaplan-Meier S(t) of ``y`` at ``times`` (1 before the first event)."""
    t, s = kaplan_meier(np.asarray(y["time"], float), np.asarray(y["event"], bool))
    return step_values(t, s, np.asarray(times, dtype=float), before=1.0)


def observed_expected(y: Any, survival_at_h: Any, horizon: float) -> float:
    """O/E by ``horizon``: the Kaplan-Meier risk 1 − S_KM(h) over the mean predicted risk 1 − Ŝ(h).

    >>> from riskmodel.stats import survival_array
    >>> y = survival_array([True, True, False, False], [1.0, 2.0, 5.0, 6.0])
    >>> observed_expected(y, [0.75, 0.75, 0.75, 0.75], 3.0)  # KM risk 0.5, predicted 0.25
    2.0
    """
    observed = 1.0 - float(km_survival(y, [horizon])[0])
    expected = float(np.mean(1.0 - np.asarray(survival_at_h, dtype=float)))
    return observed / expected if expected > 0 else math.nan


def _horizon_measures(y: Any, p: FixedPredictions, j: int, h: float) -> dict[str, float]:
    s = p.survival[:, j]
    time, event = np.asarray(y["time"], float), np.asarray(y["event"], bool)
    out: dict[str, float] = {}
    ok_auc = ((time <= h) & event).any() and (time > h).any()
    out[f"td_auc_{h:g}"] = defined_or_nan(lambda: td_auc(y, y, 1.0 - s, h)) if ok_auc else math.nan
    null = np.full(len(s), float(km_survival(y, [h])[0]))
    brier = defined_or_nan(lambda: brier_at(y, s, h))
    brier_km = defined_or_nan(lambda: brier_at(y, null, h))
    out[f"brier_{h:g}"] = brier
    out[f"brier_km_{h:g}"] = brier_km
    out[f"scaled_brier_{h:g}"] = 1.0 - brier / brier_km if brier_km > 0 else math.nan
    out[f"oe_{h:g}"] = defined_or_nan(lambda: observed_expected(y, s, h))
    out[f"slope_{h:g}"] = defined_or_nan(lambda: calibration_slope_at(y, s, h))
    if event.any():
        try:
            sc = smooth_calibration(y, s, h)
            out.update({f"ici_{h:g}": sc.ici, f"e50_{h:g}": sc.e50, f"e90_{h:g}": sc.e90})
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):
            out.update({f"ici_{h:g}": math.nan, f"e50_{h:g}": math.nan, f"e90_{h:g}": math.nan})
    else:
        out.update({f"ici_{h:g}": math.nan, f"e50_{h:g}": math.nan, f"e90_{h:g}": math.nan})
    return out


def point_estimates(y: Any, p: FixedPredictions) -> dict[str, float]:
    """Every measure of the module docstring on validation outcomes ``y`` (NaN where undefined)."""
    time, event = np.asarray(y["time"], float), np.asarray(y["event"], bool)
    tau = max(p.horizons)
    out: dict[str, float] = {"harrell_c": defined_or_nan(lambda: harrell_c(event, time, p.risk))}
    out["uno_c"] = defined_or_nan(lambda: uno_c(y, y, p.risk, tau))
    out["slope"] = math.nan if p.linear_predictor is None else calibration_slope(y, p.linear_predictor)
    grid = np.asarray(p.grid)
    null = np.tile(km_survival(y, grid), (len(time), 1))
    if grid[-1] < time.max():
        out["ibs"] = defined_or_nan(lambda: integrated_brier(y, y, p.survival_grid, grid))
        out["ibs_km"] = defined_or_nan(lambda: integrated_brier(y, y, null, grid))
    else:
        out["ibs"] = out["ibs_km"] = math.nan
    out["scaled_ibs"] = 1.0 - out["ibs"] / out["ibs_km"] if out["ibs_km"] > 0 else math.nan
    for j, h in enumerate(p.horizons):
        out.update(_horizon_measures(y, p, j, h))
    return out


@dataclass
class ExternalValidation:
    """The measures of one fixed model on one validation cohort, with bootstrap CIs.

    ``table``: one row per measure (``measure``, ``horizon`` or NaN, ``estimate``, ``low``,
    ``high``); ``calibration`` and ``decision``: per horizon, the curves (aggregates only).
    """

    horizons: tuple[float, ...]
    n_patients: int
    n_events: int
    table: pd.DataFrame
    calibration: dict[float, CalibrationCurve]
    decision: dict[float, pd.DataFrame]
    n_boot: int
    failed_boot: int
    grid: tuple[float, ...]
    notes: list[str] = field(default_factory=list)
    # each measure on each kept bootstrap resample (aggregates only): SEs on any scale
    replicates: pd.DataFrame = field(default_factory=pd.DataFrame)

    def estimates(self) -> dict[str, float]:
        """Each measure's point estimate, by its key (``harrell_c``, ``oe_12``, …)."""
        return {str(k): float(v) for k, v in zip(self.table["key"], self.table["estimate"], strict=True)}

    def interval(self, key: str) -> tuple[float, float]:
        """The 95 % bootstrap interval of measure ``key``."""
        row = self.table.loc[self.table["key"] == key].iloc[0]
        return float(row["low"]), float(row["high"])


def measure_table(point: dict[str, float], boots: pd.DataFrame) -> pd.DataFrame:
    """One row per measure of ``point``: its key, stem, horizon, estimate and the 95 % percentile
    interval over the bootstrap replicates ``boots`` (non-finite replicates left out)."""
    rows = []
    for key, value in point.items():
        name, _, suffix = key.rpartition("_")
        horizon = float(suffix) if name and _is_number(suffix) else math.nan
        column = boots[key].to_numpy(float) if key in boots else np.array([])
        finite = column[np.isfinite(column)]
        low, high = np.percentile(finite, [2.5, 97.5]) if finite.size >= 2 else (math.nan, math.nan)
        rows.append(
            {
                "key": key,
                "measure": name if math.isfinite(horizon) else key,
                "horizon": horizon,
                "estimate": value,
                "low": float(low),
                "high": float(high),
                "resamples": int(finite.size),
            }
        )
    return pd.DataFrame(rows)


def bootstrap_table(
    estimates: Callable[[Any, Any], dict[str, float]],
    y: Any,
    p: Any,
    event: np.ndarray,
    *,
    n_boot: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The bootstrap of a fixed model over its validation patients: ``estimates(y, p)`` on all of
    them and on ``n_boot`` resamples with replacement (seeded by ``seed``; ``p`` the predictions,
    with ``take``). A resample in which ``event`` (one bool a patient) never occurs is skipped and
    counted. Returns the :func:`measure_table`, the replicates (one row a kept resample) and the
    count of skipped resamples."""
    point = estimates(y, p)
    rng = np.random.default_rng(seed)
    n = len(event)
    rows, failed = [], 0
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        if not event[idx].any():
            failed += 1
            continue
        rows.append(estimates(y[idx], p.take(idx)))
    boots = pd.DataFrame(rows, columns=list(point))
    return measure_table(point, boots), boots, failed


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def external_validation(
    model: Any,
    X: pd.DataFrame,
    y: Any,
    horizons: Sequence[float],
    *,
    n_boot: int = 200,
    seed: int = 0,
    band_resamples: int | None = None,
) -> ExternalValidation:
    """Validate a fitted ``model`` (``features`` + ``estimator``, as a RiskModel) on ``X``, ``y``.

    ``horizons``: months after the model's time zero (``y`` already from its landmark). The
    model is fixed; the CIs resample the validation patients ``n_boot`` times (seeded by ``seed``).
    ``band_resamples``: resamples of the smoothed calibration curves' bands (default ``n_boot``).
    """
    Z = model.features.transform(X)
    p = fixed_predictions(model.estimator, Z, y, horizons)
    return validate_predictions(y, p, n_boot=n_boot, seed=seed, band_resamples=band_resamples)


def validate_predictions(
    y: Any, p: FixedPredictions, *, n_boot: int = 200, seed: int = 0, band_resamples: int | None = None
) -> ExternalValidation:
    """:func:`external_validation` of predictions already made (``p``) for outcomes ``y``."""
    event = np.asarray(y["event"], bool)
    n = len(event)
    table, boots, failed = bootstrap_table(point_estimates, y, p, event, n_boot=n_boot, seed=seed)
    bands = n_boot if band_resamples is None else band_resamples
    calibration, decision = {}, {}
    for j, h in enumerate(p.horizons):
        with warnings.catch_warnings():  # no band resample (bands = 0): the band is NaN, said as such
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
            calibration[h] = calibration_curve(y, p.survival[:, j], h, n_boot=bands, seed=seed)
        decision[h] = net_benefit(y, 1.0 - p.survival[:, j], h, THRESHOLDS)
    notes = [f"{failed} of {n_boot} bootstrap resamples had no event and were skipped"] if failed else []
    return ExternalValidation(
        p.horizons, n, int(event.sum()), table, calibration, decision, n_boot, failed, p.grid, notes, boots
    )
