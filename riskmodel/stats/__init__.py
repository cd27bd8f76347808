"""Classical survival statistics on plain arrays: survival targets, Kaplan-Meier, the log-rank
test, Aalen-Johansen and Riley et al.'s sample size. Nothing here fits a model or reads a cohort.
"""

from __future__ import annotations

from riskmodel.stats.competing import aalen_johansen
from riskmodel.stats.kaplan_meier import kaplan_meier, km_at, km_median, km_summary
from riskmodel.stats.logrank import logrank_chi2
from riskmodel.stats.target import SURVIVAL_DTYPE, check_survival_target, step_values, survival_array

__all__ = [
    "SURVIVAL_DTYPE",
    "aalen_johansen",
    "check_survival_target",
    "kaplan_meier",
    "km_at",
    "km_median",
    "km_summary",
    "logrank_chi2",
    "step_values",
    "survival_array",
]
