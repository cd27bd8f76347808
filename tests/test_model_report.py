"""The TRIPOD+AI model report: limitations follow from the facts, and the page holds every section."""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import pytest

from riskmodel.reporting.model_report import ModelFacts, limitations, render
from riskmodel.stats.samplesize import SampleSize
from riskmodel.validation import Validation


def _validation(slope: float, c_low: float, c_high: float, failed: int = 0) -> Validation:
    table = pd.DataFrame(
        {
            "apparent": [0.8, 1.0],
            "optimism": [0.1, 1 - slope],
            "corrected": [0.7, slope],
            "ci_low": [c_low, slope - 0.3],
            "ci_high": [c_high, slope + 0.3],
            "resamples": [200 - failed, 200 - failed],
        },
        index=pd.Index(["harrell_c", "calibration_slope"], name="metric"),
    )
    return Validation(table, pd.DataFrame(), 200, failed, [f"resample {i}: no event" for i in range(failed)])


def facts(**changes: object) -> ModelFacts:
    size = SampleSize(
        n=200,
        events=150,
        parameters=5,
        r2_cs=0.2,
        max_r2_cs=0.9,
        required_n={"shrinkage": 150},
        expected_shrinkage=0.95,
    )
    base = ModelFacts(
        experiment="x",
        endpoint="os",
        family="cox",
        version="0",
        commit="abc",
        source="cohort.csv",
        years="2015 to 2018",
        n_patients=200,
        n_events=150,
        landmark_months=0.0,
        landmark_note=None,
        time_origin="implant",
        horizons=[12.0],
        left_out_horizons=[],
        feature_set="published",
        inputs=["d90_gy"],
        features=["d90_ge_110"],
        params={"penalty": 0.1},
        size=size,
        cv=pd.DataFrame({"mean": [0.7], "sd": [0.02], "folds_with_value": [10]}, index=["harrell_c"]),
        cv_description="cv",
        validation=_validation(0.97, 0.65, 0.75),
        at_risk={12.0: 80},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_an_adequate_run_states_only_the_standing_limitation() -> None:
    assert limitations(facts()) == [
        "Internal validation only: no external or temporal validation. Not for clinical decisions before "
        "validation on an independent cohort."
    ]


def test_each_fact_brings_its_own_limitation() -> None:
    small = SampleSize(
        n=36, events=10, parameters=4, r2_cs=0.3, max_r2_cs=0.9, required_n={"shrinkage": 120}, expected_shrinkage=0.6
    )
    text = " | ".join(
        limitations(
            facts(
                size=small,
                n_patients=36,
                n_events=10,
                family="rsf",
                validation=_validation(0.55, 0.45, 0.8, failed=30),
                at_risk={12.0: 4},
                left_out_horizons=[24.0],
                landmark_months=3.0,
                d_calibration_p=0.01,
                reconstructed=True,
            )
        )
    )
    for expected in (
        "EPV 2.5 (10 events, 4 candidate parameters): severe overfitting risk",
        "36 patients against 120 required; expected shrinkage 0.60",
        "calibration slope 0.55 (approx. 95% interval 0.25 to 0.85)",
        "interval runs from 0.45 to 0.80",
        "30 of 200 bootstrap resamples failed",
        "under-corrects tree ensembles",
        "Only 4 patients are still followed at 12 months",
        "Horizon(s) 24 months",
        "D-calibration rejects",
        "3-month landmark",
        "reconstruction",
    ):
        assert expected in text, expected


def test_no_net_benefit_is_called_out() -> None:
    flat = pd.DataFrame({"threshold": [0.1, 0.2], "model": [0.05, -0.1], "treat_all": [0.3, 0.1], "treat_none": 0.0})
    assert any("no demonstrated clinical utility" in x for x in limitations(facts(decision_curves={12.0: flat})))
    useful = flat.assign(model=[0.35, 0.12])
    assert not any("clinical utility" in x for x in limitations(facts(decision_curves={12.0: useful})))


@pytest.mark.parametrize("family", ["cox", "gbm"])
def test_the_page_has_every_section_and_escapes_text(family: str) -> None:
    coefficients = pd.DataFrame({"coef": [0.5], "hr": [math.exp(0.5)]}, index=pd.Index(["d90_ge_110"], name="feature"))
    page = render(
        facts(
            family=family,
            cox_coefficients=coefficients if family == "cox" else None,
            baseline_survival={12.0: 0.61} if family == "cox" else {},
            notes=["<script>alert(1)</script>"],
        )
    )
    for heading in (
        "Limitations",
        "Source of data and participants",
        "Outcome",
        "Predictors and missing data",
        "Sample size",
        "Model specification",
        "Internal validation",
        "Items only the authors can report",
    ):
        assert f"<h2>{heading}" in page, heading
    assert "2015 to 2018" in page
    assert "<script>alert" not in page
    assert "&lt;script&gt;" in page
    assert ("S₀(12) = 0.6100" in page) == (family == "cox")
