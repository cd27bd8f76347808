"""Explanations over time: the Shapley value of each feature for a whole predicted curve.

SurvSHAP(t) (Krzyziński, Spytek, Baniecki & Biecek 2023, "SurvSHAP(t): time-dependent
explanations of machine learning survival models", *Knowledge-Based Systems* 262:110234) explains
a survival function by one Shapley value per feature and time, φ_j(t), so that at every t

    Σ_j φ_j(t | x) = f(t | x) − f(t | reference),

and draws them as curves over time: one patient's contribution curves, and their mean absolute
value over patients as a global importance curve. riskmodel computes the same time-dependent
values for the curve each family predicts: S(t) of a survival model (``output="survival"``), and
for a competing-risk model the CIF of the event (``"cif"``, the default), of the competing event
(``"cif_competing"``) or the event-free probability (``"survival"``).

Which Shapley values: interventional ones against a reference (by default the training mean of
each model feature, "an average patient"; pass ``background`` for reference patients), the value
function of a coalition being the model's curve with the other features set to the reference
(:func:`riskmodel.explain.shap_values.interventional_shap`, run on all times at once). Exact, by
enumerating every coalition, up to :data:`~riskmodel.explain.shap_values.MAX_EXACT_FEATURES`
features; shap's permutation explainer above ("approximate" in ``method``). SurvSHAP(t)'s own
estimator samples coalitions and background patients; the definition explained is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.errors import UserInputError
from riskmodel.explain.shap_values import interventional_shap, resolve
from riskmodel.models.cif import cif_matrix, is_competing_model

__all__ = ["OverTime", "explain_over_time"]

CURVES = ("cif", "cif_competing", "survival")


@dataclass(frozen=True)
class OverTime:
    """Time-dependent Shapley values: ``values[i, j, k]`` is feature j's contribution to patient i's
    curve at ``times[k]``; ``base_values[i, k]`` the reference's curve (local accuracy:
    ``base_values + values.sum(axis=1)`` is the patient's curve, ``predictions``)."""

    times: np.ndarray
    values: np.ndarray
    base_values: np.ndarray
    predictions: np.ndarray
    feature_names: list[str]
    output: str
    method: str

    def patient(self, i: int = 0) -> pd.DataFrame:
        """One patient's contribution curves: features (rows) × times (columns)."""
        return pd.DataFrame(self.values[i], index=self.feature_names, columns=self.times)

    def mean_abs(self) -> pd.DataFrame:
        """The global importance curves: mean |φ_j(t)| over the patients, features × times, the
        feature with the largest area first."""
        table = pd.DataFrame(np.abs(self.values).mean(axis=0), index=self.feature_names, columns=self.times)
        return table.loc[table.sum(axis=1).sort_values(ascending=False).index]


def _curve(estimator: Any, output: str, times: np.ndarray) -> Any:
    def f(A: np.ndarray) -> np.ndarray:
        if output == "survival":
            return np.asarray(estimator.predict_survival(A, times).to_numpy(), dtype=float)
        return np.asarray(cif_matrix(estimator, A, times)[0 if output == "cif" else 1], dtype=float)

    return f


def _default_times(model: Any, estimator: Any, count: int = 12) -> np.ndarray:
    """``count`` times from the start to the model's last horizon (a RiskModel) or its follow-up."""
    last = max(getattr(model, "horizons", None) or [estimator.max_time_])
    return np.linspace(last / count, min(last, estimator.max_time_), count)


def explain_over_time(
    model: Any,
    X: Any,
    times: Sequence[float] | None = None,
    *,
    output: str | None = None,
    background: Any = None,
) -> OverTime:
    """Time-dependent Shapley values of ``model``'s curve for the patients in ``X`` (module docstring).

    ``model`` and ``X`` as :func:`riskmodel.explain.explain` takes them. ``times``: months after
    time zero (default: 12 times up to the model's last horizon), within the training follow-up.
    ``output``: "cif" (default of a competing model), "cif_competing", or "survival" (default of
    a survival model; a competing model's event-free probability).
    """
    estimator, Z, names, ref = resolve(model, X, background)
    competing = is_competing_model(estimator)
    output = output or ("cif" if competing else "survival")
    if output not in CURVES:
        raise UserInputError(f"output must be one of {', '.join(CURVES)}, got {output!r}")
    if output.startswith("cif") and not competing:
        raise UserInputError(f"output {output!r} needs a competing-risk model; this one predicts S(t)")
    grid = np.asarray(_default_times(model, estimator) if times is None else list(times), dtype=float)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or (grid <= 0).any():
        raise UserInputError("times must be months > 0")
    if grid.max() > estimator.max_time_:
        raise UserInputError(
            f"time {grid.max():g} months lies beyond the training follow-up ({estimator.max_time_:.1f} months)"
        )
    estimator.check_values(Z, names)
    if np.isnan(ref).all():
        raise UserInputError("this model stores no training mean; pass background= (reference patients)")
    f = _curve(estimator, output, grid)
    values, base, method = interventional_shap(f, Z, ref)
    words = {"cif": "CIF of the event", "cif_competing": "CIF of the competing event"}
    label = words.get(output, "event-free probability" if competing else "S(t)")
    return OverTime(grid, values, base, f(Z), names, label, method)
