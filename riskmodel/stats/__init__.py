"""Classical survival statistics on plain arrays: survival targets, Kaplan-Meier, the log-rank
test, proportional-hazards tests (survival 3.x's cox.zph), Aalen-Johansen, Fine-Gray, Gray's test, Riley et al.'s sample
size, restricted cubic splines and Rubin's rules for multiply imputed analyses. Nothing here fits
a model or reads a cohort.
"""

from __future__ import annotations

from riskmodel.stats.competing import FineGrayFit, GrayTest, aalen_johansen, fine_gray, gray_test
from riskmodel.stats.kaplan_meier import kaplan_meier, km_at, km_median, km_summary
from riskmodel.stats.logrank import logrank_chi2
from riskmodel.stats.ph import (
    TRANSFORMS,
    PHSmooth,
    PHTermTests,
    PHTest,
    Transform,
    ph_smooth,
    ph_term_tests,
    ph_test,
    transformed_time,
)
from riskmodel.stats.pooling import PooledEstimates, barnard_rubin_df, rubin_pool
from riskmodel.stats.splines import harrell_knots, restricted_cubic_spline
from riskmodel.stats.target import (
    COMPETING_DTYPE,
    SURVIVAL_DTYPE,
    check_competing_target,
    check_survival_target,
    competing_array,
    is_competing,
    step_values,
    survival_array,
)

__all__ = [
    "COMPETING_DTYPE",
    "SURVIVAL_DTYPE",
    "TRANSFORMS",
    "FineGrayFit",
    "GrayTest",
    "PHSmooth",
    "PHTermTests",
    "PHTest",
    "PooledEstimates",
    "Transform",
    "aalen_johansen",
    "barnard_rubin_df",
    "check_competing_target",
    "check_survival_target",
    "competing_array",
    "fine_gray",
    "gray_test",
    "harrell_knots",
    "is_competing",
    "kaplan_meier",
    "km_at",
    "km_median",
    "km_summary",
    "logrank_chi2",
    "ph_smooth",
    "ph_term_tests",
    "ph_test",
    "restricted_cubic_spline",
    "rubin_pool",
    "step_values",
    "survival_array",
    "transformed_time",
]
