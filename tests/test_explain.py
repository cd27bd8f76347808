"""SHAP explanations: local accuracy on every family, and agreement with independent references.

References: Shapley values enumerated here from the path-dependent value function of the fitted
scikit-survival trees (read straight from ``tree_``, not through riskmodel's conversion);
xgboost's own ``pred_contribs``; and shap's ``Exact`` explainer for interventional values.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import shap
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from riskmodel.cohort import load_bundled, survival_data
from riskmodel.cohort.synthetic import generate
from riskmodel.config import load_experiment
from riskmodel.errors import UserInputError
from riskmodel.explain import explain, model_output
from riskmodel.features import ClinicalFeatures
from riskmodel.models import CoxPH, GradientBoostingSurvival, SurvivalForest, build_estimator
from riskmodel.scoring import RiskModel
from riskmodel.workflow import make_pipeline
from tests.conftest import REPO
from tests.models.conftest import VARIANTS


@pytest.fixture(scope="module")
def bundled_models() -> dict[str, tuple[RiskModel, pd.DataFrame]]:
    """Each family of the default experiment, trained here on the bundled cohort's OS."""
    config = load_experiment(REPO / "experiments" / "default.yaml")
    data = survival_data(load_bundled(), "os", landmark_months=config.landmark_months, feature_columns=["response_3mo"])
    out = {}
    for family, params in config.models.enabled().items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe = make_pipeline(config, build_estimator(family, params.model_dump(), config.seed)).fit(data.X, data.y)
        model = RiskModel.from_training(
            endpoint="os",
            family=family,
            experiment="t",
            landmark_months=config.landmark_months,
            horizons=[6, 12],
            features=pipe[0],
            estimator=pipe[-1],
            X=data.X,
        )
        out[family] = (model, data.X)
    return out


@pytest.mark.parametrize("family", ["cox", "rsf", "gbm"])
@pytest.mark.parametrize("output", ["risk", ("survival", 12.0)])
def test_local_accuracy_on_the_bundled_cohort(
    bundled_models: dict[str, tuple[RiskModel, pd.DataFrame]], family: str, output: object
) -> None:
    model, X = bundled_models[family]
    e = model.explain(X, output=output)
    assert e.values.shape == (len(X), len(model.features.get_feature_names_out()))
    expected = model.predict_risk(X) if output == "risk" else model.predict_survival(X, [12.0]).to_numpy()[:, 0]
    np.testing.assert_allclose(e.base_values + e.values.sum(axis=1), expected, rtol=0, atol=1e-6)
    assert e.method.startswith("exact")
    assert isinstance(e, shap.Explanation)


@pytest.fixture(scope="module")
def synthetic_cohort() -> tuple[pd.DataFrame, np.ndarray]:
    data = survival_data(generate(400, seed=21), "os", landmark_months=3, feature_columns=["response_3mo"])
    return data.X, data.y


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("output", ["risk", ("survival", 12.0)], ids=["risk", "S12"])
@pytest.mark.parametrize("form", ["pipeline", "estimator"])
def test_a_patients_shap_values_do_not_depend_on_who_else_is_explained(
    synthetic_cohort: tuple[pd.DataFrame, np.ndarray], name: str, output: object, form: str
) -> None:
    cohort, y = synthetic_cohort
    features = ClinicalFeatures("study", landmark_months=3)
    if form == "pipeline":
        model, X = Pipeline([("features", features), ("model", VARIANTS[name]())]).fit(cohort, y), cohort
    else:
        X = features.set_output(transform="pandas").fit_transform(cohort)
        model = VARIANTS[name]().fit(X, y)
    batch = explain(model, X.iloc[:30], output=output)
    for i in (0, 7, 29):
        alone = explain(model, X.iloc[[i]], output=output)
        np.testing.assert_allclose(alone.values[0], batch.values[i], rtol=0, atol=1e-12)
        np.testing.assert_allclose(alone.base_values[0], batch.base_values[i], rtol=0, atol=1e-12)
    if form == "estimator":  # the documented reference: the training mean of each model feature
        mean = explain(model, X.iloc[:30], output=output, background=X.mean().to_frame().T)
        np.testing.assert_allclose(batch.values, mean.values, rtol=0, atol=1e-12)


def _path_dependent_value(tree: object, x: np.ndarray, coalition: set[int], leaf: np.ndarray) -> float:
    """E[f | x_S] under the tree's own cover distribution (Lundberg et al. 2020, Alg. 1)."""
    t = tree.tree_  # type: ignore[attr-defined]

    def walk(node: int) -> float:
        if t.children_left[node] < 0:
            return float(leaf[node])
        left, right = t.children_left[node], t.children_right[node]
        if t.feature[node] in coalition:
            value = x[t.feature[node]]
            if np.isnan(value):  # a missing value takes the side the tree stored for it
                return walk(left if t.missing_go_to_left[node] else right)
            return walk(left if np.float32(value) <= t.threshold[node] else right)
        w_left, w_right = t.weighted_n_node_samples[left], t.weighted_n_node_samples[right]
        return (w_left * walk(left) + w_right * walk(right)) / (w_left + w_right)

    return walk(0)


def _enumerated_shapley(value: object, p: int) -> np.ndarray:
    phi = np.zeros(p)
    for j in range(p):
        others = [i for i in range(p) if i != j]
        for size in range(p):
            weight = math.factorial(size) * math.factorial(p - size - 1) / math.factorial(p)
            for subset in itertools.combinations(others, size):
                s = set(subset)
                phi[j] += weight * (value(s | {j}) - value(s))  # type: ignore[operator]
    return phi


@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
@pytest.mark.parametrize("output", ["risk", ("survival", 12.0)])
def test_forest_treeshap_equals_enumerated_path_dependent_shapley_values(output: object, missing: bool) -> None:
    frame = generate(400, seed=4)
    data = survival_data(frame, "os", landmark_months=0)
    X = data.X[["d90_gy", "recurrence_interval_months", "lesion_volume_cm3", "age_years", "kps"]].astype(float)
    if missing:  # a fifth of D90 and of the volumes missing, among them the first patients explained
        lost = np.random.default_rng(0).random((len(X), 2)) < 0.2
        lost[:3] = [True, False], [False, True], [True, True]
        X[["d90_gy", "lesion_volume_cm3"]] = X[["d90_gy", "lesion_volume_cm3"]].mask(lost)
    forest = SurvivalForest(n_estimators=5, min_samples_leaf=10, max_depth=5, random_state=1).fit(X, data.y)
    rsf = clone(forest).sksurv_forest(X, data.y)  # scikit-survival's own trees, as the forest's fit grew them
    if output == "risk":
        leaves = [e.tree_.value[:, rsf.is_event_time_, 0].sum(axis=1) for e in rsf.estimators_]
    else:
        col = np.searchsorted(rsf.unique_times_, 12.0, side="right") - 1
        leaves = [e.tree_.value[:, col, 1] for e in rsf.estimators_]
    e = explain(forest, X.iloc[:6], output=output)
    for i in range(6):
        x = X.to_numpy()[i]

        def value(s: set[int], x: np.ndarray = x) -> float:
            trees = zip(rsf.estimators_, leaves, strict=True)
            return float(np.mean([_path_dependent_value(t, x, s, lf) for t, lf in trees]))

        np.testing.assert_allclose(e.values[i], _enumerated_shapley(value, 5), rtol=0, atol=1e-9)
        assert e.base_values[i] == pytest.approx(value(set()), abs=1e-9)


@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
def test_xgboost_explanation_matches_its_native_contributions(missing: bool) -> None:
    import xgboost as xgb

    data = survival_data(generate(1500, seed=2), "os", landmark_months=0)
    X = data.X[["d90_gy", "recurrence_interval_months", "lesion_volume_cm3", "age_years"]].astype(float)
    if missing:  # xgboost's default direction at each split is the tree dicts' children_default
        X = X.mask(np.random.default_rng(1).random(X.shape) < 0.15)
    model = GradientBoostingSurvival(n_estimators=60, max_depth=3).fit(X, data.y)
    e = explain(model, X)
    native = model.booster_.predict(xgb.DMatrix(X.to_numpy()), pred_contribs=True)
    np.testing.assert_allclose(e.values, native[:, :-1], rtol=0, atol=2e-5)  # float32 precision
    np.testing.assert_allclose(e.base_values + e.values.sum(axis=1), model.predict_risk(X), rtol=0, atol=1e-10)


def test_interventional_values_equal_shaps_exact_explainer() -> None:
    data = survival_data(generate(300, seed=3), "os", landmark_months=0)
    X = data.X[["d90_gy", "recurrence_interval_months", "lesion_volume_cm3", "age_years"]].astype(float)
    cox = CoxPH(penalty=0.1).fit(X, data.y)
    background = X.iloc[:20]
    ours = explain(cox, X.iloc[20:26], output=("survival", 12.0), background=background)

    def f(A: np.ndarray) -> np.ndarray:
        return model_output(cox, A, 12.0)

    reference = shap.explainers.Exact(f, shap.maskers.Independent(background.to_numpy(), max_samples=20))
    theirs = reference(X.iloc[20:26].to_numpy())
    np.testing.assert_allclose(ours.values, theirs.values, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.base_values, theirs.base_values, rtol=0, atol=1e-10)
    # for the linear predictor, linear SHAP against the mean is the interventional value itself
    linear = explain(cox, X.iloc[20:26], background=background)
    exact = shap.explainers.Exact(cox.predict_risk, shap.maskers.Independent(background.to_numpy(), max_samples=20))
    np.testing.assert_allclose(linear.values, exact(X.iloc[20:26].to_numpy()).values, rtol=0, atol=1e-10)


def test_cox_what_if_follows_the_sign_of_the_d90_coefficient(
    bundled_models: dict[str, tuple[RiskModel, pd.DataFrame]],
) -> None:
    model, X = bundled_models["cox"]
    names = list(model.features.get_feature_names_out())
    coef = model.estimator.coef_[names.index("d90_gy")]  # type: ignore[attr-defined]
    sweep = model.what_if(X.iloc[:3], "d90_gy", np.arange(60, 161, 10))
    assert len(sweep) == 3 * 11
    for _, rows in sweep.groupby("row"):
        steps = np.diff(rows.sort_values("value")["S_12"].to_numpy())
        assert (np.sign(steps) == -np.sign(coef)).all()  # a protective dose raises S(12), step by step
        assert (np.sign(np.diff(rows.sort_values("value")["risk_score"].to_numpy())) == np.sign(coef)).all()


def test_clear_errors(bundled_models: dict[str, tuple[RiskModel, pd.DataFrame]]) -> None:
    model, X = bundled_models["rsf"]
    with pytest.raises(UserInputError, match="'risk' or \\('survival', t\\)"):
        model.explain(X, output="hazard")
    with pytest.raises(UserInputError, match="beyond the training follow-up"):
        model.explain(X, output=("survival", 500))
    with pytest.raises(UserInputError, match="does not read"):
        model.what_if(X, "skin_d2cc_gy", [1.0])
    data = survival_data(generate(200, seed=1), "os", landmark_months=0)
    Xs = data.X[["d90_gy", "age_years"]].astype(float)
    lean = SurvivalForest(n_estimators=3, low_memory=True).fit(Xs, data.y)
    assert explain(lean, Xs).values.shape == (len(Xs), 2)
    with pytest.raises(UserInputError, match="low_memory"):
        explain(lean, Xs, output=("survival", 6))
