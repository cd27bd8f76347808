"""The CIFs of any fitted competing-risk model, bare or inside multiple imputation.

A :class:`~riskmodel.models.competing.CompetingRiskEstimator` gives its CIFs itself; a
:class:`~riskmodel.models.imputation.MultipleImputationSurvival` wrapping one gives the mean over
its m imputations of each imputation's CIFs (as it does for S(t)): a mean of CIFs that each rise
from 0, with CIF_1 + CIF_2 ≤ 1, keeps both properties, and the event-free probability
1 − CIF_1 − CIF_2 is then the mean of the m event-free curves.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from riskmodel.models.competing import CompetingRiskEstimator
from riskmodel.models.imputation import MultipleImputationSurvival

__all__ = ["cif_matrix", "is_competing_model", "risk_horizon"]


def is_competing_model(estimator: Any) -> bool:
    """Whether ``estimator`` predicts CIFs (a competing-risk model, or multiple imputation of one)."""
    if isinstance(estimator, MultipleImputationSurvival):
        inner = estimator.models_[0] if getattr(estimator, "models_", None) else estimator.estimator
        return isinstance(inner, CompetingRiskEstimator)
    return isinstance(estimator, CompetingRiskEstimator)


def risk_horizon(estimator: Any) -> float:
    """The horizon (months) at which a competing model's risk score is the CIF of the event."""
    if isinstance(estimator, MultipleImputationSurvival):
        return float(estimator.models_[0].risk_horizon_)
    return float(estimator.risk_horizon_)


def cif_matrix(estimator: Any, X: Any, times: Iterable[float] | float) -> np.ndarray:
    """CIF of the event (``[0]``) and of the competing event (``[1]``): shape (2, patients, times)."""
    if isinstance(estimator, MultipleImputationSurvival):
        parts = [
            m.cif_matrix(e.transform(Z), times)
            for m, e, Z in zip(estimator.models_, estimator.encodings_, estimator.completed(X), strict=True)
        ]
        return np.asarray(np.mean(parts, axis=0), dtype=float)
    if not isinstance(estimator, CompetingRiskEstimator):
        raise TypeError(f"{type(estimator).__name__} is not a competing-risk model")
    return np.asarray(estimator.cif_matrix(X, times), dtype=float)
