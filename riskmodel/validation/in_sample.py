"""In-sample (apparent) calibration and clinical utility of one fitted model, as aggregates."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.metrics import defined_or_nan
from riskmodel.stats import is_competing
from riskmodel.validation.calibration import (
    CalibrationCurve,
    calibration_curve,
    d_calibration,
    survival_at_own_time,
)
from riskmodel.validation.competing import (
    cif_calibration_groups,
    cif_observed_expected,
    cif_slope_at,
    net_benefit_competing,
    smooth_cif_calibration,
)
from riskmodel.validation.decision import net_benefit
from riskmodel.validation.performance import curve_matrix

__all__ = [
    "BAND_LARGE_COHORT",
    "BAND_RESAMPLES_LARGE",
    "DECISION_THRESHOLDS",
    "InSample",
    "by_horizon",
    "in_sample_calibration",
]

DECISION_THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
BAND_LARGE_COHORT, BAND_RESAMPLES_LARGE = 20_000, 20  # the smoother's band above this many patients


@dataclass
class InSample:
    """Calibration and utility of one fitted model on its own data: metrics and aggregated tables."""

    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[float, CalibrationCurve] = field(default_factory=dict)
    decision: dict[float, pd.DataFrame] = field(default_factory=dict)
    d_calibration_p: float = math.nan

    def artifacts(self) -> dict[str, pd.DataFrame]:
        """The tables to log, by artifact file name."""
        out: dict[str, pd.DataFrame] = {}
        for h, curve in self.curves.items():
            out[f"calibration_{h:g}.csv"] = curve.groups
            out[f"calibration_smooth_{h:g}.csv"] = curve.smooth
        out.update({f"decision_curve_{h:g}.csv": t for h, t in self.decision.items()})
        return out


def in_sample_calibration(
    fitted: Any, X: pd.DataFrame, y: np.ndarray, horizons: Sequence[float], seed: int, n_boot: int = 100
) -> InSample:
    """In-sample calibration curves (grouped KM and smoothed, with bands), ICI/E50/E90, D-calibration
    and decision curves of a fitted pipeline.

    Only aggregates leave this function: metrics, group and grid tables, and net-benefit curves.
    Per-patient predictions stay in memory. A competing-risks target gets the calibration of the
    CIF of the event of interest instead (:func:`competing_calibration`).

    Above :data:`BAND_LARGE_COHORT` patients the smoothed curve's band comes from at most
    :data:`BAND_RESAMPLES_LARGE` bootstrap refits of the smoother (each a Cox fit of every patient;
    at 100,000 patients the band is a few thousandths wide, and 100 refits a horizon were the
    slowest step of a registry-sized train); the curve itself and ICI/E50/E90 are unchanged.
    """
    if len(y) > BAND_LARGE_COHORT:
        n_boot = min(n_boot, BAND_RESAMPLES_LARGE)
    estimator = fitted[-1]
    Z = fitted[:-1].transform(X)
    if is_competing(y):
        return competing_calibration(estimator, Z, y, horizons)
    out = InSample()
    survival = by_horizon(lambda t: estimator.predict_survival(Z, t).to_numpy(), horizons)
    for h, s in survival.items():
        try:
            curve = calibration_curve(y, s, h, n_boot=n_boot, seed=seed)
        except (ValueError, np.linalg.LinAlgError, ArithmeticError):
            continue
        out.metrics.update(
            {
                f"calibration_ici_{h:g}_apparent": curve.ici,
                f"calibration_e50_{h:g}_apparent": curve.e50,
                f"calibration_e90_{h:g}_apparent": curve.e90,
            }
        )
        out.curves[h] = curve
        out.decision[h] = net_benefit(y, 1 - s, h, DECISION_THRESHOLDS)
    try:
        out.d_calibration_p, _ = d_calibration(y, survival_at_own_time(estimator, Z, y["time"]))
        out.metrics["d_calibration_p_apparent"] = out.d_calibration_p
    except (ValueError, np.linalg.LinAlgError, ArithmeticError):
        pass
    return out


def competing_calibration(estimator: Any, Z: Any, y: np.ndarray, horizons: Sequence[float]) -> InSample:
    """In-sample calibration of the CIF of the event of interest at each horizon: groups of
    predicted CIF against the Aalen-Johansen CIF (:func:`cif_calibration_groups`), the Fine-Gray
    smoother of Austin et al. 2022 on a grid with ICI/E50/E90 (:func:`smooth_cif_calibration`; no
    bootstrap band: its columns are NaN), the slope of the CIF, O/E, and decision curves
    (:func:`net_benefit_competing`). D-calibration has no competing-risks form here (NaN)."""
    out = InSample()
    cifs = by_horizon(lambda t: curve_matrix(estimator, Z, t, y), horizons)
    for h, cif in cifs.items():
        try:
            groups = cif_calibration_groups(y, cif, h, groups=int(np.clip(len(cif) // 8, 2, 10)))
        except (ValueError, np.linalg.LinAlgError, ArithmeticError):
            continue
        lo, hi = np.percentile(cif, [5, 95])
        grid = np.linspace(lo, hi, 40) if hi > lo else np.array([lo])
        nan = np.full(grid.size, math.nan)
        smooth = pd.DataFrame({"predicted": grid, "observed": nan, "observed_low": nan, "observed_high": nan})
        ici = e50 = e90 = math.nan
        try:
            fit = smooth_cif_calibration(y, cif, h)
            smooth["observed"] = fit.curve(grid)
            ici, e50, e90 = fit.ici, fit.e50, fit.e90
        except (ValueError, np.linalg.LinAlgError, ArithmeticError):
            pass
        out.curves[h] = CalibrationCurve(h, groups, smooth, ici, e50, e90)
        out.metrics.update(
            {
                f"calibration_ici_{h:g}_apparent": ici,
                f"calibration_e50_{h:g}_apparent": e50,
                f"calibration_e90_{h:g}_apparent": e90,
                f"calibration_oe_{h:g}_apparent": defined_or_nan(partial(cif_observed_expected, y, cif, h)),
                f"calibration_slope_{h:g}_apparent": defined_or_nan(partial(cif_slope_at, y, cif, h)),
            }
        )
        out.decision[h] = net_benefit_competing(y, cif, h, DECISION_THRESHOLDS)
    return out


def by_horizon(predict: Callable[[list[float]], np.ndarray], horizons: Sequence[float]) -> dict[float, np.ndarray]:
    """Each horizon's column of one prediction at every horizon (patients × horizons), so a model
    walks its trees or its Aalen-Johansen product once, not once a horizon (on 100,000 patients a
    forest's prediction is the costly step). Each column equals the one-horizon prediction (S(t)
    and CIF(t) are read at t from the same curve). If the joint prediction fails, each horizon is
    tried alone and one the model refuses is left out.

    >>> by_horizon(lambda t: np.array([[1.0, 2.0]]) * np.array(t), [6, 12])
    {6: array([6.]), 12: array([24.])}
    """
    try:
        matrix = predict(list(horizons))
        return {h: matrix[:, j] for j, h in enumerate(horizons)}
    except (ValueError, np.linalg.LinAlgError, ArithmeticError):
        out = {}
        for h in horizons:
            try:
                out[h] = predict([h])[:, 0]
            except (ValueError, np.linalg.LinAlgError, ArithmeticError):
                continue
        return out
