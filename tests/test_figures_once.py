"""The global explanation figures laid out once (``figure_png(..., one_layout=True)``): the same
PNG bytes as ``savefig(bbox_inches="tight")``, which lays each figure out twice, for every
figure of a Cox, a forest and a boosted model (beeswarm, bar, importance, dependence plots)."""

from __future__ import annotations

import warnings

import pytest

from riskmodel.cohort import Cohort, survival_data
from riskmodel.explain import explain, permutation_importance
from riskmodel.features import ClinicalFeatures
from riskmodel.models.registry import build_family
from riskmodel.reporting.plots import figure_png, figure_pngs
from riskmodel.reporting.shap_global import explanation_figures


@pytest.mark.slow
@pytest.mark.parametrize("family", ["cox", "rsf", "gbm"])
def test_each_explanation_figure_laid_out_once_has_the_bytes_of_the_two_layouts(bundled: Cohort, family: str) -> None:
    from sklearn.pipeline import Pipeline

    data = survival_data(bundled, "os", landmark_months=3, feature_columns=["response_3mo"])
    params = {"rsf": {"n_estimators": 20}, "gbm": {"n_estimators": 20}}.get(family, {})
    model = build_family(family, params, 0, competing=False)
    pipe = Pipeline([("features", ClinicalFeatures("study", landmark_months=3)), ("model", model)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = pipe.fit(data.X, data.y)
        explanation = explain(fitted, data.X)
    importance = permutation_importance(fitted[-1], explanation.data, data.y, list(explanation.feature_names))
    inputs = [str(c) for c in fitted[0].input_columns()]
    twice = explanation_figures(explanation, data.X, inputs, importance, "OS", None)
    once = explanation_figures(explanation, data.X, inputs, importance, "OS", None)
    assert len(twice) >= 5
    once_png = figure_pngs({name: fig for name, (fig, _) in once.items()}, one_layout=True)
    for name, (fig, _) in twice.items():
        assert figure_png(fig) == once_png[name], name
