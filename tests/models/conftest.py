"""Fitted-model fixtures shared by the model tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import survival_data
from riskmodel.cohort.synthetic import generate
from riskmodel.features import ClinicalFeatures
from riskmodel.models import FAMILIES, GradientBoostingSurvival, SurvivalEstimator, SurvivalForest

# every registered family, the scikit-survival backend of boosting, and the forest's fast path
VARIANTS = {
    **{name: (lambda cls=cls: cls()) for name, cls in FAMILIES.items()},
    "gbm-sksurv": lambda: GradientBoostingSurvival(backend="sksurv"),
    "rsf-fast": lambda: SurvivalForest(n_estimators=50, time_grid=20, max_samples=0.5, max_bins=16),
}


@pytest.fixture(scope="session")
def synthetic_design() -> tuple[pd.DataFrame, np.ndarray]:
    frame = generate(400, seed=21)
    data = survival_data(frame, "os", landmark_months=3, feature_columns=["response_3mo"])
    X = ClinicalFeatures("study", landmark_months=3).set_output(transform="pandas").fit_transform(data.X)
    return X, data.y


@pytest.fixture(scope="session", params=list(VARIANTS))
def fitted(request: pytest.FixtureRequest, synthetic_design: tuple[pd.DataFrame, np.ndarray]) -> SurvivalEstimator:
    X, y = synthetic_design
    return VARIANTS[request.param]().fit(X, y)
