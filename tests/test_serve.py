"""The web calculator's JSON API (issue 20 §4), through FastAPI's TestClient: the landmark rule, no risk
group outside the development data, a missing field named, clinical labels, one prediction path,
nothing echoed or logged; and `riskmodel serve` refusing a tampered folder before it starts."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app as cli
from riskmodel.cohort import Cohort
from riskmodel.scoring import RiskModel
from tests.serving_models import PATIENT, fit_bundled

pytest.importorskip("httpx")
from fastapi.testclient import TestClient

from riskmodel.serving.app import MAX_BODY_BYTES, create_app

ENCODINGS = ("log_lesion_volume_cm3", "response_cr_pr", "t_stage_ordinal", "n_stage_ordinal", "= m1", "d90_gy")


@pytest.fixture(scope="module")
def folders(bundled: Cohort, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    return {ep: fit_bundled(bundled, root / ep, ep) for ep in ("lc", "os")}


@pytest.fixture(scope="module")
def models(folders: dict[str, Path]) -> list[RiskModel]:
    return [RiskModel.load(folders["lc"]), RiskModel.load(folders["os"])]


@pytest.fixture(scope="module")
def client(models: list[RiskModel]) -> TestClient:
    return TestClient(create_app(models))


def _predict(client: TestClient, **change: Any) -> dict[str, dict[str, Any]]:
    response = client.post("/api/predict", json={**PATIENT, **change})
    assert response.status_code == 200, response.text
    return {m["endpoint"]: m for m in response.json()["models"]}


def test_a_pd_patient_is_refused_by_the_lc_model_and_still_scored_for_os(client: TestClient) -> None:
    answers = _predict(client, response_3mo="PD")
    lc = answers["lc"]
    assert lc["status"] == "refused"
    assert lc["reason"] == "local failure at the 3-month CT; not at risk after the landmark"
    assert lc["risk_group"] is None
    assert lc["horizon_probabilities"] is None
    assert lc["curve"] is None
    assert lc["risk_score"] is None
    assert answers["os"]["status"] == "scored"
    assert answers["os"]["risk_group"] in ("low", "intermediate", "high")


def test_a_d90_of_260_gy_gets_predictions_marked_outside_and_no_risk_group(client: TestClient) -> None:
    for endpoint, m in _predict(client, d90_gy=260.0).items():
        assert m["status"] == "outside the development data", endpoint
        assert m["risk_group"] is None
        assert m["reason"].startswith("no risk group: d90_gy 260 is above the middle of the training data")
        assert all(0 <= h["survival"] <= 1 for h in m["horizon_probabilities"])
        w = m["what_if"]
        lo, hi = w["training_range"]
        values, marked = np.array(w["values"]), np.array(w["extrapolated"])
        # the sweep covers the training range and runs on to the patient's own 260 Gy, marked beyond it
        assert values.min() == pytest.approx(lo)
        assert values.max() == pytest.approx(260.0)
        assert np.array_equal(marked, (values < lo) | (values > hi))
        assert marked.any()
        assert not marked.all()
    answers = _predict(client, d90_gy=260.0)
    assert answers["lc"]["what_if"]["lower"] is not None  # Cox: a band
    assert answers["os"]["what_if"]["lower"] is None
    assert answers["os"]["what_if"]["band"].startswith("no band")
    assert "d90_gy 260.0 is outside the plausible range 30-200 Gy; please check" in answers["lc"]["flags"]


def test_allowing_extrapolation_gives_the_group_and_says_extrapolated(models: list[RiskModel]) -> None:
    client = TestClient(create_app(models, allow_extrapolation=True))
    m = _predict(client, d90_gy=260.0)["lc"]
    assert m["status"] == "extrapolated: outside the development data"
    assert m["risk_group"] in ("low", "intermediate", "high")


def test_a_missing_required_field_is_a_422_naming_the_field_without_echoing_values(client: TestClient) -> None:
    sent = {k: v for k, v in PATIENT.items() if k != "d90_gy"} | {"lesion_volume_cm3": 17.123, "kps": 80}
    response = client.post("/api/predict", json=sent)
    assert response.status_code == 422
    body = response.json()
    assert {"field": "d90_gy (D90)", "rule": "required: give a value"} in body["problems"]
    assert {"field": "kps", "rule": "not an input of the served models"} in body["problems"]
    assert "17.123" not in response.text
    assert "Traceback" not in response.text
    bad = client.post("/api/predict", json={**PATIENT, "m_stage": "M9", "d90_gy": 500})
    assert bad.status_code == 422
    rules = {p["field"]: p["rule"] for p in bad.json()["problems"]}
    assert rules["m_stage (M stage)"] == "must be 'M0' or 'M1'"
    assert rules["d90_gy (D90)"] == "must be less than or equal to 400"  # the contract's hard limit


def test_the_answer_is_the_models_own_scoring_with_clinical_labels(client: TestClient, models: list[RiskModel]) -> None:
    answers = _predict(client)
    frame = pd.DataFrame([{"patient_id": "x", **{k: str(v) for k, v in PATIENT.items()}}])
    for model in models:
        m = answers[model.endpoint]
        record = model.score(frame)[0]
        assert m["status"] == "scored"
        assert m["risk_group"] == record["risk_group"]
        assert m["risk_score"] == record["risk_score"]
        assert [h["survival"] for h in m["horizon_probabilities"]] == list(record["survival"].values())
        sweep = model.what_if(frame, "d90_gy", m["what_if"]["values"], times=[m["what_if"]["horizon"]])
        assert np.allclose(sweep[f"S_{m['what_if']['horizon']:g}"], m["what_if"]["survival"], rtol=0, atol=1e-12)
        labels = [c["label"] for c in m["shap"]["contributions"]]
        assert "lesion volume 17.25 cm³" in labels
        assert "M stage M0" in labels
        assert "D90 115 Gy" in labels
        assert not any(code in label for label in labels for code in ENCODINGS), labels
        total = m["shap"]["base"] + sum(c["value"] for c in m["shap"]["contributions"])
        if model.family == "cox":  # linear SHAP adds up to the log hazard ratio exactly
            assert total == pytest.approx(m["risk_score"], abs=1e-9)
    lc = answers["lc"]
    assert lc["horizon_probabilities"][0]["lower"] <= lc["horizon_probabilities"][0]["survival"]
    assert lc["curve"]["survival"][0] == 1.0
    assert np.all(np.diff(lc["curve"]["survival"]) <= 0)


def test_the_openapi_schema_documents_the_inputs_and_the_answers(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    inputs = schema["components"]["schemas"]["PatientInputs"]
    assert set(inputs["required"]) == set(PATIENT)
    assert inputs["properties"]["m_stage"]["enum"] == ["M0", "M1"]
    assert inputs["properties"]["d90_gy"]["maximum"] == 400
    assert "Gy" in inputs["properties"]["d90_gy"]["description"]
    assert inputs["additionalProperties"] is False
    assert "/api/predict" in schema["paths"]
    assert "ModelAnswer" in schema["components"]["schemas"]
    page = client.get("/").text
    assert "name='d90_gy'" in page
    assert "LC cox: " in page
    assert "<option>PD</option>" in page


def test_oversized_bodies_foreign_hosts_and_caching_are_refused(client: TestClient) -> None:
    big = client.post(
        "/api/predict", content=b"{" + b" " * MAX_BODY_BYTES + b"}", headers={"content-type": "application/json"}
    )
    assert big.status_code == 413
    assert client.get("/", headers={"host": "attacker.example"}).status_code == 400
    assert client.get("/api/inputs").headers["cache-control"] == "no-store"


def test_no_patient_value_is_logged(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _predict(client, lesion_volume_cm3=31.4159, d90_gy=260.0)
    assert not any("31.4159" in r.getMessage() for r in caplog.records)


def _serve(*args: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, list[Any]]:
    import uvicorn

    started: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append((app, kw)))
    result = CliRunner().invoke(cli, ["serve", *args])
    return result.exit_code, result.output, started


def test_serve_verifies_every_model_and_binds_loopback_without_an_access_log(
    folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, started = _serve("--model", str(folders["lc"]), "--model", str(folders["os"]), monkeypatch=monkeypatch)
    assert code == 0
    assert len(started) == 1
    _, config = started[0]
    assert config["host"] == "127.0.0.1"
    assert config["access_log"] is False


def test_serve_refuses_a_tampered_model_folder_before_it_starts(
    folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tampered = tmp_path / "lc"
    shutil.copytree(folders["lc"], tampered)
    target = tampered / "cox.json"
    target.write_text(target.read_text().replace("0.", "1.", 1))
    code, output, started = _serve("--model", str(folders["os"]), "--model", str(tampered), monkeypatch=monkeypatch)
    assert code == 2
    assert not started
    assert "cox.json" in output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


def test_serve_refuses_a_remote_host_unless_allowed(folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    code, output, started = _serve("--model", str(folders["lc"]), "--host", "0.0.0.0", monkeypatch=monkeypatch)
    assert code == 2
    assert not started
    assert "--allow-remote" in output


def test_scoring_a_file_whose_every_row_is_refused_gives_the_refusals(models: list[RiskModel]) -> None:
    lc = models[0]
    frame = pd.DataFrame([{"patient_id": "a", **{k: str(v) for k, v in PATIENT.items()}, "response_3mo": "PD"}])
    (record,) = lc.score(frame)
    assert record["status"] == "refused"
    assert record["patient_id"] == "a"


def test_the_batched_what_if_equals_one_value_at_a_time(models: list[RiskModel]) -> None:
    frame = pd.DataFrame(
        [
            {"patient_id": "a", **{k: str(v) for k, v in PATIENT.items()}},
            {"patient_id": "b", **{k: str(v) for k, v in PATIENT.items()}, "m_stage": "M1", "d90_gy": "90"},
        ]
    )
    for model in models:
        values = [70.0, 110.0, 150.0, 200.0]
        batch = model.what_if(frame, "d90_gy", values, times=[6.0])
        for value in values:
            one = model.what_if(frame, "d90_gy", [value], times=[6.0])
            got = batch[batch["value"] == value].reset_index(drop=True)
            pd.testing.assert_frame_equal(got, one, check_exact=False, rtol=0, atol=1e-12)
        assert batch["row"].tolist() == [0] * 4 + [1] * 4
