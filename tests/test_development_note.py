"""What the served page, the offline calculator and the patient page say of a model's evidence is
judged from its own development cohort (Riley et al.'s minimum sample size), not from the study
riskmodel started from: a model developed on thousands of patients is not called exploratory, a
small one is, and a model file that predates the record is treated as exploratory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from riskmodel.models import CoxPH
from riskmodel.scoring import RiskModel
from riskmodel.scoring.development import development_record
from riskmodel.serving.app import note_for
from riskmodel.serving.calculator import calculator_spec, write_calculator
from riskmodel.workflow.prepare import design_sample_size
from tests.study_models import declared_model
from tests.test_model_trees import rewrite_manifest

DECLARATION = {
    "id": "pid",
    "covariates": [
        {"name": "age", "column": "Age", "kind": "numeric", "unit": "years"},
        {"name": "dose", "column": "Dose", "kind": "numeric", "unit": "Gy"},
    ],
    "endpoints": [{"name": "os", "time": "T", "time_unit": "months", "event": "Status", "event_codes": [1]}],
}


def _model(n: int, seed: int = 0) -> RiskModel:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"age": rng.normal(62, 10, n).round(), "dose": rng.uniform(50, 150, n).round(1)})
    lp = 0.03 * (X["age"] - 62) - 0.01 * (X["dose"] - 100)
    t, c = rng.exponential(30 * np.exp(-lp)), rng.uniform(5, 60, n)
    y = np.empty(n, dtype=[("event", "?"), ("time", "<f8")])
    y["event"], y["time"] = t <= c, np.minimum(t, c)
    model = declared_model(DECLARATION, X, y, CoxPH(penalty=0), endpoint="os", family="cox")
    design = model.features.transform(X)
    # the record RiskModel.from_training(size=...) keeps (a trained model's is checked in test_train.py)
    model.development = development_record(design_sample_size(design, y, y, 24.0))
    return model


@pytest.fixture(scope="module")
def models() -> dict[str, RiskModel]:
    return {"large": _model(4000), "small": _model(60)}


def test_the_size_verdict_is_the_data_s_and_survives_save_and_load(models: dict[str, Any], tmp_path: Path) -> None:
    large, small = models["large"], models["small"]
    assert large.development["exploratory"] is False
    assert large.development["n_patients"] == 4000
    assert small.development["exploratory"] is True
    assert small.development["minimum_n"] > 60
    again = RiskModel.load(large.save(tmp_path / "large"))
    assert again.development == large.development
    assert not again.exploratory
    assert again.development_note().startswith("Developed on 4,000 patients (")


def test_pages_call_only_the_small_model_exploratory(models: dict[str, Any], tmp_path: Path) -> None:
    large, small = models["large"], models["small"]
    for page in (
        note_for([large]),
        calculator_spec(large)["development_note"],
        write_calculator(large, tmp_path / "l.html").read_text(),
    ):
        assert "xploratory" not in page
        assert "Developed on 4,000 patients" in page
        assert "meets Riley et al.'s minimum sample size" in page
    for page in (note_for([small]), write_calculator(small, tmp_path / "s.html").read_text()):
        assert "Exploratory: developed on 60 patients" in page
    both = note_for([large, small])
    assert "OS (cox): Developed on 4,000" in both
    assert "OS (cox): Exploratory: developed on 60" in both


def test_a_model_file_without_the_record_is_called_exploratory(models: dict[str, Any], tmp_path: Path) -> None:
    import json

    folder = models["large"].save(tmp_path / "old")
    meta = json.loads((folder / "model.json").read_text())
    del meta["development"]
    (folder / "model.json").write_text(json.dumps(meta))
    rewrite_manifest(folder)  # as a folder written before riskmodel kept the record
    old = RiskModel.load(folder)
    assert old.development is None
    assert old.exploratory
    assert note_for([old]).startswith("Exploratory: this model file does not record the size of its development")
