"""Gradient boosting: a refit against xgboost's and scikit-survival's own numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sksurv.linear_model.coxph import BreslowEstimator

from riskmodel.models import GradientBoostingSurvival


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
