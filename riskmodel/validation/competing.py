"""Calibration and clinical utility of cumulative-incidence predictions with competing risks.

The observed risk of the event of interest by a horizon, in any group of patients, is the
Aalen-Johansen cumulative incidence of cause 1 (competing events are not censorings: 1 − KM would
overstate the risk). Its variance is Aalen's (1978) counting-process estimator with the tie
correction of Gray's ``cmprsk::cuminc`` (checked against it in the tests):

    Var F(t) = Σ_{t_j ≤ t} S(t_j−)²/n_j² · [ d1_j·h(d1_j)·(1 − q_j)² + d2_j·h(d2_j)·q_j² ],
    q_j = (F(t) − F(t_j))/S(t_j) (0 where S(t_j) = 0),  h(d) = 1 − (d − 1)/(n_j − 1),

with d1_j, d2_j the events of each cause at t_j, n_j the number at risk and S the all-cause
Kaplan-Meier. The 95 % interval is taken on the log(−log) scale, as :func:`riskmodel.stats.km_at`
takes it for S, so it stays inside (0, 1).

* :func:`cif_calibration_groups`: mean predicted CIF against the observed Aalen-Johansen CIF per
  group of predicted risk (van Calster et al., grouped calibration; Austin et al., Stat Med 2022;
  41:1419 for competing risks).
* :func:`net_benefit_competing`: decision curves (Vickers & Elkin 2006; with competing risks,
  Vickers et al. 2008, Diagn Progn Res 2019): the share of treated patients with the event is the
  Aalen-Johansen CIF among them.

* :func:`smooth_cif_calibration`: smoothed calibration of a CIF (Austin, Putter, Giardiello &
  van Klaveren, Diagn Progn Res 2022;6:2): a Fine-Gray model of the outcome on a restricted cubic
  spline (3 knots, Harrell's: Hmisc's) of cloglog F̂(t) gives each patient's observed CIF at t;
  ICI, E50 and E90 are the mean, median and 90th percentile of |observed − predicted|.
* :func:`cif_slope_at`: the calibration slope of a CIF, the Fine-Gray coefficient of
  cloglog F̂(t) (Austin et al. 2022), outcomes censored at t (as the survival slope at a horizon).
* :func:`cif_observed_expected`: calibration-in-the-large, the observed Aalen-Johansen CIF at t over
  the mean predicted CIF (O/E; 1 is ideal).

The Fine-Gray fits are :func:`riskmodel.stats.competing.fine_gray` (Fine & Gray 1999; Geskus 2011).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.stats import harrell_knots, restricted_cubic_spline
from riskmodel.stats.competing import fine_gray

__all__ = [
    "SmoothCifCalibration",
    "cif_at_horizon",
    "cif_calibration_groups",
    "cif_observed_expected",
    "cif_slope_at",
    "net_benefit_competing",
    "smooth_cif_calibration",
]

_Z95 = NormalDist().inv_cdf(0.975)


def cif_at_horizon(time: Any, cause: Any, horizon: float) -> tuple[float, float]:
    """Aalen-Johansen CIF of cause 1 at ``horizon`` and its variance (``cmprsk::cuminc``'s).

    Four patients: cause 1 at 1, cause 2 at 2, cause 1 at 3, censored at 4: F(3) = 1/4 + 1/2·1/2.

    >>> cif, var = cif_at_horizon([1.0, 2.0, 3.0, 4.0], [1, 2, 1, 0], 3.0)
    >>> cif
    0.5
    """
    t = np.asarray(time, dtype=float).ravel()
    c = np.asarray(cause, dtype=int).ravel()
    events = (c > 0) & (t <= horizon)
    if not events.any():
        return 0.0, 0.0
    times, inverse = np.unique(t[events], return_inverse=True)
    d1 = np.bincount(inverse, weights=c[events] == 1, minlength=times.size)
    d2 = np.bincount(inverse, weights=c[events] != 1, minlength=times.size)
    n = (t.size - np.searchsorted(np.sort(t), times, side="left")).astype(float)
    surv = np.cumprod(1 - (d1 + d2) / n)
    before = np.r_[1.0, surv[:-1]]
    cif = np.cumsum(before * d1 / n)
    total = float(cif[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(surv > 0, (total - cif) / np.where(surv > 0, surv, 1.0), 0.0)
        tie1 = np.where(n > 1, 1 - (d1 - 1) / (n - 1), 1.0)
        tie2 = np.where(n > 1, 1 - (d2 - 1) / (n - 1), 1.0)
    var = np.sum(before**2 / n**2 * (d1 * tie1 * (1 - q) ** 2 + d2 * tie2 * q**2))
    return total, float(var)


def _interval(cif: float, var: float) -> tuple[float, float]:
    """95 % log(−log) interval of a CIF; NaN where the CIF is 0 or 1 or its variance 0."""
    if not 0 < cif < 1 or var <= 0:
        return math.nan, math.nan
    se = math.sqrt(var) / (cif * abs(math.log(cif)))
    return cif ** math.exp(_Z95 * se), cif ** math.exp(-_Z95 * se)


def _inputs(y: Any, cif_at_t: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cause = np.asarray(y["cause"], dtype=int)
    time = np.asarray(y["time"], dtype=float)
    pred = np.asarray(cif_at_t, dtype=float).ravel()
    if pred.size != time.size:
        raise ValueError(f"cif_at_t has {pred.size} values for {time.size} patients")
    if not np.isfinite(pred).all() or (pred < 0).any() or (pred > 1).any():
        raise ValueError("cif_at_t must be finite probabilities in [0, 1]")
    return cause, time, pred


def cif_calibration_groups(y: Any, cif_at_t: Any, horizon: float, groups: int = 10) -> pd.DataFrame:
    """Grouped calibration of the predicted CIF of cause 1 at ``horizon`` (aggregates only).

    Patients are cut into ``groups`` equal-sized groups of predicted CIF (ties split by order).
    Columns: ``group`` (1 = lowest predictions), ``patients``, ``events`` and ``competing`` (by
    the horizon), ``predicted`` (mean), ``observed`` (Aalen-Johansen), ``observed_low``,
    ``observed_high`` (95 %, log(−log)), ``observed_se``.
    """
    cause, time, pred = _inputs(y, cif_at_t)
    if groups < 1:
        raise ValueError(f"groups must be at least 1, got {groups}")
    labels = pd.qcut(pd.Series(pred).rank(method="first"), q=min(groups, pred.size), labels=False).to_numpy()
    rows = []
    for g in np.unique(labels):
        mask = labels == g
        observed, var = cif_at_horizon(time[mask], cause[mask], horizon)
        low, high = _interval(observed, var)
        by_h = time[mask] <= horizon
        rows.append(
            {
                "group": int(g) + 1,
                "patients": int(mask.sum()),
                "events": int(np.sum(by_h & (cause[mask] == 1))),
                "competing": int(np.sum(by_h & (cause[mask] == 2))),
                "predicted": float(pred[mask].mean()),
                "observed": observed,
                "observed_low": low,
                "observed_high": high,
                "observed_se": math.sqrt(var),
            }
        )
    return pd.DataFrame(rows)


def net_benefit_competing(y: Any, cif_at_t: Any, horizon: float, thresholds: Any) -> pd.DataFrame:
    """Decision curve with competing risks: net benefit of treating when predicted CIF ≥ p.

    Columns as :func:`riskmodel.validation.net_benefit`: ``threshold``, ``model``, ``treat_all``,
    ``treat_none`` (0). NB = F_treated·share − (1 − F_treated)·share·p/(1 − p), with F_treated the
    Aalen-Johansen CIF of cause 1 by the horizon among the treated (0 when nobody is treated), and
    treat-all the same with everyone treated. Thresholds must lie in [0, 1).
    """
    cause, time, pred = _inputs(y, cif_at_t)
    p_all = np.asarray(thresholds, dtype=float).ravel()
    if not np.isfinite(p_all).all() or (p_all < 0).any() or (p_all >= 1).any():
        raise ValueError("thresholds must lie in [0, 1)")
    overall = cif_at_horizon(time, cause, horizon)[0]
    rows = []
    for p in p_all:
        treated = pred >= p
        share = float(treated.mean())
        risk = cif_at_horizon(time[treated], cause[treated], horizon)[0] if treated.any() else 0.0
        odds = p / (1 - p)
        rows.append(
            {
                "threshold": float(p),
                "model": share * risk - share * (1 - risk) * odds,
                "treat_all": overall - (1 - overall) * odds,
                "treat_none": 0.0,
            }
        )
    return pd.DataFrame(rows)


def cloglog(cif: Any) -> np.ndarray:
    """log(−log(1 − F)), with F kept inside (1e-10, 1 − 1e-10)."""
    f = np.clip(np.asarray(cif, dtype=float), 1e-10, 1 - 1e-10)
    out: np.ndarray = np.log(-np.log1p(-f))
    return out


@dataclass
class SmoothCifCalibration:
    """Predicted against smoothed observed CIF at a horizon (Austin et al. 2022), per patient in
    memory only; ``curve`` gives the smoothed observed CIF at any predicted CIF (for a plot)."""

    horizon: float
    predicted: np.ndarray
    observed: np.ndarray
    ici: float
    e50: float
    e90: float
    knots: np.ndarray  # on the cloglog scale
    fit: Any  # the Fine-Gray smoother

    def curve(self, predicted: Any) -> np.ndarray:
        """The smoothed observed CIF at ``self.horizon`` for predicted CIFs ``predicted``."""
        curve: np.ndarray = _observed(self.fit, _basis(cloglog(predicted), self.knots), self.horizon)
        return curve


def _basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    return restricted_cubic_spline(x, knots) if len(knots) >= 3 else x[:, None]


def _observed(fit: Any, basis: np.ndarray, horizon: float) -> np.ndarray:
    at = min(float(horizon), float(np.max(fit.event_times)))
    return np.asarray(fit.cif(basis, [at]), dtype=float).reshape(len(basis), -1)[:, 0]


def smooth_cif_calibration(y: Any, cif_at_t: Any, horizon: float, knots: int = 3) -> SmoothCifCalibration:
    """ICI, E50 and E90 of the predicted CIF of cause 1 at ``horizon`` (Austin et al. 2022).

    The outcome (all of its follow-up, as the survival smoother) is regressed by a Fine-Gray model
    for cause 1 on a restricted cubic spline of cloglog F̂(t) with ``knots`` knots at Harrell's
    quantiles (Hmisc's ``rcspline.eval`` defaults; fewer distinct values: linear); the fitted CIF
    at ``horizon`` is each patient's observed CIF. A well-calibrated model gives ICI near 0.
    """
    cause, time, pred = _inputs(y, cif_at_t)
    if not (cause == 1).any():
        raise ValueError("no event of interest: the smoothed calibration of a CIF is undefined")
    x = cloglog(pred)
    knot_values = np.unique(harrell_knots(x, knots)) if np.unique(x).size > knots else np.empty(0)
    basis = _basis(x, knot_values)
    fit = fine_gray(basis, time, cause, event=1)
    observed = _observed(fit, basis, horizon)
    gap = np.abs(observed - pred)
    return SmoothCifCalibration(
        float(horizon),
        pred,
        observed,
        float(gap.mean()),
        float(np.median(gap)),
        float(np.quantile(gap, 0.9)),
        knot_values,
        fit,
    )


def cif_slope_at(y: Any, cif_at_t: Any, horizon: float) -> float:
    """The calibration slope of a predicted CIF at ``horizon``: the Fine-Gray coefficient of
    cloglog F̂(t) (Austin et al. 2022; 1 is ideal, below 1 predictions too extreme), outcomes
    censored at the horizon. NaN without an event of interest by then or with a constant prediction."""
    cause, time, pred = _inputs(y, cif_at_t)
    x = cloglog(pred)
    after = time > horizon
    cause = np.where(after, 0, cause)
    if not ((cause == 1).any() and np.ptp(x) > 0):
        return math.nan
    fit = fine_gray(x[:, None], np.minimum(time, horizon), cause, event=1)
    return float(np.asarray(fit.coef, dtype=float).ravel()[0])


def cif_observed_expected(y: Any, cif_at_t: Any, horizon: float) -> float:
    """Calibration-in-the-large of a CIF: the Aalen-Johansen CIF of cause 1 at ``horizon`` over the
    mean predicted CIF (O/E; above 1 the model under-predicts).

    >>> y = {"cause": np.array([1, 2, 1, 0]), "time": np.array([1.0, 2.0, 3.0, 4.0])}
    >>> cif_observed_expected(y, [0.25, 0.25, 0.25, 0.25], 3.0)  # observed 0.5
    2.0
    """
    cause, time, pred = _inputs(y, cif_at_t)
    mean = float(pred.mean())
    if mean <= 0:
        return math.nan
    return cif_at_horizon(time, cause, horizon)[0] / mean
