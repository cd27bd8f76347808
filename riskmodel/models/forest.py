"""Random survival forest: scikit-survival's ``RandomSurvivalForest`` behind the shared interface."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from riskmodel.models.base import SurvivalEstimator, step_values

__all__ = ["SurvivalForest"]


class SurvivalForest(SurvivalEstimator):
    """Random survival forest (log-rank splitting), with S(t) at any horizon within follow-up.

    Parameters mirror :class:`sksurv.ensemble.RandomSurvivalForest`; the defaults suit small
    cohorts (shallow leaves of at least 3 patients).
    """

    def __init__(
        self,
        n_estimators: int = 200,
        min_samples_leaf: int = 3,
        max_features: str | float | None = "sqrt",
        max_depth: int | None = None,
        n_jobs: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_depth = max_depth
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> SurvivalForest:
        """Fit the forest; returns ``self``."""
        from sksurv.ensemble import RandomSurvivalForest

        self._fit_target(y)
        self.model_ = RandomSurvivalForest(
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            max_depth=self.max_depth,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        ).fit(np.asarray(X, dtype=float), y)
        self.n_features_in_ = self.model_.n_features_in_
        return self

    def predict_risk(self, X: Any) -> np.ndarray:
        """Sum of the ensemble cumulative hazard over the training event times (higher = worse)."""
        check_is_fitted(self, "model_")
        return np.asarray(self.model_.predict(np.asarray(X, dtype=float)), dtype=float)

    def _survival_matrix(self, X: Any, times: np.ndarray) -> np.ndarray:
        surv = self.model_.predict_survival_function(np.asarray(X, dtype=float), return_array=True)
        grid = self.model_.unique_times_
        return np.stack([step_values(grid, row, times, before=1.0) for row in surv])
