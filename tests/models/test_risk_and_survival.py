"""``predict_risk_and_survival`` (one pass for both, as batch scoring asks) gives exactly what
``predict_risk`` and ``predict_survival`` give apart, for every family.

The references: each family's own two calls (tolerance zero, ``np.array_equal``: the shared pass
must not change a bit), and for the forest, whose one walk of each tree now reads only the
horizons' columns, scikit-survival's own ``predict_survival_function`` on one core read at the
horizons as a step function (also zero tolerance, with missing values and above the threaded
threshold).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskmodel.errors import UserInputError
from riskmodel.models import SurvivalEstimator, SurvivalForest
from riskmodel.models.forest import LARGE_COHORT
from tests.models.test_forest_predict import cohort, sksurv_reference


def horizons(estimator: SurvivalEstimator) -> list[float]:
    """Before any event, between events, an event time itself, and the end of follow-up."""
    return [0.0, 0.05, 6.0, 12.0, 24.0, float(estimator.max_time_)]


def test_the_pair_equals_the_two_calls_bit_for_bit(
    fitted: SurvivalEstimator, synthetic_design: tuple[pd.DataFrame, np.ndarray]
) -> None:
    X, _ = synthetic_design
    t = horizons(fitted)
    risk, surv = fitted.predict_risk_and_survival(X, t)
    assert np.array_equal(risk, fitted.predict_risk(X))
    assert np.array_equal(surv, fitted.predict_survival(X, t).to_numpy())
    assert surv.shape == (len(X), len(t))
    assert risk.dtype == surv.dtype == np.float64


def test_the_pair_refuses_a_horizon_beyond_follow_up_as_predict_survival(fitted: SurvivalEstimator) -> None:
    X = np.zeros((2, fitted.n_features_in_))
    beyond = [6.0, fitted.max_time_ + 1.0]
    with pytest.raises(UserInputError) as apart:
        fitted.predict_survival(X, beyond)
    with pytest.raises(UserInputError) as paired:
        fitted.predict_risk_and_survival(X, beyond)
    assert str(paired.value) == str(apart.value)


@pytest.mark.parametrize("n_new", [300, 10 * LARGE_COHORT + 50])  # one core; blocks on every core
def test_the_forest_reads_the_horizons_as_scikit_survival_bit_for_bit(n_new: int) -> None:
    X, y = cohort(400, seed=3)
    forest = SurvivalForest(n_estimators=6, random_state=4, time_grid=None).fit(X, y)
    X_new, _ = cohort(n_new, seed=5)
    risk, _, surv_all = sksurv_reference(forest, (X, y), X_new)
    grid = forest.model_.unique_times_
    t = np.array([0.0, grid[0] / 2, grid[0], grid[3], (grid[10] + grid[11]) / 2, 15.0, grid[-1]])
    at = np.searchsorted(grid, t, side="right") - 1  # the step function's value at t: 1 before the first time
    want = np.where(at[None, :] >= 0, surv_all[:, np.clip(at, 0, None)], 1.0)
    got_risk, got = forest.predict_risk_and_survival(X_new, t)
    assert np.array_equal(got_risk, risk)
    assert np.array_equal(got, want)
    assert np.array_equal(forest.predict_survival(X_new, t).to_numpy(), want)
