"""Calibration of survival predictions: slopes overall and at a horizon.

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
from typing import Any

import numpy as np

from riskmodel.errors import RiskModelWarning

__all__ = ["calibration_slope", "calibration_slope_at"]


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
