"""Contract tests over every model family: a family is tested on the day it is registered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone

from riskmodel.errors import UserInputError
from riskmodel.models import SurvivalEstimator
from tests.models.conftest import VARIANTS

HORIZONS = [0.0, 1.0, 3.0, 6.0, 12.0, 18.0]


def test_survival_is_a_valid_curve(fitted: SurvivalEstimator, synthetic_design: tuple) -> None:
    X, _ = synthetic_design
    S = fitted.predict_survival(X, HORIZONS)
    assert isinstance(S, pd.DataFrame)
    assert list(S.columns) == HORIZONS
    assert S.index.equals(X.index)
    values = S.to_numpy()
    assert np.isfinite(values).all()
    assert ((values >= 0) & (values <= 1)).all()
    assert (np.diff(values, axis=1) <= 1e-12).all(), "S(t) must not rise"
    np.testing.assert_allclose(values[:, 0], 1.0)  # no event at time 0


def test_risk_orders_patients_like_survival(fitted: SurvivalEstimator, synthetic_design: tuple) -> None:
    X, y = synthetic_design
    risk = fitted.predict_risk(X)
    assert risk.shape == (len(X),)
    assert np.isfinite(risk).all()
    rho = stats.spearmanr(risk, fitted.predict_survival(X, [6.0]).to_numpy()[:, 0]).statistic
    assert rho < -0.8
    assert fitted.score(X, y) > 0.6  # the DGP has real signal; every family finds some


def test_horizons_beyond_follow_up_are_refused(fitted: SurvivalEstimator, synthetic_design: tuple) -> None:
    X, _ = synthetic_design
    with pytest.raises(UserInputError, match="beyond the training follow-up"):
        fitted.predict_survival(X, [fitted.max_time_ + 0.5])
    with pytest.raises(UserInputError, match="horizons must be finite"):
        fitted.predict_survival(X, [-1.0])
    assert fitted.predict_survival(X, [fitted.max_time_]).shape == (len(X), 1)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_clone_and_params(name: str, synthetic_design: tuple) -> None:
    X, y = synthetic_design
    model = VARIANTS[name]()
    twin = clone(model)
    assert twin.get_params() == model.get_params()
    a = model.fit(X, y).predict_survival(X.head(5), [6.0])
    b = twin.fit(X, y).predict_survival(X.head(5), [6.0])
    pd.testing.assert_frame_equal(a, b)  # seeded: refits are identical


@pytest.mark.parametrize("name", list(VARIANTS))
def test_all_censored_is_refused(name: str, synthetic_design: tuple) -> None:
    X, y = synthetic_design
    censored = y.copy()
    censored["event"] = False
    with pytest.raises(UserInputError, match="all samples are censored"):
        VARIANTS[name]().fit(X, censored)
