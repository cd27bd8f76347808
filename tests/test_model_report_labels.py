"""The model report speaks in clinical labels: no encoded column name in its text, tables or figures.

A small Cox model on the study's features with one-hot stage (so one categorical has several
columns) and the log lesion volume is explained as ``riskmodel train`` explains it
(:func:`riskmodel.workflow.develop.global_explanation`); its report is rendered with every section
that names a column (model features, coefficients, the unpenalised table, the nomogram, the
dose-response, the explanations). Every model column whose clinical label differs from its name
must be absent, as a whole word, from the report's text (images stripped) and from every text of
every figure (titles, axis labels, tick labels, legends), and the clinical labels must be there.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from riskmodel.cohort import survival_data
from riskmodel.cohort.synthetic import generate
from riskmodel.features import ClinicalFeatures
from riskmodel.features.labels import column_label, column_labels
from riskmodel.models import CoxPH
from riskmodel.reporting.model_dose import model_dose_html, partial_effect_plot
from riskmodel.reporting.model_report import render
from riskmodel.reporting.nomogram import nomogram_table
from riskmodel.reporting.nomogram_plot import nomogram_figure, nomogram_html
from riskmodel.reporting.shap_global import clinical_explanation, explanation_figures
from riskmodel.scoring import RiskModel
from riskmodel.validation.partial_effect import partial_effect
from riskmodel.workflow.develop import global_explanation
from tests.test_model_report import facts


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    sd = survival_data(generate(160, seed=8), "lc", landmark_months=3, feature_columns=["response_3mo"])
    features = ClinicalFeatures("study", landmark_months=3, stage_coding="onehot").fit(sd.X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cox = CoxPH(penalty=0.1).fit(features.transform(sd.X), sd.y)
        free = CoxPH(penalty=0.0).fit(features.transform(sd.X), sd.y)
    model = RiskModel.from_training(
        endpoint="lc",
        family="cox",
        experiment="t",
        landmark_months=3,
        horizons=[6.0, 12.0],
        features=features,
        estimator=cox,
        X=sd.X,
    )
    names = [str(n) for n in features.get_feature_names_out()]
    inputs = list(features.input_columns())
    pipeline = Pipeline([("features", features), ("model", cox)])
    explained = global_explanation(pipeline, sd.X, sd.y, "LC", seed=1)
    return {
        "pipeline": pipeline,
        "model": model,
        "X": sd.X,
        "y": sd.y,
        "names": names,
        "inputs": inputs,
        "free": free,
        "ex": explained,
    }


def _encoded(names: list[str], inputs: list[str]) -> list[str]:
    return [n for n in names if column_label(n, inputs) != n]


def _absent(text: str, encoded: list[str], where: str) -> None:
    found = [n for n in encoded if re.search(rf"(?<![\w.]){re.escape(n)}(?![\w])", text)]
    assert not found, f"{where}: encoded names {found}"


def _figure_text(fig: Any) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))


def test_every_column_has_a_clinical_label_that_differs_from_its_encoding(trained: dict[str, Any]) -> None:
    labels = {n: column_label(n, trained["inputs"]) for n in trained["names"]}
    assert labels["log_lesion_volume_cm3"] == "lesion volume (cm³, log scale)"
    assert labels["d90_gy"] == "D90 (Gy)"
    assert labels["response_cr_pr"] == "3-month response CR/PR"
    assert any(n.startswith("t_stage_") for n in labels)  # one-hot stage: several columns of one input
    assert all(labels[n].startswith("T stage ") for n in labels if n.startswith("t_stage_"))
    assert _encoded(trained["names"], trained["inputs"]) == trained["names"]  # every one is an encoding


def test_the_rendered_report_names_no_encoding(trained: dict[str, Any]) -> None:
    model, names, inputs = trained["model"], trained["names"], trained["inputs"]
    cox = model.estimator
    labels, input_labels = column_labels(names, inputs)
    report = replace(
        facts(),
        endpoint="lc",
        inputs=inputs,
        features=names,
        cox_coefficients=pd.DataFrame(
            {"coef": cox.coef_, "hr": np.exp(cox.coef_)}, index=pd.Index(names, name="feature")
        ),
        cox_unpenalised=trained["free"].hazard_ratios_,
        baseline_survival={6.0: 0.9},
        nomogram=nomogram_html(model),
        dose_response=model_dose_html(model, trained["X"], trained["y"]),
        explanations=trained["ex"].report_html,
        labels=labels,
        input_labels=input_labels,
    )
    page = render(report)
    text = re.sub(r'src="data:image/png;base64,[^"]+"', 'src=""', page)
    _absent(text, _encoded(names, inputs), "model report")
    for label in (
        "D90 (Gy)",
        "lesion volume (cm³, log scale)",
        "3-month response CR/PR",
        "recurrence interval (months)",
    ):
        assert label in text, label
    assert "Dose-response: partial effects on the log hazard" in text
    assert "Explanations (SHAP of the risk score, in-sample)" in text
    assert text.count("<img") == 1 + 1 + len(trained["ex"].figures)  # nomogram, dose-response, explanations


def test_every_figure_of_the_report_names_no_encoding(trained: dict[str, Any]) -> None:
    """Titles, axis and tick labels, legends of the SHAP summary, dependence, importance, nomogram
    and dose-response figures; a dependence plot of lesion volume is in cm³ on a log axis."""
    model, names, inputs, X, y = trained["model"], trained["names"], trained["inputs"], trained["X"], trained["y"]
    from riskmodel.explain import explain

    explanation = explain(trained["pipeline"], X)
    importance = trained["ex"].importance
    drawn = explanation_figures(explanation, X, inputs, importance, "LC", None)
    assert "plots/shap_dependence_lesion_volume_cm3.png" in drawn
    effect = partial_effect(model.features, model.estimator, X, "d90_gy", y)
    from riskmodel.reporting.dose_section import binned_rug

    figures = {name: fig for name, (fig, _) in drawn.items()}
    figures["nomogram"] = nomogram_figure(nomogram_table(model))
    figures["dose"] = partial_effect_plot(
        effect, binned_rug(X["d90_gy"]), "LC: partial effect of D90", "D90 (Gy)", "log HR"
    )
    volume = figures["plots/shap_dependence_lesion_volume_cm3.png"].axes[0]
    assert volume.get_xscale() == "log"
    assert "lesion volume (cm³" in volume.get_xlabel()
    x = volume.collections[0].get_offsets()[:, 0]
    np.testing.assert_allclose(np.sort(x), np.sort(X["lesion_volume_cm3"].to_numpy(float)))  # cm³, not its log
    beeswarm = _figure_text(figures["plots/shap_beeswarm.png"])
    assert "T stage" in beeswarm
    assert "lesion volume (cm³)" in beeswarm
    for name, fig in figures.items():
        _absent(_figure_text(fig), _encoded(names, inputs), name)
        matplotlib.pyplot.close(fig)


def test_one_hot_columns_are_one_variable_whose_shap_is_their_sum(trained: dict[str, Any]) -> None:
    names, inputs, X = trained["names"], trained["inputs"], trained["X"]
    from riskmodel.explain import explain

    explanation = explain(trained["pipeline"], X)
    grouped = clinical_explanation(explanation, X, inputs)
    stage = [j for j, n in enumerate(names) if n.startswith("t_stage_")]
    k = list(grouped.feature_names).index("T stage")
    np.testing.assert_allclose(grouped.values[:, k], explanation.values[:, stage].sum(axis=1), atol=1e-12)
    np.testing.assert_allclose(grouped.values.sum(axis=1), explanation.values.sum(axis=1), atol=1e-12)  # additivity
    assert len(grouped.feature_names) == len(inputs)
