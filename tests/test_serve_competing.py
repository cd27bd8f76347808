"""The web calculator's JSON API for a competing-risk model (a Fine-Gray model of LC, death
competing): each horizon's CIF of the event, CIF of the competing event and event-free probability
are the model's own predictions (``predict_frame``, to 1e-12), named in words; the landmark rule
still refuses a PD patient; the page draws the CIF table in a browser-free check of its script."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from riskmodel.cohort import Cohort, survival_data
from riskmodel.features import ClinicalFeatures
from riskmodel.models.fine_gray import FineGray
from riskmodel.scoring import RiskModel
from tests.serving_models import PATIENT

pytest.importorskip("httpx")
from fastapi.testclient import TestClient

from riskmodel.serving.app import create_app


@pytest.fixture(scope="module")
def model(bundled: Cohort) -> RiskModel:
    sd = survival_data(bundled, "lc", landmark_months=3, competing=True, feature_columns=["response_3mo"])
    features = ClinicalFeatures("study", landmark_months=3).fit(sd.X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fg = FineGray().fit(features.transform(sd.X), sd.y)
    return RiskModel.from_training(
        endpoint="lc",
        family="fine_gray",
        experiment="t",
        landmark_months=3,
        horizons=[6.0, 12.0],
        features=features,
        estimator=fg,
        X=sd.X,
    )


def _answer(client: TestClient, **change: Any) -> dict[str, Any]:
    response = client.post("/api/predict", json={**PATIENT, **change})
    assert response.status_code == 200, response.text
    (only,) = response.json()["models"]
    return dict(only)


def test_the_api_gives_both_cifs_and_the_event_free_probability_of_a_fine_gray_model(model: RiskModel) -> None:
    import pandas as pd

    client = TestClient(create_app([model]))
    got = _answer(client)
    assert got["status"] == "scored"
    assert got["risk_group"] in {"low", "intermediate", "high"}
    assert got["events"]["cif"] == "local failure"
    assert got["events"]["cif_competing"] == "death without local failure"
    want = model.predict_frame(pd.DataFrame([{k: str(v) for k, v in PATIENT.items()}]), [6.0, 12.0]).iloc[0]
    assert got["risk_score"] == pytest.approx(want["risk_score"], abs=1e-12)
    assert [h["months"] for h in got["cumulative_incidence"]] == [6.0, 12.0]
    for h in got["cumulative_incidence"]:
        for name in ("cif", "cif_competing", "event_free"):
            assert h[name] == pytest.approx(want[f"{name}_{h['months']:g}"], abs=1e-12), name
        assert h["cif"] + h["cif_competing"] + h["event_free"] == pytest.approx(1.0, abs=1e-12)
    assert got["horizon_probabilities"] is None  # no survival: never an S(t) for a competing model

    refused = _answer(client, response_3mo="PD")
    assert refused["status"] == "refused"
    assert refused["cumulative_incidence"] is None
    page = client.get("/").text
    assert "renderCompeting" in page
