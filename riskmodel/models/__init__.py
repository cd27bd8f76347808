"""Model families behind one interface: ``fit``, ``predict_risk``, ``predict_survival``.

The families are registered in :mod:`riskmodel.models.registry`; a family is tested by the
contract tests the day it is registered.
"""

from __future__ import annotations

from riskmodel.models.base import SurvivalEstimator
from riskmodel.models.boosting import GradientBoostingSurvival
from riskmodel.models.cox import CoxPH
from riskmodel.models.forest import SurvivalForest
from riskmodel.models.imputation import MultipleImputationSurvival
from riskmodel.models.pooled import pool_cox, pooled_hazard_ratios
from riskmodel.models.registry import FAMILIES, SPECS, FamilySpec, build_estimator

__all__ = [
    "FAMILIES",
    "SPECS",
    "CoxPH",
    "FamilySpec",
    "GradientBoostingSurvival",
    "MultipleImputationSurvival",
    "SurvivalEstimator",
    "SurvivalForest",
    "build_estimator",
    "pool_cox",
    "pooled_hazard_ratios",
]
