"""Model files and pages safe to share (issue 17, part 6): ages above 89 are "90+", and a stored
training range runs from the 5th smallest to the 5th largest value, never one patient's extreme."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import survival_data
from riskmodel.cohort.declaration import CohortDeclaration, CovariateDeclaration
from riskmodel.cohort.synthetic import generate
from riskmodel.features import ClinicalFeatures
from riskmodel.features.safe_harbor import is_age, shared_range
from riskmodel.models import CoxPH
from riskmodel.reporting.declared_tables import characteristics_declared
from riskmodel.reporting.survival_tables import characteristics
from riskmodel.scoring import RiskModel

OLDEST = [91.0, 93.0, 95.0, 96.0, 97.0]  # five patients over 89: the 5th largest age is 91


def _cohort(oldest: list[float]) -> pd.DataFrame:
    data = generate(120, 7)
    data["age_years"] = np.linspace(40, 85, len(data)).round(1)
    data.loc[data.index[: len(oldest)], "age_years"] = oldest
    return data


def _model(data: pd.DataFrame) -> tuple[RiskModel, pd.DataFrame]:
    sd = survival_data(data, "os", feature_columns=["age_years", "d90_gy"])
    features = ClinicalFeatures(["age", "d90"]).fit(sd.X)
    model = RiskModel.from_training(
        endpoint="os",
        family="cox",
        experiment="safe-harbor",
        landmark_months=0,
        horizons=[6.0],
        features=features,
        estimator=CoxPH().fit(features.transform(sd.X), sd.y),
        X=sd.X,
    )
    return model, sd.X


def _patients(ages: list[float], d90: float = 100.0) -> pd.DataFrame:
    new = generate(len(ages), 11).drop(columns=["os_months", "os_event", "lc_months", "lc_event"])
    new = new.reset_index(drop=True)
    new["age_years"], new["d90_gy"] = ages, d90
    return new


def _numbers(value: object) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [float(value)] if isinstance(value, int | float) and not isinstance(value, bool) else []


def test_a_stored_range_runs_from_the_5th_smallest_to_the_5th_largest_value() -> None:
    model, X = _model(_cohort(OLDEST))
    d90 = np.sort(X["d90_gy"].to_numpy(float))
    assert model.numeric_ranges["d90_gy"] == (d90[4], d90[-5])
    assert model.numeric_ranges["d90_gy"] != (d90.min(), d90.max())


def test_an_age_above_89_is_stored_as_90_plus_in_model_json_and_read_back(tmp_path: Path) -> None:
    model, _ = _model(_cohort(OLDEST))
    assert model.numeric_ranges["age_years"][1] == 90.0  # the 5th largest age (91), capped
    folder = model.save(tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    assert meta["numeric_ranges"]["age_years"][1] == "90+"
    assert not set(_numbers(meta)) & set(OLDEST)  # no old patient's exact age, anywhere in model.json
    assert RiskModel.load(folder).numeric_ranges == model.numeric_ranges


def test_a_patient_aged_95_is_inside_a_range_that_ends_at_90_plus() -> None:
    model, _ = _model(_cohort(OLDEST))
    records = model.score(_patients([95.0, 62.0]))
    assert not [f for r in records for f in r["flags"] if f.startswith("age_years")]


def test_a_patient_aged_95_beyond_a_younger_range_is_flagged_as_90_plus_with_honest_wording() -> None:
    model, X = _model(_cohort([]))
    ages = np.sort(X["age_years"].to_numpy(float))
    flags = model.score(_patients([95.0]))[0]["flags"]
    (flag,) = [f for f in flags if f.startswith("age_years")]
    assert flag == (
        "age_years 90+ is above the middle of the training data (5th smallest to 5th largest value): "
        f"{ages[4]:g}-{ages[-5]:g} years"
    )
    assert "95" not in json.dumps(flags)


def test_fewer_than_10_training_values_store_no_range_and_raise_no_range_flag() -> None:
    assert shared_range([1, 2, 3, 4, 5, 6, 7, 8, 9]) is None
    assert shared_range([*range(9), np.nan, np.nan]) is None
    assert shared_range(range(10)) == (4.0, 5.0)
    data = _cohort([])
    data.loc[data.index[10:], "age_years"] = np.nan  # only 10 patients have an age ...
    data = data.dropna(subset=["age_years"]).iloc[:9]  # ... and 9 are kept
    sd = survival_data(data, "os", feature_columns=["age_years"])
    assert shared_range(sd.X["age_years"], age=True) is None


def test_the_characteristics_table_shows_an_age_above_89_as_90_plus() -> None:
    table = characteristics(_cohort(OLDEST))
    value = table.set_index("characteristic").loc["age_years", "value"]
    assert value.endswith("-90+)")
    assert "97" not in value


def _declaration(**age: object) -> CohortDeclaration:
    return CohortDeclaration.model_validate(
        {
            "id": "pid",
            "covariates": [
                {"name": "age", "column": "Age", "kind": "numeric", "unit": "years"},
                {"name": "years_old", "column": "Y", "kind": "numeric", "unit": "years", **age},
                {"name": "stage", "column": "Stage", "kind": "numeric", "unit": "years"},
                {"name": "PatientAge", "column": "PA", "kind": "numeric", "unit": "months"},
            ],
            "endpoints": [{"name": "os", "time": "T", "time_unit": "months", "event": "E", "event_codes": [1]}],
        }
    )


def test_a_declared_age_is_numeric_in_years_named_age_or_declared_phi_age() -> None:
    plain, flagged = _declaration(), _declaration(phi="age")
    assert [is_age(c.name, plain) for c in plain.covariates] == [True, False, False, False]
    assert [is_age(c.name, flagged) for c in flagged.covariates] == [True, True, False, False]


def test_phi_age_is_refused_on_a_categorical_covariate() -> None:
    with pytest.raises(ValueError, match="phi: age applies to numeric covariates only"):
        CovariateDeclaration.model_validate(
            {"name": "age", "column": "A", "kind": "categorical", "levels": ["a", "b"], "phi": "age"}
        )


def test_the_declared_characteristics_table_shows_ages_above_89_as_90_plus() -> None:
    declaration = _declaration()
    data = pd.DataFrame({"age": [40.0, 50, 60, 70, 92, 97], "years_old": [91.0] * 6})
    table = characteristics_declared(data, declaration.covariates[:2])
    text = table.to_string()
    assert "40-90+" in text
    assert "97" not in text
    assert "92" not in text
    assert "91-91" in text  # years_old is not an age without phi: age


def test_a_patient_page_shows_an_age_of_95_as_90_plus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from riskmodel.reporting import patient_report
    from riskmodel.reporting.patient_report import write_patient_reports

    drawn: list[object] = []
    waterfall = patient_report.shap_waterfall

    def spy(explanation: object, title: str) -> object:
        drawn.append(explanation)
        return waterfall(explanation, title)

    monkeypatch.setattr(patient_report, "shap_waterfall", spy)
    model, _ = _model(_cohort([]))
    patients = _patients([95.0])
    patients["patient_id"] = ["P-0001"]
    (page,) = write_patient_reports([model], patients, tmp_path / "pages")
    text = page.read_text()
    row = re.search(r"<td>age</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>", text)
    assert row is not None
    value, _training, flag = row.groups()
    assert value == "90+ years"
    assert flag.startswith("above the middle of the training data")
    assert not re.search(r"(?<![\d.])95(?![\d%])", re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text))
    # the SHAP waterfalls label the age feature "90+" too (risk score and S(t)), by its clinical name
    assert [[n for n in e.feature_names if n.startswith("age")] for e in drawn] == [["age 90+ years"]] * 2
