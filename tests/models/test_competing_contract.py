"""Contract tests over every registered family's competing-risk counterpart (its CIF model).

A family is covered the day it is registered: the tests run over ``SPECS``, and a family without a
competing counterpart fails the first test. Small data (150 patients, few trees): seconds.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from riskmodel.errors import ModelFileError, UserInputError
from riskmodel.models import SPECS, CompetingRiskEstimator, build_competing_estimator
from riskmodel.stats import competing_array, survival_array

# Fine-Gray's two separate models overshoot (CIF1 + CIF2 > 1) for some patients of this design, and
# say so; the cap that keeps the contract is what these tests check
pytestmark = pytest.mark.filterwarnings("ignore:Fine-Gray. for:riskmodel.errors.RiskModelWarning")

# fast settings for the slow families; a new family runs with its defaults
SMALL: dict[str, dict[str, Any]] = {"rsf": {"n_estimators": 10}, "gbm": {"n_estimators": 20}}
HORIZONS = [0.0, 0.25, 0.5, 1.0, 2.0, 3.0]


def small(family: str, **extra: Any) -> CompetingRiskEstimator:
    return build_competing_estimator(family, {**SMALL.get(family, {}), **extra}, seed=3)


def design(n: int = 150, seed: int = 4) -> tuple[pd.DataFrame, np.ndarray]:
    """Cause 1 with log-HR 1 in ``a``; cause 2 with log-HR −0.5 in ``b``; uniform censoring; tied times."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.integers(0, 2, n).astype(float)})
    t1 = rng.exponential(1 / np.exp(X["a"].to_numpy()))
    t2 = rng.exponential(2 / np.exp(-0.5 * X["b"].to_numpy()))
    censor = rng.uniform(0.1, 4.0, n)
    first = np.minimum.reduce([t1, t2, censor])
    cause = np.where(first == t1, 1, np.where(first == t2, 2, 0))
    time = np.ceil(first * 20) / 20  # steps of 0.05: tied times
    return X, competing_array(cause, time)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    return design()


@pytest.fixture(scope="module", params=list(SPECS))
def fitted(request: pytest.FixtureRequest, data: tuple[pd.DataFrame, np.ndarray]) -> CompetingRiskEstimator:
    X, y = data
    return small(request.param).fit(X, y)


def test_every_registered_family_has_a_competing_counterpart() -> None:
    for name, spec in SPECS.items():
        assert spec.competing is not None, f"{name} has no competing-risks counterpart"
        assert issubclass(spec.competing, CompetingRiskEstimator)
        assert spec.competing.all_levels == spec.estimator.all_levels


def test_cif_is_a_valid_pair_of_cumulative_incidences(fitted: CompetingRiskEstimator, data: tuple) -> None:
    X, _ = data
    cif = fitted.cif_matrix(X, HORIZONS)
    assert cif.shape == (2, len(X), len(HORIZONS))
    assert np.isfinite(cif).all()
    assert (cif >= 0).all()
    assert (cif <= 1).all()
    assert (np.diff(cif, axis=2) >= 0).all(), "a CIF must not decrease"
    assert (cif.sum(axis=0) <= 1 + 1e-12).all(), "CIF1 + CIF2 must not exceed 1"
    np.testing.assert_array_equal(cif[:, :, 0], 0.0)  # no event at time 0
    assert cif[0, :, -1].max() > 0.3
    assert cif[1, :, -1].max() > 0.05
    surv = fitted.predict_survival(X, HORIZONS)
    np.testing.assert_allclose(surv.to_numpy(), 1 - cif[0] - cif[1], rtol=0, atol=1e-12)
    assert (surv.to_numpy() >= 0).all()
    assert (np.diff(surv.to_numpy(), axis=1) <= 0).all()
    for k in (1, 2):
        frame = fitted.predict_cif(X, HORIZONS, cause=k)
        assert list(frame.columns) == HORIZONS
        assert frame.index.equals(X.index)
        np.testing.assert_array_equal(frame.to_numpy(), cif[k - 1])
    with pytest.raises(UserInputError, match="cause must be 1"):
        fitted.predict_cif(X, HORIZONS, cause=3)


def test_predict_risk_is_cif1_at_the_risk_horizon(fitted: CompetingRiskEstimator, data: tuple) -> None:
    X, y = data
    assert fitted.risk_horizon_ == pytest.approx(float(np.median(y["time"][y["cause"] == 1])))
    risk = fitted.predict_risk(X)
    np.testing.assert_allclose(risk, fitted.cif_matrix(X, [fitted.risk_horizon_])[0, :, 0], rtol=0, atol=1e-12)
    assert fitted.score(X, y) > 0.6  # cause 1 depends on a: higher CIF1 = earlier cause-1 event
    other = clone(fitted).set_params(risk_horizon=2.0).fit(X, y)
    assert other.risk_horizon_ == 2.0
    np.testing.assert_allclose(other.predict_risk(X), other.cif_matrix(X, [2.0])[0, :, 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("family", list(SPECS))
def test_a_survival_target_and_bad_horizons_are_refused(family: str, data: tuple) -> None:
    X, y = data
    with pytest.raises(UserInputError, match=r"needs a competing-risks target \(cause 0/1/2"):
        small(family).fit(X, survival_array(y["event"], y["time"]))
    with pytest.raises(UserInputError, match="no event of interest"):
        small(family).fit(X, competing_array(np.where(y["cause"] == 1, 0, y["cause"]), y["time"]))
    with pytest.raises(UserInputError, match="risk_horizon"):
        small(family, risk_horizon=-1.0).fit(X, y)
    with pytest.raises(UserInputError, match="beyond the training follow-up"):
        small(family, risk_horizon=99.0).fit(X, y)


def test_horizons_beyond_follow_up_are_refused(fitted: CompetingRiskEstimator, data: tuple) -> None:
    X, _ = data
    for predict in (fitted.cif_matrix, fitted.predict_cif, fitted.predict_survival):
        with pytest.raises(UserInputError, match="beyond the training follow-up"):
            predict(X, [fitted.max_time_ + 0.5])
        with pytest.raises(UserInputError, match="horizons must be finite"):
            predict(X, [-1.0])
    assert fitted.cif_matrix(X, [fitted.max_time_]).shape == (2, len(X), 1)


@pytest.mark.parametrize("family", list(SPECS))
def test_clone_gives_the_same_model(family: str, data: tuple) -> None:
    X, y = data
    model = small(family)
    twin = clone(model)
    assert twin.get_params() == model.get_params()
    a = model.fit(X, y).cif_matrix(X.head(10), [1.0, 2.0])
    b = twin.fit(X, y).cif_matrix(X.head(10), [1.0, 2.0])
    np.testing.assert_array_equal(a, b)  # seeded: refits are identical


def _no_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model folder was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def test_save_and_load_give_identical_predictions_without_pickle(
    fitted: CompetingRiskEstimator, data: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, _ = data
    fitted.save_state(tmp_path)
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert written <= type(fitted).FILES, written - type(fitted).FILES
    assert {"competing.json"} < written
    assert any(w.startswith("cause_1/") for w in written)
    assert any(w.startswith("cause_2/") for w in written)
    _no_pickle(monkeypatch)
    loaded = type(fitted).load_state(tmp_path)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.risk_horizon_ == fitted.risk_horizon_
    np.testing.assert_allclose(loaded.cif_matrix(X, HORIZONS), fitted.cif_matrix(X, HORIZONS), rtol=0, atol=1e-12)
    np.testing.assert_allclose(loaded.predict_risk(X), fitted.predict_risk(X), rtol=0, atol=1e-12)


def test_a_tampered_folder_is_refused(fitted: CompetingRiskEstimator, tmp_path: Path) -> None:
    fitted.save_state(tmp_path)
    state = json.loads((tmp_path / "competing.json").read_text())
    (tmp_path / "competing.json").write_text(json.dumps({**state, "risk_horizon": 1e6}))
    with pytest.raises(ModelFileError, match="beyond follow-up"):
        type(fitted).load_state(tmp_path)
    (tmp_path / "competing.json").write_text(json.dumps({**state, "fitted_causes": [1]}))
    with pytest.raises(ModelFileError, match="says has none"):
        type(fitted).load_state(tmp_path)
    (tmp_path / "competing.json").write_text(json.dumps(state))
    (tmp_path / "cause_2").rename(tmp_path / "elsewhere")
    (tmp_path / "cause_2").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ModelFileError, match="not a plain folder"):
        type(fitted).load_state(tmp_path)


# where each family's load_state checks untrusted files before use (riskmodel.models.untrusted)
CHECKS = {
    "rsf": "riskmodel.models.tree_store.check_store",
    "gbm": "riskmodel.models.boosting.check_xgboost_model",
}


@pytest.mark.parametrize("family", list(CHECKS))
def test_loading_runs_the_component_checks_of_untrusted_files(
    family: str, data: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = data
    small(family).fit(X, y).save_state(tmp_path)
    calls: list[str] = []

    def spy(*args: Any) -> None:
        calls.append(str(args[-1]))

    monkeypatch.setattr(CHECKS[family], spy)
    SPECS[family].competing.load_state(tmp_path)  # type: ignore[union-attr]
    assert any("cause_1" in c for c in calls)
    assert any("cause_2" in c for c in calls)


def test_a_tampered_cox_baseline_is_refused(data: tuple, tmp_path: Path) -> None:
    X, y = data
    small("cox").fit(X, y).save_state(tmp_path)
    path = tmp_path / "cause_2" / "cox.json"
    state = json.loads(path.read_text())
    state["baseline_cumhaz"] = state["baseline_cumhaz"][::-1]
    path.write_text(json.dumps(state))
    with pytest.raises(ModelFileError, match="non-decreasing"):
        SPECS["cox"].competing.load_state(tmp_path)  # type: ignore[union-attr]


@pytest.mark.parametrize("family", list(SPECS))
def test_without_competing_events_cif2_is_zero(family: str, data: tuple, tmp_path: Path) -> None:
    X, y = data
    only = competing_array(np.where(y["cause"] == 2, 0, y["cause"]), y["time"])
    model = small(family).fit(X, only)
    assert model.models_[1] is None
    cif = model.cif_matrix(X, HORIZONS)
    np.testing.assert_array_equal(cif[1], 0.0)
    model.save_state(tmp_path)
    assert not (tmp_path / "cause_2").exists()
    np.testing.assert_allclose(type(model).load_state(tmp_path).cif_matrix(X, HORIZONS), cif, rtol=0, atol=1e-12)


@pytest.mark.parametrize("family", list(SPECS))
def test_missing_values_are_refused_unless_the_family_handles_them(family: str, data: tuple) -> None:
    X, y = data
    holes = X.copy()
    holes.iloc[::7, 1] = np.nan
    model = small(family)
    assert model.handles_missing == SPECS[family].estimator(**SMALL.get(family, {})).handles_missing
    if not model.handles_missing:
        with pytest.raises(UserInputError, match="does not handle missing values"):
            model.fit(holes, y)
        with pytest.raises(UserInputError, match="does not handle missing values"):
            model.fit(X, y).cif_matrix(holes, [1.0])
        return
    cif = model.fit(holes, y).cif_matrix(holes, HORIZONS)
    assert np.isfinite(cif).all()
    assert (cif.sum(axis=0) <= 1 + 1e-12).all()
