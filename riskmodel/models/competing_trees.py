"""Cause-specific forests and boosting, combined into CIFs (:mod:`riskmodel.models.competing`).

**Why cause-specific forests, not Ishwaran et al. (2014)'s competing-risk splitting** (*Biostatistics*
15:757). A cause-specific forest is riskmodel's own survival forest (:class:`SurvivalForest`,
log-rank splitting, its fast path for large cohorts, its checks of untrusted model files) fitted
once per cause with the other cause censored; its ensemble cumulative hazard estimates that cause's
cause-specific cumulative hazard, and the Aalen-Johansen combination of two consistent
cause-specific hazards is a consistent CIF (Andersen et al. 2012, *Int J Epidemiol* 41:861).
Competing-risk splitting (Gray's or the composite log-rank rule, with per-leaf Aalen-Johansen
estimates) would be a new tree kernel to write, speed up and verify. The price: a split is
chosen for one cause's hazard, so a covariate acting on the CIF only through the other cause is
found by the other forest, not by this one.

Each tree's leaf holds the Nelson-Aalen estimate of its (bootstrap) patients (scikit-survival), so
every increment of the ensemble cumulative hazard is in [0, 1]; their sum over the two causes
may exceed 1 at a time, which the combination caps (module docstring of
:mod:`riskmodel.models.competing`).

Cause-specific boosting: one boosted Cox model per cause (:class:`GradientBoostingSurvival`, xgboost's
``survival:cox`` by default), each with the Breslow baseline on its own margin f_k:
ΔH_k(s | x) = exp(f_k(x)) · d_k(s) / Σ_{at risk} exp(f_k).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from riskmodel.errors import UserInputError
from riskmodel.models.base import SurvivalEstimator
from riskmodel.models.boosting import GradientBoostingSurvival
from riskmodel.models.competing import BreslowCauses, CompetingRiskEstimator, cause_files
from riskmodel.models.forest import SurvivalForest

__all__ = ["CauseSpecificBoosting", "CauseSpecificForest"]

Auto = Literal["auto"]


class CauseSpecificForest(CompetingRiskEstimator):
    """Two random survival forests (one per cause), combined into CIFs (module docstring).

    Parameters are :class:`SurvivalForest`'s (each forest gets them all, and the same seed), and
    ``risk_horizon`` (:class:`~riskmodel.models.competing.CompetingRiskEstimator`). A forest fitted
    with ``low_memory=True`` gives no curves, so it is refused for CIFs.
    """

    component = SurvivalForest
    all_levels = True  # trees: no reference level (riskmodel.models.base)
    FILES = cause_files(SurvivalForest)

    def __init__(
        self,
        n_estimators: int = 200,
        min_samples_leaf: int = 3,
        max_features: str | float | None = "sqrt",
        max_depth: int | None = None,
        time_grid: int | Auto | None = "auto",
        max_samples: int | float | Auto | None = "auto",
        max_bins: int | Auto | None = "auto",
        low_memory: bool = False,
        n_jobs: int | None = None,
        random_state: int | None = 0,
        risk_horizon: float | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_depth = max_depth
        self.time_grid = time_grid
        self.max_samples = max_samples
        self.max_bins = max_bins
        self.low_memory = low_memory
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.risk_horizon = risk_horizon

    def fit(self, X: Any, y: Any) -> CauseSpecificForest:
        """Fit one forest per cause; returns ``self``."""
        if self.low_memory:
            raise UserInputError("low_memory=True forests give risk scores, not curves, so no CIF; leave it False")
        super().fit(X, y)
        return self

    def _jump_times(self, model: SurvivalEstimator) -> np.ndarray:
        return np.asarray(model.model_.unique_times_, dtype=float)

    def _jumps(self, model: SurvivalEstimator, X: Any, count: int) -> np.ndarray:
        _, cumhaz = model.cumulative_hazard_matrix(X, until=self._jump_times(model)[count - 1] if count else -np.inf)
        return np.diff(cumhaz[:, :count], axis=1, prepend=0.0)


class CauseSpecificBoosting(BreslowCauses):
    """Two boosted Cox models (one per cause), each with its Breslow baseline, combined into CIFs.

    Parameters are :class:`GradientBoostingSurvival`'s (each model gets them all, and the same
    seed), and ``risk_horizon``.
    """

    component = GradientBoostingSurvival
    all_levels = True  # trees, with either backend
    FILES = cause_files(GradientBoostingSurvival)

    def __init__(
        self,
        backend: Literal["xgboost", "sksurv"] = "xgboost",
        n_estimators: int = 100,
        learning_rate: float = 0.05,
        max_depth: int = 2,
        subsample: float = 0.8,
        min_child_weight: float = 0.5,
        reg_lambda: float = 1.0,
        reg_alpha: float = 0.0,
        n_jobs: int | None = None,
        random_state: int = 0,
        risk_horizon: float | None = None,
    ) -> None:
        self.backend = backend
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.reg_alpha = reg_alpha
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.risk_horizon = risk_horizon
