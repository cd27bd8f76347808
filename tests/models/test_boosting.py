"""Gradient boosting: a refit against xgboost's and scikit-survival's own numbers, and the
scikit-survival backend refusing the xgboost parameters it has no equivalent for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sksurv.linear_model.coxph import BreslowEstimator

from riskmodel.errors import UserInputError
from riskmodel.models import GradientBoostingSurvival
from riskmodel.models.registry import BoostingConfig


def test_after_a_refit_risk_and_baseline_are_the_new_boosters(
    synthetic_design: tuple[pd.DataFrame, np.ndarray],
) -> None:
    import xgboost as xgb

    X, y = synthetic_design
    rows = np.random.default_rng(3).choice(len(X), len(X))  # a bootstrap resample, as validation refits
    XB, yB = X.iloc[rows].to_numpy(), y[rows]
    model = GradientBoostingSurvival(max_depth=3).fit(X, y)
    model.predict_risk(X)
    model.fit(XB, yB)
    margin = model.booster_.predict(xgb.DMatrix(XB), output_margin=True).astype(float)
    np.testing.assert_allclose(model.predict_risk(XB), margin, rtol=0, atol=1e-5)  # xgboost sums in float32
    breslow = BreslowEstimator().fit(margin, yB["event"], yB["time"]).cum_baseline_hazard_
    np.testing.assert_allclose(model.baseline_cumhaz_, breslow(model.event_times_), rtol=1e-4)


@pytest.mark.parametrize(
    ("param", "value"), [("min_child_weight", 2.0), ("reg_lambda", 5.0), ("reg_alpha", 0.5), ("n_jobs", 2)]
)
def test_the_sksurv_backend_refuses_xgboost_parameters_it_has_no_equivalent_for(
    synthetic_design: tuple[pd.DataFrame, np.ndarray], param: str, value: float
) -> None:
    X, y = synthetic_design
    with pytest.raises(UserInputError, match=rf"{param}={value!r} .*\(backend 'sksurv'\)"):
        GradientBoostingSurvival(backend="sksurv", **{param: value}).fit(X, y)
    GradientBoostingSurvival(backend="xgboost", n_estimators=5, **{param: value}).fit(X, y)
    if param in BoostingConfig.model_fields:  # an experiment's models.gbm is refused as it is read
        with pytest.raises(ValueError, match=f"{param} has no equivalent"):
            BoostingConfig(backend="sksurv", **{param: value})
