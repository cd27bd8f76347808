"""Missing values: the families that declare ``handles_missing`` take NaN end to end, the others
refuse it by name.

References: xgboost's own ``Booster.predict``; the forest's trees walked here from ``tree_`` (not
through scikit-survival's ``predict``); riskmodel's log-rank χ², checked against R's ``survdiff``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils import get_tags
from sksurv.tree import SurvivalTree

from riskmodel.errors import UserInputError
from riskmodel.explain import explain
from riskmodel.models import SurvivalEstimator
from riskmodel.stats import survival_array
from riskmodel.stats.logrank import logrank_chi2
from tests.models.conftest import VARIANTS

HORIZONS = [0.0, 3.0, 6.0, 12.0]
# what each variant declares: xgboost and scikit-survival's trees take NaN, the rest do not
DECLARED = {"cox": False, "rsf": True, "gbm": True, "gbm-sksurv": False, "rsf-fast": True}
HANDLING = [name for name in VARIANTS if VARIANTS[name]().handles_missing]
REFUSING = [name for name in VARIANTS if not VARIANTS[name]().handles_missing]


def cohort(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Exponential times with log hazard x0 + 0.5·x1 (x2 noise), uniform censoring; then 20 % of x0
    and 10 % of x2 go missing, and the first three patients miss x0."""
    rng = np.random.default_rng(seed)
    X = np.c_[rng.normal(size=n), rng.normal(size=n), rng.uniform(size=n)]
    t = rng.exponential(12 * np.exp(-(X[:, 0] + 0.5 * X[:, 1])))
    c = rng.uniform(0, 36, n)
    X[rng.random(n) < 0.2, 0] = np.nan
    X[:3, 0] = np.nan
    X[rng.random(n) < 0.1, 2] = np.nan
    return pd.DataFrame(X, columns=["x0", "x1", "x2"]), survival_array(t <= c, np.minimum(t, c))


@pytest.fixture(scope="module")
def missing() -> tuple[pd.DataFrame, np.ndarray]:
    return cohort(300, seed=0)


@pytest.fixture(scope="module", params=HANDLING)
def fitted_with_missing(request: pytest.FixtureRequest, missing: tuple) -> SurvivalEstimator:
    X, y = missing
    return VARIANTS[request.param]().fit(X, y)


def test_each_family_declares_what_its_library_supports_and_tells_scikit_learn() -> None:
    for name, make in VARIANTS.items():
        model = make()
        assert model.handles_missing is DECLARED.get(name, model.handles_missing), name
        assert get_tags(model).input_tags.allow_nan is model.handles_missing, name


def test_a_family_that_handles_missing_values_fits_and_predicts_with_them(
    fitted_with_missing: SurvivalEstimator, missing: tuple
) -> None:
    X, y = missing
    risk = fitted_with_missing.predict_risk(X)
    assert np.isfinite(risk).all()
    assert fitted_with_missing.score(X, y) > 0.65  # the observed x1 and x0 still carry the signal
    S = fitted_with_missing.predict_survival(X, HORIZONS).to_numpy()
    assert np.isfinite(S).all()
    assert ((S >= 0) & (S <= 1)).all()
    assert (np.diff(S, axis=1) <= 1e-12).all()
    np.testing.assert_allclose(S[:, 0], 1.0)
    assert np.isfinite(fitted_with_missing.feature_means_).all()  # the observed values' means


@pytest.mark.parametrize("name", HANDLING)
def test_a_model_fitted_on_complete_data_predicts_for_a_patient_with_a_missing_value(name: str, missing: tuple) -> None:
    X, y = missing
    complete = X.fillna(0.0)
    model = VARIANTS[name]().fit(complete, y)
    assert np.isfinite(model.predict_risk(X)).all()
    assert np.isfinite(model.predict_survival(X, [6.0]).to_numpy()).all()


def test_a_model_with_missing_values_survives_its_files(
    fitted_with_missing: SurvivalEstimator, missing: tuple, tmp_path: Path
) -> None:
    X, _ = missing
    fitted_with_missing.save_state(tmp_path)
    loaded = type(fitted_with_missing).load_state(tmp_path)
    # equal up to the order in which the forest's threads sum its trees
    np.testing.assert_allclose(loaded.predict_risk(X), fitted_with_missing.predict_risk(X), rtol=1e-12)
    np.testing.assert_allclose(
        loaded.predict_survival(X, HORIZONS).to_numpy(),
        fitted_with_missing.predict_survival(X, HORIZONS).to_numpy(),
        rtol=1e-12,
    )


@pytest.mark.parametrize("output", ["risk", ("survival", 6.0)], ids=["risk", "S6"])
def test_a_family_that_handles_missing_values_explains_them_with_local_accuracy(
    fitted_with_missing: SurvivalEstimator, missing: tuple, output: object
) -> None:
    X, _ = missing
    rows = X.head(20)  # the first three miss x0
    e = explain(fitted_with_missing, rows, output=output)
    f = (
        fitted_with_missing.predict_risk(rows)
        if output == "risk"
        else fitted_with_missing.predict_survival(rows, [6.0]).to_numpy()[:, 0]
    )
    assert e.method.startswith("exact")
    np.testing.assert_allclose(e.base_values + e.values.sum(axis=1), f, rtol=0, atol=1e-9)
    # reference patients with missing values of their own are reference patients too
    e = explain(fitted_with_missing, rows, output=output, background=X.iloc[20:40])
    np.testing.assert_allclose(e.base_values + e.values.sum(axis=1), f, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", REFUSING)
def test_a_family_that_does_not_handle_missing_values_refuses_them_by_name(name: str, missing: tuple) -> None:
    X, y = missing
    model = VARIANTS[name]()
    name_first = rf"^{type(model).__name__}\b.* does not handle missing values"
    message = name_first + r", but X has NaN for \d+ patient\(s\), in x0, x2; impute them"
    with pytest.raises(UserInputError, match=message):
        model.fit(X, y)
    model.fit(X.fillna(0.0), y)
    with pytest.raises(UserInputError, match=message):
        model.predict_risk(X)
    with pytest.raises(UserInputError, match=message):
        model.predict_survival(X, [6.0])
    with pytest.raises(UserInputError, match=name_first):
        explain(model, X.head(5))
    with pytest.raises(UserInputError, match=name_first):
        explain(model, X.fillna(0.0).head(5), output=("survival", 6.0), background=X.head(20))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_family_refuses_infinite_features(name: str, missing: tuple) -> None:
    X, y = missing
    infinite = X.fillna(0.0)
    infinite.iloc[5, 1] = np.inf
    model = VARIANTS[name]()
    with pytest.raises(UserInputError, match=r"needs finite features, but X has ±inf for 1 patient\(s\), in x1"):
        model.fit(infinite, y)
    model.fit(X.fillna(0.0), y)
    with pytest.raises(UserInputError, match="needs finite features"):
        model.predict_risk(infinite)


def test_xgboost_margin_with_missing_values_is_the_boosters_own(missing: tuple, tmp_path: Path) -> None:
    import xgboost as xgb

    X, y = missing
    model = VARIANTS["gbm"]().fit(X, y)
    own = model.booster_.predict(xgb.DMatrix(X.to_numpy()), output_margin=True).astype(float)
    np.testing.assert_allclose(model.predict_risk(X), own, rtol=0, atol=1e-5)  # xgboost sums in float32
    model.save_state(tmp_path)
    np.testing.assert_allclose(type(model).load_state(tmp_path).predict_risk(X), own, rtol=0, atol=1e-5)
    # a missing x0 is not read as any one observed value: the rows differ from x0 = 0 and x0 = mean
    nan_rows = X["x0"].isna().to_numpy()
    for fill in (0.0, float(X["x0"].mean())):
        filled = model.booster_.predict(xgb.DMatrix(X.fillna({"x0": fill}).to_numpy()), output_margin=True)
        assert not np.allclose(filled[nan_rows], own[nan_rows])


@pytest.mark.parametrize("name", ["rsf", "rsf-fast"])
def test_the_forest_sends_a_missing_value_to_the_side_its_trees_stored(name: str, missing: tuple) -> None:
    X, y = missing
    forest = VARIANTS[name]().fit(X, y)
    rsf = clone(forest).sksurv_forest(X, y)  # scikit-survival's trees as the forest's fit grew them
    Xb = forest._binned(X.to_numpy()).astype(np.float32)  # the forest's own binning, then its float32 features
    risk = np.zeros(len(X))
    for estimator in rsf.estimators_:
        t = estimator.tree_
        leaf_risk = t.value[:, rsf.is_event_time_, 0].sum(axis=1)
        for i, x in enumerate(Xb):
            node = 0
            while t.children_left[node] >= 0:
                v = x[t.feature[node]]
                go_left = bool(t.missing_go_to_left[node]) if np.isnan(v) else v <= t.threshold[node]
                node = t.children_left[node] if go_left else t.children_right[node]
            risk[i] += leaf_risk[node]
    np.testing.assert_allclose(forest.predict_risk(X), risk / len(rsf.estimators_), rtol=1e-10)


def test_a_survival_tree_puts_missing_values_where_the_log_rank_statistic_is_largest() -> None:
    """The root split of scikit-survival's tree (the forest's trees) against every split enumerated
    here, with the missing values on either side, and observed against missing."""
    rng = np.random.default_rng(4)
    n = 200
    x = rng.integers(0, 40, n).astype(float)  # float32-exact values, thresholds halfway between
    lost = rng.random(n) < 0.25
    t = rng.exponential(12 * np.exp(-(0.03 * x + 1.0 * lost)))  # missing: a worse prognosis
    c = rng.uniform(0, 36, n)
    event, time = t <= c, np.minimum(t, c)
    x[lost] = np.nan
    tree = SurvivalTree(max_depth=1, min_samples_leaf=1).fit(x[:, None], survival_array(event, time))

    def chi2(left: np.ndarray) -> float:
        return logrank_chi2(time, event, (~left).astype(int), 2)

    values = np.unique(x[~lost])
    candidates = [(~lost, "observed | missing")]
    for threshold in (values[:-1] + values[1:]) / 2:
        below = ~lost & (x <= threshold)
        candidates += [(below | lost, f"≤ {threshold} and missing"), (below, f"≤ {threshold}")]
    best_left, best = max(candidates, key=lambda cand: chi2(cand[0]))
    nodes = tree.tree_
    threshold, missing_left = nodes.threshold[0], bool(nodes.missing_go_to_left[0])
    observed_left = ~lost & (x <= threshold)
    chosen, flipped = observed_left | (lost & missing_left), observed_left | (lost & (not missing_left))
    assert chi2(chosen) == pytest.approx(chi2(best_left), rel=1e-9), best
    assert chi2(chosen) > chi2(flipped) + 1  # here the side of the missing values matters
