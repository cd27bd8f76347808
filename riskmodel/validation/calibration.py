"""Calibration and clinical utility of survival predictions.

Slopes (below), smoothed calibration at a horizon (ICI, E50, E90), grouped calibration curves
with bands, and D-calibration. Decision curves are in :mod:`riskmodel.validation.decision`.

* **Overall slope** (rms's ``Slope``): the coefficient of a Cox model refitted on the model's
  linear predictor. It is 1 for a model evaluated on its own training data (by construction, for an
  unpenalised Cox model). It is below 1 on new data when the model overfits: predictions are too
  extreme and should be shrunk.
* **Slope at a horizon t**, for any family: the coefficient of a Cox model, on outcomes censored
  at t, refitted on ``log(−log Ŝ(t | x))``. For a perfectly calibrated proportional-hazards model
  that covariate is log H₀(t) + η, so the slope is 1.

Both use riskmodel's own unpenalised Cox fit (tested against lifelines and R). They are NaN when
undefined: no event before t, or a constant prediction.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.errors import own_warnings_silenced
from riskmodel.models.base import efron_cumulative_hazard, proportional_survival
from riskmodel.models.cox import CoxPH, newton_fit
from riskmodel.stats import (
    check_survival_target,
    kaplan_meier,
    km_at,
    restricted_cubic_spline,
    step_values,
    survival_array,
)

__all__ = [
    "CalibrationCurve",
    "SmoothCalibration",
    "calibration_curve",
    "calibration_in_the_large",
    "calibration_slope",
    "calibration_slope_at",
    "d_calibration",
    "smooth_calibration",
    "survival_at_own_time",
]


def _cox_slope(x: np.ndarray, event: np.ndarray, time: np.ndarray) -> float:
    """The unpenalised Cox coefficient of one covariate: ``CoxPH(penalty=0).fit(x)``'s ``coef_`` (or
    NaN where it does not converge), computed as that fit computes it (the covariate standardised by
    its mean and SD, the same Newton-Raphson, :func:`riskmodel.models.cox.newton_fit`) without its
    hazard-ratio table and baseline hazard, which a slope does not read: the same number, bit for bit."""
    if not event.any() or not np.isfinite(x).all() or np.ptp(x) == 0:
        return math.nan
    event, time = check_survival_target(survival_array(event, time))  # refuses as the fit refuses
    column = np.asarray(x, dtype=float).reshape(-1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(column, axis=0)
    scale = column.std(axis=0)
    scale = np.where(scale == 0, 1.0, scale)
    beta, _, converged = newton_fit((column - mean) / scale, time, event)
    return float((beta / scale)[0]) if converged else math.nan


def calibration_slope(y: Any, linear_predictor: Any) -> float:
    """The Cox coefficient of ``linear_predictor`` (log hazard ratios) on the outcomes ``y``."""
    return _cox_slope(
        np.asarray(linear_predictor, dtype=float), np.asarray(y["event"], bool), np.asarray(y["time"], float)
    )


def calibration_slope_at(y: Any, survival: Any, horizon: float) -> float:
    """The calibration slope of predicted S(``horizon``), outcomes censored at the horizon."""
    s = np.clip(np.asarray(survival, dtype=float), 1e-12, 1 - 1e-12)
    time = np.asarray(y["time"], float)
    event = np.asarray(y["event"], bool) & (time <= horizon)
    return _cox_slope(np.log(-np.log(s)), event, np.minimum(time, horizon))


def calibration_in_the_large(y: Any, survival: Any, horizon: float) -> float:
    """Observed minus mean predicted risk by ``horizon`` (the calibration intercept; 0 is ideal).

    Observed risk is 1 − the Kaplan-Meier S(horizon) of all patients, so censoring is handled. A
    positive value means the model under-predicts risk on average.

    >>> y = survival_array([True, True, False, False], [1.0, 2.0, 5.0, 6.0])
    >>> calibration_in_the_large(y, [0.5, 0.5, 0.5, 0.5], 3.0)  # KM risk by 3 is 0.5, predicted 0.5
    0.0
    """
    time = np.asarray(y["time"], float)
    event = np.asarray(y["event"], bool)
    t, s = kaplan_meier(time, event)
    observed = 1.0 - (float(s[t <= horizon][-1]) if (t <= horizon).any() else 1.0)
    return observed - float(np.mean(1.0 - np.asarray(survival, dtype=float)))


# --------------------------------------------------------------------------- smoothed calibration
@dataclass
class SmoothCalibration:
    """Predicted against smoothed observed risk by a horizon (Austin, Harrell & van Klaveren 2020)."""

    horizon: float
    predicted: np.ndarray  # 1 − Ŝ(t), per patient
    observed: np.ndarray  # the smoothed observed risk at the same predicted risk
    ici: float  # mean |predicted − observed|
    e50: float  # median
    e90: float  # 90th percentile


def smooth_calibration(y: Any, survival: Any, horizon: float, knots: int = 3) -> SmoothCalibration:
    """ICI, E50 and E90 of predicted S(``horizon``).

    The observed risk comes from a Cox model of the outcome on a restricted cubic spline (``knots``
    knots at the 10th/50th/90th percentiles) of log(−log Ŝ(t)), as in Austin et al., Stat Med
    2020;39:2714-42. A perfectly calibrated model gives ICI = 0.
    """
    s = np.clip(np.asarray(survival, dtype=float), 1e-10, 1 - 1e-10)
    x = np.log(-np.log(s))
    quantiles: list[float] = {3: [10.0, 50.0, 90.0], 4: [5.0, 35.0, 65.0, 95.0], 5: [5.0, 27.5, 50.0, 72.5, 95.0]}[
        knots
    ]
    observed = _smooth_fit(x, y, horizon, np.unique(np.percentile(x, quantiles)))(x)
    predicted = 1 - s
    gap = np.abs(predicted - observed)
    return SmoothCalibration(
        horizon, predicted, observed, float(gap.mean()), float(np.median(gap)), float(np.quantile(gap, 0.9))
    )


def _smooth_fit(x: np.ndarray, y: Any, horizon: float, knot_values: np.ndarray) -> Any:
    """The Cox smoother of the outcome on an RCS of x; returns a function of new x → observed risk.

    The smoother is ``CoxPH(penalty=0).fit(basis)`` read at one time: its coefficients (the same
    standardisation and Newton-Raphson, :func:`riskmodel.models.cox.newton_fit`), Efron's baseline
    at min(horizon, last time) and S = exp(−H0·e^η), without the fit's hazard-ratio table and
    checks that a smoother never reads (100 refits a horizon for the band): the same numbers, bit
    for bit (tests/test_calibration_slope.py). A basis that is not finite takes the full fit (and
    its refusal)."""
    target = survival_array(y["event"], y["time"])
    basis = _rcs_basis(x, knot_values)
    if not np.isfinite(basis).all():
        return _full_smooth_fit(basis, target, horizon, knot_values)
    event, time = check_survival_target(target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(basis, axis=0)
    scale = basis.std(axis=0)
    scale = np.where(scale == 0, 1.0, scale)
    beta, _, _ = newton_fit((basis - mean) / scale, time, event)  # not converged: used as the fit uses it
    coef = beta / scale
    event_times, cumhaz = efron_cumulative_hazard(time, event, (basis - mean) @ coef)
    at_h = step_values(event_times, cumhaz, np.atleast_1d(np.asarray(min(horizon, float(time.max())), dtype=float)))

    def observed(new_x: np.ndarray) -> np.ndarray:
        new = np.asarray(_rcs_basis(new_x, knot_values), dtype=float)
        return 1 - proportional_survival((new - mean) @ coef, at_h)[:, 0]

    return observed


def _rcs_basis(x: np.ndarray, knot_values: np.ndarray) -> np.ndarray:
    return restricted_cubic_spline(x, knot_values) if len(knot_values) >= 3 else x[:, None]


def _full_smooth_fit(basis: np.ndarray, target: np.ndarray, horizon: float, knot_values: np.ndarray) -> Any:
    """The smoother through the whole ``CoxPH`` fit and its prediction."""
    with own_warnings_silenced():
        fit = CoxPH(penalty=0.0).fit(basis, target)
    at = min(horizon, fit.max_time_)

    def observed(new_x: np.ndarray) -> np.ndarray:
        return 1 - np.asarray(fit.predict_survival(_rcs_basis(new_x, knot_values), [at]).to_numpy()[:, 0])

    return observed


@dataclass
class CalibrationCurve:
    """Aggregated calibration at a horizon, ready to plot (no per-patient values).

    ``groups``: per quantile group of predicted risk, ``patients``, mean ``predicted`` risk, and the
    Kaplan-Meier ``observed`` risk with its 95 % interval (``observed_low``, ``observed_high``).
    ``smooth``: on a grid of predicted risk, the smoothed ``observed`` risk (the ICI smoother) and a
    95 % percentile band from refitting the smoother on bootstrap resamples of the patients.
    """

    horizon: float
    groups: pd.DataFrame
    smooth: pd.DataFrame
    ici: float
    e50: float
    e90: float


def calibration_curve(
    y: Any, survival: Any, horizon: float, *, groups: int | None = None, n_boot: int = 200, seed: int = 0
) -> CalibrationCurve:
    """Grouped and smoothed calibration of predicted S(``horizon``), with confidence bands.

    ``groups`` defaults to a size for small cohorts: about 8 patients per group, between 2 and 10
    groups. The smoothed curve is the one behind ICI/E50/E90 (:func:`smooth_calibration`),
    evaluated on 40 points between the 5th and 95th percentiles of predicted risk.
    """
    s = np.clip(np.asarray(survival, dtype=float), 1e-10, 1 - 1e-10)
    time = np.asarray(y["time"], float)
    event = np.asarray(y["event"], bool)
    n = len(s)
    risk = 1 - s
    k = groups or int(np.clip(n // 8, 2, 10))
    labels = pd.qcut(pd.Series(risk).rank(method="first"), q=min(k, n), labels=False)
    rows = []
    for g in sorted(set(labels)):
        mask = (labels == g).to_numpy()
        surv, low, high = km_at(time[mask], event[mask], horizon)
        rows.append(
            {
                "group": int(g) + 1,
                "patients": int(mask.sum()),
                "predicted": float(risk[mask].mean()),
                "observed": 1 - surv,
                "observed_low": 1 - high if high == high else math.nan,
                "observed_high": 1 - low if low == low else math.nan,
            }
        )
    x = np.log(-np.log(s))
    knot_values = np.unique(np.percentile(x, [10.0, 50.0, 90.0]))
    lo, hi = np.percentile(risk, [5, 95])
    grid_risk = np.linspace(lo, hi, 40) if hi > lo else np.array([lo])
    grid_x = np.log(-np.log(1 - np.clip(grid_risk, 1e-10, 1 - 1e-10)))
    central = _smooth_fit(x, y, horizon, knot_values)
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        if not event[idx].any():
            continue
        try:
            curves.append(_smooth_fit(x[idx], y[idx], horizon, knot_values)(grid_x))
        except (ValueError, np.linalg.LinAlgError, ArithmeticError):
            continue
    band = np.array(curves) if curves else np.full((1, len(grid_x)), np.nan)
    smooth = pd.DataFrame(
        {
            "predicted": grid_risk,
            "observed": central(grid_x),
            "observed_low": np.nanpercentile(band, 2.5, axis=0),
            "observed_high": np.nanpercentile(band, 97.5, axis=0),
        }
    )
    summary = smooth_calibration(y, s, horizon)
    return CalibrationCurve(horizon, pd.DataFrame(rows), smooth, summary.ici, summary.e50, summary.e90)


def d_calibration(y: Any, survival_at_own_time: Any, bins: int = 10) -> tuple[float, np.ndarray]:
    """Haider et al.'s D-calibration: (p-value of the χ² test, share of patients per decile).

    ``survival_at_own_time`` is each patient's predicted S at their own event or censoring time. For
    an event, it should be uniform on [0, 1]. A censored patient with S(c) = s is spread evenly
    over [0, s]. The χ² statistic (df = bins − 1) tests the decile counts against n/bins each.
    """
    from scipy.stats import chi2

    s = np.clip(np.asarray(survival_at_own_time, dtype=float), 0.0, 1.0)
    event = np.asarray(y["event"], bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.zeros(bins)
    ev_bin = np.minimum((s[event] * bins).astype(int), bins - 1)
    np.add.at(counts, ev_bin, 1.0)
    for value in s[~event]:
        if value <= 0:
            counts[0] += 1.0
            continue
        share = np.clip(np.minimum(edges[1:], value) - edges[:-1], 0.0, None) / value
        counts += share
    expected = len(s) / bins
    statistic = float(np.sum((counts - expected) ** 2 / expected))
    return float(chi2.sf(statistic, bins - 1)), counts / len(s)


def survival_at_own_time(estimator: Any, Z: Any, time: Any, chunk: int = 1000) -> np.ndarray:
    """Each patient's predicted S at their own observed time (for D-calibration), in chunks (a
    family that reads one time a patient, the forest's ``survival_at_own_times``, reads that)."""
    t = np.minimum(np.asarray(time, dtype=float), estimator.max_time_)
    Za = np.asarray(Z, dtype=float)
    own = getattr(estimator, "survival_at_own_times", None)
    if own is not None:
        return np.asarray(own(Za, t), dtype=float)
    out = np.empty(len(t))
    for start in range(0, len(t), chunk):
        part = slice(start, start + chunk)
        surv = estimator.predict_survival(Za[part], t[part]).to_numpy()
        out[part] = np.diag(surv)
    return out
