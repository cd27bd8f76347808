"""scikit-learn's estimator contract over every family and variant (``VARIANTS``).

scikit-learn's own checks run where they need no target: default construction, clone,
get_params/set_params, nothing done in ``__init__``. The rest of ``check_estimator`` fits on a
1-D ``y``, so their survival versions are written here. Each compares with a fresh fit (an
independent object, never an earlier output of the one under test): a refit is idempotent, a
refit on other data equals a fresh fit on it, ``set_params`` then ``fit`` equals a fresh fit
with those parameters, predicting changes no fitted state, a searched parameter is used or
refused, and ``n_features_in_``/``feature_names_in_`` behave as scikit-learn's.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.utils import estimator_checks

from riskmodel.errors import UserInputError
from riskmodel.models import SPECS, FamilySpec, SurvivalEstimator
from riskmodel.models.registry import ParamSpace
from tests.models.conftest import VARIANTS

HORIZONS = [1.0, 3.0, 6.0, 12.0]

# scikit-learn's checks that fit nothing, so they apply to survival estimators unchanged
TARGET_FREE_CHECKS = [
    estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params,
    estimator_checks.check_estimator_cloneable,
    estimator_checks.check_estimator_repr,
    estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
]


def state(obj: Any, path: str = "model") -> dict[str, str]:
    """A digest of every attribute by path, into nested estimators, lists, tuples and dicts."""
    if isinstance(obj, BaseEstimator):
        items: Any = vars(obj).items()
    elif isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        return {path: hashlib.sha256(pickle.dumps(obj)).hexdigest()}
    out = {path: type(obj).__name__}
    for key, value in items:
        out.update(state(value, f"{path}.{key}"))
    return out


def assert_same_fit(model: SurvivalEstimator, reference: SurvivalEstimator, X: Any) -> None:
    """Equal fitted state, and bit-for-bit equal risk and S(t) (every family is seeded)."""
    np.testing.assert_array_equal(model.predict_risk(X), reference.predict_risk(X))
    np.testing.assert_array_equal(model.predict_survival(X, HORIZONS), reference.predict_survival(X, HORIZONS))
    assert state(model) == state(reference)


def family(model: SurvivalEstimator) -> FamilySpec:
    return next(s for s in SPECS.values() if isinstance(model, s.estimator))


def other_value(space: ParamSpace, current: Any, *, far: bool = False) -> Any:
    """A searched value unlike ``current``: the low end of the range (``far``: the high end) or a choice."""
    if space.choices is not None:
        return next(c for c in (reversed(space.choices) if far else space.choices) if c != current)
    assert space.low is not None
    assert space.high is not None
    first, second = (space.high, space.low) if far else (space.low, space.high)
    value = first if first != current else second
    return int(value) if space.integer else value


@pytest.fixture(scope="module")
def other_data(synthetic_design: tuple[pd.DataFrame, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Data B: other patients, one feature fewer, as a bare array (no feature names)."""
    X, y = synthetic_design
    rows = np.sort(np.random.default_rng(1).choice(len(X), 300, replace=False))
    return X.iloc[rows, :-1].to_numpy(), y[rows]


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("check", TARGET_FREE_CHECKS, ids=lambda c: c.__name__)
def test_scikit_learns_target_free_checks_pass(check: Callable[[str, Any], None], name: str) -> None:
    check(name, VARIANTS[name]())


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_clone_has_equal_params_no_fitted_state_and_fits_the_same(name: str, synthetic_design: tuple) -> None:
    X, y = synthetic_design
    model = VARIANTS[name]().fit(X, y)
    twin = clone(model)
    assert twin.get_params() == model.get_params()
    assert [k for k in vars(twin) if k.endswith("_")] == []
    assert_same_fit(twin.fit(X, y), model, X)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_refitting_on_the_same_data_is_idempotent(name: str, synthetic_design: tuple) -> None:
    X, y = synthetic_design
    model = VARIANTS[name]().fit(X, y)
    risk, surv, before = model.predict_risk(X), model.predict_survival(X, HORIZONS), state(model)
    model.fit(X, y)
    np.testing.assert_array_equal(model.predict_risk(X), risk)
    pd.testing.assert_frame_equal(model.predict_survival(X, HORIZONS), surv)
    assert state(model) == before


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_refit_on_other_data_equals_a_fresh_fit_on_that_data(
    name: str, synthetic_design: tuple, other_data: tuple
) -> None:
    X, y = synthetic_design
    XB, yB = other_data
    model = VARIANTS[name]().fit(X, y)
    model.predict_survival(X, HORIZONS)  # whatever a prediction may cache
    assert_same_fit(model.fit(XB, yB), VARIANTS[name]().fit(XB, yB), XB)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_set_params_then_fit_equals_a_fresh_fit_with_those_params(name: str, synthetic_design: tuple) -> None:
    X, y = synthetic_design
    model = VARIANTS[name]().fit(X, y)
    model.predict_risk(X)
    current = model.get_params()
    unused = type(model).ignored_params(current)
    params = {p: other_value(s, current[p]) for p, s in family(model).space.items() if p not in unused}
    assert params, "the family's search space gives something to set"
    fresh = type(model)(**{**current, **params}).fit(X, y)
    assert_same_fit(model.set_params(**params).fit(X, y), fresh, X)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_searched_parameter_changes_the_model_or_is_refused(name: str, synthetic_design: tuple) -> None:
    X, y = synthetic_design
    default = VARIANTS[name]()
    baseline = default.fit(X, y).predict_survival(X, HORIZONS)
    for param, space in family(default).space.items():
        current = default.get_params()[param]
        if param == "time_grid" and current == "auto":
            # "auto" is a 100-point grid above 100 distinct event times, as here: pick another size
            assert len(np.unique(y["time"][y["event"]])) > 100
            space = ParamSpace(choices=[c for c in space.choices or [] if c != 100])
        value = other_value(space, current, far=True)
        model = VARIANTS[name]().set_params(**{param: value})
        if param in type(model).ignored_params(model.get_params()):
            with pytest.raises(UserInputError, match=f"{param}="):
                model.fit(X, y)
            continue
        changed = model.fit(X, y).predict_survival(X, HORIZONS)
        assert not changed.equals(baseline), f"{param}={value!r} left {name} unchanged"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_predicting_changes_no_fitted_state(name: str, synthetic_design: tuple, tmp_path: Path) -> None:
    X, y = synthetic_design
    model = VARIANTS[name]()
    if "n_jobs" in model.get_params() and "n_jobs" not in type(model).ignored_params(model.get_params()):
        model.set_params(n_jobs=2)  # unlike the one core a small batch is predicted on
    model.fit(X, y)
    model.save_state(tmp_path)
    for fitted in (model, type(model).load_state(tmp_path)):
        before = state(fitted)
        fitted.predict_risk(X)
        fitted.predict_survival(X.head(1), HORIZONS)
        fitted.score(X, y)
        assert state(fitted) == before


@pytest.mark.parametrize("name", list(VARIANTS))
def test_n_features_in_and_feature_names_in_follow_scikit_learn(name: str, synthetic_design: tuple) -> None:
    X, y = synthetic_design
    model = VARIANTS[name]().fit(X, y)
    assert model.n_features_in_ == X.shape[1]
    assert list(model.feature_names_in_) == list(X.columns)
    with pytest.raises(ValueError, match="feature names"):
        model.predict_risk(X[X.columns[::-1]])  # the same columns in another order would mislead silently
    model.fit(X.to_numpy(), y)
    assert model.n_features_in_ == X.shape[1]
    assert not hasattr(model, "feature_names_in_")
    with pytest.raises(ValueError, match="features"):
        model.predict_risk(X.to_numpy()[:, :-1])
