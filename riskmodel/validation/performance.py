"""The one place that decides which performance measures a target gets: survival or competing risks.

Cross-validation, the bootstrap optimism correction, in-sample calibration and the tuning
objective all call :func:`performance_metrics` (and :func:`predicted_risk_by`), so no caller
branches on the kind of target itself. The decision is made from the target
(:func:`riskmodel.stats.is_competing`):

* a survival target (``event``, ``time``): :func:`riskmodel.metrics.survival_metrics` of the
  model's S(t);
* a competing-risks target (``event``, ``time``, ``cause``): :func:`riskmodel.stats.competing_metrics.
  competing_metrics` of the model's cumulative incidence of the event of interest, CIF_1(t)
  (``model.predict_cif(Z, grid)``), never of S(t). The keys are the same; their meaning is
  :data:`COMPETING_MEANINGS` (Wolbers C, Blanche's AUC of the CIF, IPCW Brier of the CIF, the
  Aalen-Johansen null model).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from riskmodel.metrics import EvaluationWindow, metric_names, survival_metrics
from riskmodel.stats import is_competing
from riskmodel.stats.competing_metrics import competing_metric_names, competing_metrics

__all__ = [
    "COMPETING_MEANINGS",
    "curve_matrix",
    "performance_metric_names",
    "performance_metrics",
    "predicted_risk_by",
    "stratification_labels",
]

# What each metric key means for a competing endpoint (the model report and MLflow say so).
COMPETING_MEANINGS: dict[str, str] = {
    "harrell_c": "Wolbers C (concordance of the CIF of the event of interest; Wolbers et al. 2009)",
    "uno_c": "Wolbers C with IPCW, truncated at τ (Wolbers et al. 2014)",
    "td_auc": "AUC of the CIF (Blanche def. 2: cases the event by t, controls everyone else)",
    "brier": "Brier of the CIF (IPCW, riskRegression::Score)",
    "ibs": "integrated Brier of the CIF",
    "ibs_km": "null model: Aalen-Johansen (integrated Brier of the CIF without covariates)",
}


def curve_matrix(model: Any, Z: Any, grid: Any, y: Any) -> np.ndarray:
    """The curve the metrics read, patients × ``grid``: CIF_1(t) for a competing target, else S(t)."""
    if is_competing(y):
        return np.asarray(model.predict_cif(Z, grid, cause=1).to_numpy(), dtype=float)
    return np.asarray(model.predict_survival(Z, grid).to_numpy(), dtype=float)


def predicted_risk_by(model: Any, Z: Any, horizon: float, y: Any) -> np.ndarray:
    """Each patient's predicted risk of the event of interest by ``horizon``: CIF_1 with competing
    risks, 1 − S otherwise (the quantity calibration and decision curves compare with outcomes)."""
    curve = curve_matrix(model, Z, np.array([horizon]), y)[:, 0]
    return curve if is_competing(y) else 1.0 - curve


def performance_metrics(
    model: Any, Z: Any, y_train: Any, y_test: Any, window: EvaluationWindow | Sequence[float]
) -> dict[str, float]:
    """Discrimination and Brier scores of a fitted family on the test patients ``Z`` (model
    features), in ``window``: survival or competing-risk measures, decided by ``y_test``'s kind."""
    risk = model.predict_risk(Z)
    curve = partial(curve_matrix, model, Z, y=y_test)
    if is_competing(y_test):
        return competing_metrics(y_train, y_test, curve, risk, window)
    return survival_metrics(y_train, y_test, risk, curve, window)


def performance_metric_names(y: Any, horizons: Sequence[float]) -> list[str]:
    """The keys :func:`performance_metrics` gives for a target of ``y``'s kind."""
    return competing_metric_names(horizons) if is_competing(y) else metric_names(horizons)


def stratification_labels(y: Any) -> np.ndarray:
    """What cross-validation stratifies on: the cause (0/1/2) with competing risks, else the event."""
    if is_competing(y):
        return np.asarray(y["cause"], dtype=int)
    return np.asarray(y["event"], dtype=bool).astype(int)
