"""Train's global explanations on a large cohort read stated samples, and say so.

Above ``EXPLAIN_SAMPLE`` patients permutation importance reads that many; above
``SHAP_LARGE_COHORT`` SHAP reads ``SHAP_SAMPLE_LARGE`` of them (the limits are made small here so
the test is quick); the figures' titles give each number. Below the limits nothing is sampled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import riskmodel.workflow.develop as develop
from riskmodel.models import CoxPH
from riskmodel.stats import survival_array


def fitted(n: int) -> tuple[Pipeline, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(n)
    X = pd.DataFrame(rng.normal(size=(n, 2)), columns=["d90_gy", "age_years"])
    time = rng.exponential(10 * np.exp(-X["d90_gy"].to_numpy())) + 0.1
    y = survival_array(rng.random(n) < 0.7, time)
    pipe = Pipeline([("features", StandardScaler().set_output(transform="pandas")), ("model", CoxPH(penalty=0.1))])
    return pipe.fit(X, y), X, y


@pytest.mark.parametrize(("n", "shap_n", "perm_n"), [(50, 50, 50), (90, 60, 60), (150, 20, 60)])
def test_shap_and_permutation_importance_read_the_stated_samples(
    monkeypatch: pytest.MonkeyPatch, n: int, shap_n: int, perm_n: int
) -> None:
    monkeypatch.setattr(develop, "EXPLAIN_SAMPLE", 60)
    monkeypatch.setattr(develop, "SHAP_LARGE_COHORT", 100)
    monkeypatch.setattr(develop, "SHAP_SAMPLE_LARGE", 20)
    seen: dict[str, Any] = {}
    real_explain, real_importance = develop.explain, develop.permutation_importance

    def explain(model: Any, X: Any) -> Any:
        seen["shap"] = X
        return real_explain(model, X)

    def importance(estimator: Any, Z: Any, y: Any, names: Any, seed: int) -> Any:
        seen["perm"] = (np.asarray(Z), y)
        return real_importance(estimator, Z, y, names, seed=seed)

    monkeypatch.setattr(develop, "explain", explain)
    monkeypatch.setattr(develop, "permutation_importance", importance)

    def figures(explanation: Any, X: Any, features: Any, imp: Any, label: str, importance_label: Any = None) -> Any:
        # the titles shap_global.explanation_figures gives these labels (the plain scaler has no clinical labels)
        assert len(X) == len(explanation.values)
        return {"shap": f"{label}: SHAP", "perm": f"{importance_label or label}: permutation importance"}, ""

    monkeypatch.setattr(develop, "global_figures", figures)
    pipe, X, y = fitted(n)
    out = develop.global_explanation(pipe, X, y, "OS cox", seed=3)
    Z, y_perm = seen["perm"]
    assert len(seen["shap"]) == shap_n
    assert len(Z) == len(y_perm) == perm_n
    # the SHAP patients are among the permutation patients, and Z is their model features
    assert set(seen["shap"].index) <= set(X.index[np.isin(y, y_perm)])
    assert np.allclose(Z, pipe[:-1].transform(X.iloc[np.flatnonzero(np.isin(y, y_perm))]))
    titles = " ".join(str(v) for v in out.figures.values())
    if shap_n < n:
        assert f"({shap_n} sampled patients)" in titles
    if perm_n < n:
        assert f"({perm_n} sampled patients): permutation importance" in titles
