"""MultipleImputationSurvival's completed copies: a replay gives the very copies its models were fitted on."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.preprocessing import FunctionTransformer

from riskmodel.models import CoxPH, MultipleImputationSurvival
from riskmodel.stats import survival_array


def test_completed_training_replays_the_copies_each_model_was_fitted_on() -> None:
    """Each chain's scoring model draws from the same seeded stream as the next chain; a replay
    that skipped those draws gave different copies from the second imputation on (so a table
    pooled from refits on them was not the fitted models' table)."""
    rng = np.random.default_rng(0)
    n = 200
    X = np.c_[rng.normal(size=n), rng.normal(size=n), rng.uniform(size=n)]
    t = rng.exponential(12 * np.exp(-(X[:, 0] + 0.5 * X[:, 1])))
    c = rng.uniform(0, 36, n)
    X[rng.random(n) < 0.2, 0] = np.nan
    X[rng.random(n) < 0.1, 2] = np.nan
    frame, y = pd.DataFrame(X, columns=["x0", "x1", "x2"]), survival_array(t <= c, np.minimum(t, c))
    mi = MultipleImputationSurvival(
        FunctionTransformer(), CoxPH(penalty=0), impute=["x0", "x2"], n_imputations=4, n_iter=5, random_state=3
    ).fit(frame, y)
    copies = mi.completed_training(frame, y)
    assert len(copies) == 4
    for model, completed in zip(mi.models_, copies, strict=True):
        assert not np.isnan(completed.to_numpy()).any()
        np.testing.assert_allclose(CoxPH(penalty=0).fit(completed, y).coef_, model.coef_, rtol=1e-12)
    observed = ~np.isnan(X)
    for completed in copies:  # observed values are kept; only the missing ones differ between copies
        np.testing.assert_array_equal(completed.to_numpy()[observed], X[observed])
    assert not np.allclose(copies[0]["x0"], copies[1]["x0"])
