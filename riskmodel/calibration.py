"""Calibration and clinical utility of survival predictions.

Slopes (below), smoothed calibration at a horizon (ICI, E50, E90), D-calibration, and decision
curves (net benefit).

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

from riskmodel.errors import RiskModelWarning

__all__ = [
    "SmoothCalibration",
    "calibration_slope",
    "calibration_slope_at",
    "d_calibration",
    "net_benefit",
    "smooth_calibration",
    "survival_at_own_time",
]


def _cox_slope(x: np.ndarray, event: np.ndarray, time: np.ndarray) -> float:
    from riskmodel.models.cox import CoxPH

    if not event.any() or not np.isfinite(x).all() or np.ptp(x) == 0:
        return math.nan
    y = np.empty(len(time), dtype=[("event", "?"), ("time", "<f8")])
    y["event"], y["time"] = event, time
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RiskModelWarning)
        fit = CoxPH(penalty=0.0).fit(x.reshape(-1, 1), y)
    return float(fit.coef_[0]) if fit.converged_ else math.nan


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


# --------------------------------------------------------------------------- smoothed calibration
def _rcs(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Harrell's restricted cubic spline basis: x and k − 2 nonlinear terms, linear beyond the knots."""
    k = knots
    scale = (k[-1] - k[0]) ** 2
    cols = [x]
    for j in range(len(k) - 2):
        term = (
            np.maximum(x - k[j], 0) ** 3
            - np.maximum(x - k[-2], 0) ** 3 * (k[-1] - k[j]) / (k[-1] - k[-2])
            + np.maximum(x - k[-1], 0) ** 3 * (k[-2] - k[j]) / (k[-1] - k[-2])
        )
        cols.append(term / scale)
    return np.column_stack(cols)


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
    from riskmodel.models.cox import CoxPH

    s = np.clip(np.asarray(survival, dtype=float), 1e-10, 1 - 1e-10)
    x = np.log(-np.log(s))
    quantiles: list[float] = {3: [10.0, 50.0, 90.0], 4: [5.0, 35.0, 65.0, 95.0], 5: [5.0, 27.5, 50.0, 72.5, 95.0]}[
        knots
    ]
    knot_values = np.unique(np.percentile(x, quantiles))
    basis = _rcs(x, knot_values) if len(knot_values) >= 3 else x.reshape(-1, 1)
    time = np.asarray(y["time"], float)
    target = np.empty(len(time), dtype=[("event", "?"), ("time", "<f8")])
    target["event"], target["time"] = np.asarray(y["event"], bool), time
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RiskModelWarning)
        fit = CoxPH(penalty=0.0).fit(basis, target)
    observed = 1 - fit.predict_survival(basis, [min(horizon, fit.max_time_)]).to_numpy()[:, 0]
    predicted = 1 - s
    gap = np.abs(predicted - observed)
    return SmoothCalibration(
        horizon, predicted, observed, float(gap.mean()), float(np.median(gap)), float(np.quantile(gap, 0.9))
    )


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


def net_benefit(y: Any, risk_by_horizon: Any, horizon: float, thresholds: Any) -> pd.DataFrame:
    """Decision curve for survival (Vickers et al. 2008): net benefit of treating when risk ≥ p.

    Columns: ``threshold``, ``model``, ``treat_all``, ``treat_none`` (0). Among those treated, the
    share with an event by the horizon is 1 − their Kaplan-Meier S(t), so censoring is handled
    by KM. NB = TP/n − FP/n · p/(1 − p).
    """
    from riskmodel.models.base import step_values
    from riskmodel.stats import kaplan_meier

    time = np.asarray(y["time"], float)
    event = np.asarray(y["event"], bool)
    risk = np.asarray(risk_by_horizon, dtype=float)
    n = len(time)

    def km_risk(mask: np.ndarray) -> float:
        if not mask.any():
            return 0.0
        t, s = kaplan_meier(time[mask], event[mask])
        return float(1 - step_values(t, s, np.array([horizon]), before=1.0)[0])

    overall = km_risk(np.ones(n, dtype=bool))
    rows = []
    for p in np.asarray(thresholds, dtype=float):
        treated = risk >= p
        share = treated.mean()
        event_rate = km_risk(treated)
        odds = p / (1 - p)
        rows.append(
            {
                "threshold": p,
                "model": share * event_rate - share * (1 - event_rate) * odds,
                "treat_all": overall - (1 - overall) * odds,
                "treat_none": 0.0,
            }
        )
    return pd.DataFrame(rows)


def survival_at_own_time(estimator: Any, Z: Any, time: Any, chunk: int = 1000) -> np.ndarray:
    """Each patient's predicted S at their own observed time (for D-calibration), in chunks."""
    t = np.minimum(np.asarray(time, dtype=float), estimator.max_time_)
    Za = np.asarray(Z, dtype=float)
    out = np.empty(len(t))
    for start in range(0, len(t), chunk):
        part = slice(start, start + chunk)
        surv = estimator.predict_survival(Za[part], t[part]).to_numpy()
        out[part] = np.diag(surv)
    return out
