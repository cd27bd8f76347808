"""Model families behind one interface: ``fit``, ``predict_risk``, ``predict_survival``.

The families are registered in :mod:`riskmodel.models.registry`; a family is tested by the
contract tests the day it is registered.
"""

from __future__ import annotations

from riskmodel.models.base import SurvivalEstimator
from riskmodel.models.boosting import GradientBoostingSurvival
from riskmodel.models.competing import CauseSpecificCox, CompetingRiskEstimator
from riskmodel.models.competing_trees import CauseSpecificBoosting, CauseSpecificForest
from riskmodel.models.cox import CoxPH
from riskmodel.models.forest import SurvivalForest
from riskmodel.models.imputation import MultipleImputationSurvival
from riskmodel.models.pooled import pool_cox, pooled_hazard_ratios
from riskmodel.models.registry import (
    COMPETING_FAMILIES,
    FAMILIES,
    SPECS,
    FamilySpec,
    build_competing_estimator,
    build_estimator,
)

__all__ = [
    "COMPETING_FAMILIES",
    "FAMILIES",
    "SPECS",
    "CauseSpecificBoosting",
    "CauseSpecificCox",
    "CauseSpecificForest",
    "CompetingRiskEstimator",
    "CoxPH",
    "FamilySpec",
    "GradientBoostingSurvival",
    "MultipleImputationSurvival",
    "SurvivalEstimator",
    "SurvivalForest",
    "build_competing_estimator",
    "build_estimator",
    "pool_cox",
    "pooled_hazard_ratios",
]
