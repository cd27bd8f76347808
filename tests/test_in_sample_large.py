"""In-sample calibration of a large cohort: the smoother's band from fewer refits, nothing else changed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import riskmodel.validation.in_sample as in_sample
from riskmodel.models import CoxPH
from riskmodel.stats import survival_array


@pytest.mark.parametrize(("n", "expected"), [(80, 100), (200, 20)])
def test_the_band_uses_fewer_bootstrap_refits_only_above_the_stated_size(
    monkeypatch: pytest.MonkeyPatch, n: int, expected: int
) -> None:
    monkeypatch.setattr(in_sample, "BAND_LARGE_COHORT", 100)
    seen: list[int] = []
    real = in_sample.calibration_curve

    def curve(*args: Any, n_boot: int, seed: int) -> Any:
        seen.append(n_boot)
        return real(*args, n_boot=2, seed=seed)  # the refits themselves are not what is tested

    monkeypatch.setattr(in_sample, "calibration_curve", curve)
    rng = np.random.default_rng(n)
    X = pd.DataFrame(rng.normal(size=(n, 2)), columns=["a", "b"])
    y = survival_array(rng.random(n) < 0.7, rng.exponential(10 * np.exp(-X["a"].to_numpy())) + 0.1)
    pipe = Pipeline([("features", StandardScaler()), ("model", CoxPH(penalty=0.1))]).fit(X, y)
    out = in_sample.in_sample_calibration(pipe, X, y, [2.0, 5.0], seed=0)
    assert seen == [expected, expected]
    assert set(out.curves) == {2.0, 5.0}
