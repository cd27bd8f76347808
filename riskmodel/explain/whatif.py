"""What-if sweeps: a model's predictions as one input changes, all else held fixed.

An honest sweep says where it extrapolates and how uncertain it is:

* every value outside the stored training range of the input (the 5th smallest to the 5th largest
  training value, :mod:`riskmodel.features.safe_harbor`) is marked ``extrapolated``;
* for a Cox model, a pointwise 95% band of S(t) from the coefficients' covariance (the inverse of
  the information matrix at the fit), baseline cumulative hazard held fixed: with the linear
  predictor η = (z − z̄)ᵀβ and se(η)² = (z − z̄)ᵀ V (z − z̄), the band is
  exp(−H₀(t)·exp(η ± 1.96·se(η))), the confidence interval of η carried through the monotone
  S = exp(−H₀e^η) (Kalbfleisch & Prentice, *The Statistical Analysis of Failure Time Data*, 2nd
  ed., 2002, §4.2.2, with H₀ treated as known). The trees (random survival forest, boosting) keep
  no such estimate: their sweeps have no band, and ``attrs["band"]`` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.errors import UserInputError, own_warnings_silenced
from riskmodel.models import CoxPH
from riskmodel.models.base import proportional_survival
from riskmodel.stats import step_values

__all__ = ["Z_95", "cox_band", "what_if"]

Z_95 = 1.959963984540054


def cox_band(estimator: Any, Z: np.ndarray, times: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    """(lower, upper) of a pointwise 95% band of S(t) per row of ``Z`` (rows × times), or None.

    None for a model that is not Cox, or a Cox model without a usable information matrix.
    """
    information = getattr(estimator, "information_", None) if isinstance(estimator, CoxPH) else None
    if information is None:
        return None
    try:
        cov = np.linalg.inv(np.asarray(information, dtype=float))
    except np.linalg.LinAlgError:
        return None
    centred = np.asarray(Z, dtype=float) - estimator.mean_
    eta = centred @ estimator.coef_
    se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", centred, cov, centred), 0.0, None))
    H0 = step_values(estimator.event_times_, estimator.baseline_cumhaz_, np.asarray(times, dtype=float))
    lower = proportional_survival(eta + Z_95 * se, H0)
    upper = proportional_survival(eta - Z_95 * se, H0)
    return np.atleast_2d(lower), np.atleast_2d(upper)


def what_if(
    model: Any, df: pd.DataFrame, feature: str, values: Sequence[float], times: Sequence[float] | None = None
) -> pd.DataFrame:
    """Predictions with one cohort column set to each of ``values``, everything else held fixed.

    One row per (patient row, value): ``row`` (the index of ``df``), ``value``, ``extrapolated``
    (outside the stored training range of ``feature``), ``risk_score`` and ``S_<h>`` at ``times``
    (default: the model's horizons), with ``S_<h>_lower`` and ``S_<h>_upper`` (a 95% band) for a
    Cox model. ``attrs["band"]`` says which band, or why none. A model association, not a causal
    dose-response.
    """
    if feature not in model.input_columns:
        raise UserInputError(f"what-if: the model does not read {feature!r}; it reads {', '.join(model.input_columns)}")
    grid = [float(v) for v in values]
    horizons = [float(h) for h in (model.horizons if times is None else times)]
    # only the columns the model reads: another column tied to this one by a cohort rule (D100 is
    # at most D90) would refuse the sweep, though the model never sees it
    inputs = df[[c for c in model.input_columns if c in df.columns]]
    # every value in one batch: validating and encoding once, not once per value, keeps a sweep of
    # 41 values as fast as scoring one table (the web calculator answers within a second)
    changed = pd.concat([inputs] * len(grid), ignore_index=True)
    changed[feature] = np.repeat(grid, len(inputs))
    # a swept value is hypothetical, not a patient's record: the cohort's plausibility warnings
    # about it (and about the patient's other inputs, already reported once) would only repeat
    with own_warnings_silenced():
        pred, design = (
            model.predict_frame(changed, horizons),
            model.features.transform(model.validate_patients(changed)),
        )
    pred.insert(0, "extrapolated", [bool(model.range_position(feature, v)) for v in changed[feature]])
    pred.insert(0, "value", changed[feature].to_numpy(dtype=float))
    pred.insert(0, "row", list(df.index) * len(grid))
    band_note = "no band: this family keeps no uncertainty estimate of its predictions"
    band = cox_band(model.estimator, design, horizons)
    if band is not None:
        band_note = "95% band from the Cox coefficients' covariance (baseline hazard held fixed)"
        for j, h in enumerate(horizons):
            pred[f"S_{h:g}_lower"], pred[f"S_{h:g}_upper"] = band[0][:, j], band[1][:, j]
    elif isinstance(model.estimator, CoxPH):
        band_note = "no band: this Cox model file has no usable information matrix"
    out: pd.DataFrame = pred.sort_values(["row", "value"], kind="stable")
    out = out.reset_index(drop=True)
    out.attrs["band"] = band_note
    return out
