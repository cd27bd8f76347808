"""Model families behind one interface: ``fit``, ``predict_risk``, ``predict_survival``."""

from __future__ import annotations

from riskmodel.models.base import SurvivalEstimator
from riskmodel.models.boosting import GradientBoostingSurvival
from riskmodel.models.cox import CoxPH
from riskmodel.models.forest import SurvivalForest

__all__ = ["FAMILIES", "CoxPH", "GradientBoostingSurvival", "SurvivalEstimator", "SurvivalForest"]

# The registry every contract test runs over: a family is tested the day it is registered.
FAMILIES: dict[str, type[SurvivalEstimator]] = {
    "cox": CoxPH,
    "rsf": SurvivalForest,
    "gbm": GradientBoostingSurvival,
}
