"""The web calculator's JSON API for a competing-risk model (a Fine-Gray model of LC, death
competing, and a cause-specific Cox one): each horizon's CIF of the event, CIF of the competing event and
event-free probability are the model's own predictions (``predict_frame``, to 1e-12), named in words,
and so are the CIF curves and the what-if of the CIF; the SHAP contributions add up to the risk
score; the landmark rule still refuses a PD patient; the page draws the CIF table in a
browser-free check of its script (tests/test_calculator_fine_gray_browser.py draws it in Chromium)."""

from __future__ import annotations

from typing import Any

import pytest

from riskmodel.cohort import Cohort
from riskmodel.models import CauseSpecificCox
from riskmodel.models.fine_gray import FineGray
from riskmodel.scoring import RiskModel
from tests.serving_models import PATIENT
from tests.study_models import lc_competing_model

pytest.importorskip("httpx")
from fastapi.testclient import TestClient

from riskmodel.serving.app import create_app


@pytest.fixture(scope="module")
def model(bundled: Cohort) -> RiskModel:
    return lc_competing_model(bundled, FineGray(), "fine_gray")


@pytest.fixture(scope="module")
def cause_specific(bundled: Cohort) -> RiskModel:
    return lc_competing_model(bundled, CauseSpecificCox(penalty=0.1), "cox")


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


@pytest.mark.parametrize("which", ["fine_gray", "cause_specific"])
def test_a_competing_answer_has_its_cif_curves_shap_and_what_if(
    which: str, model: RiskModel, cause_specific: RiskModel
) -> None:
    """Before: a competing model's answer stopped at the table. Now the curves, the SHAP
    contributions to its risk score (the CIF by the risk horizon) and the what-if of the CIF,
    each checked against the model's own predictions for the changed patient."""
    import numpy as np
    import pandas as pd

    m = model if which == "fine_gray" else cause_specific
    got = _answer(TestClient(create_app([m])))
    frame = pd.DataFrame([{k: str(v) for k, v in PATIENT.items()}])

    curve = got["cif_curve"]
    cif, other, free = (np.array(curve[k], dtype=float) for k in ("cif", "cif_competing", "event_free"))
    assert curve["months"][0] == 0.0
    assert cif[0] == other[0] == 0.0
    assert (np.diff(cif) >= 0).all()
    assert (np.diff(other) >= 0).all()  # a cumulative incidence never falls
    np.testing.assert_allclose(cif + other + free, 1.0, atol=1e-12)
    k = 30  # a grid point inside follow-up: the model's own CIF there
    want = m.predict_frame(frame, [curve["months"][k]]).iloc[0]
    assert cif[k] == pytest.approx(want[f"cif_{curve['months'][k]:g}"], abs=1e-12)
    assert "no band" in curve["band"]

    shap = got["shap"]
    assert "CIF of local failure by" in shap["output"]
    total = shap["base"] + sum(c["value"] for c in shap["contributions"])
    assert total == pytest.approx(got["risk_score"], abs=1e-6)  # SHAP's efficiency: they add up to the score

    w = got["what_if"]
    assert w["outcome"] == "cif"
    assert w["survival"] is None
    for i in (0, len(w["values"]) // 2, len(w["values"]) - 1):
        changed = frame.assign(d90_gy=repr(w["values"][i]))
        row = m.predict_frame(changed, [w["horizon"]]).iloc[0]
        assert w["cif"][i] == pytest.approx(row[f"cif_{w['horizon']:g}"], abs=1e-12)
        assert w["cif_competing"][i] == pytest.approx(row[f"cif_competing_{w['horizon']:g}"], abs=1e-12)
