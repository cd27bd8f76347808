"""Competing-risk models as users meet them: scores with both CIFs, model folders, pages,
explanations and what-if (issue 18, scoring part).

Built directly on the bundled cohort's local failure with death competing (3-month landmark):
one cause-specific model of each family, small enough to fit in a second.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import load_bundled, survival_data
from riskmodel.cohort.bundled import bundled_cohort_path
from riskmodel.errors import ModelFileError
from riskmodel.explain import explain_over_time
from riskmodel.features import ClinicalFeatures
from riskmodel.models import CauseSpecificCox
from riskmodel.models.competing_trees import CauseSpecificBoosting, CauseSpecificForest
from riskmodel.reporting import write_patient_reports
from riskmodel.reporting.patient_competing import STACKED_ALT
from riskmodel.scoring import RiskModel

HORIZONS = [3.0, 6.0, 12.0]
ESTIMATORS = {
    "cox": lambda: CauseSpecificCox(penalty=0.1),
    "rsf": lambda: CauseSpecificForest(n_estimators=10, random_state=0),
    "gbm": lambda: CauseSpecificBoosting(n_estimators=20),
}


def _fit(family: str, estimator: object | None = None) -> RiskModel:
    sd = survival_data(load_bundled(), "lc", landmark_months=3, competing=True)
    features = ClinicalFeatures("study", landmark_months=3).fit(sd.X)
    est = estimator if estimator is not None else ESTIMATORS[family]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(features.transform(sd.X), sd.y)  # type: ignore[attr-defined]
    return RiskModel.from_training(
        endpoint="lc",
        family=family,
        experiment="t",
        landmark_months=3,
        horizons=HORIZONS,
        features=features,
        estimator=est,  # type: ignore[arg-type]
        X=sd.X,
    )


@pytest.fixture(scope="module")
def models() -> dict[str, RiskModel]:
    return {family: _fit(family) for family in ESTIMATORS}


@pytest.fixture(scope="module")
def patients() -> pd.DataFrame:
    return load_bundled().data


@pytest.mark.parametrize("family", list(ESTIMATORS))
def test_score_gives_both_cifs_that_add_up_with_the_event_free_probability(
    models: dict[str, RiskModel], patients: pd.DataFrame, family: str
) -> None:
    model = models[family]
    records = model.score(patients)
    scored = [r for r in records if r["status"] in ("scored", "outside the development data")]
    assert len(scored) >= 15
    for r in scored:
        assert "survival" not in r
        assert r["events"] == {
            "cif": "local failure",
            "cif_competing": "death without local failure",
            "event_free": "alive without local failure",
        }
        a, b, free = (np.array([r[k][f"{h:g}"] for h in HORIZONS]) for k in ("cif", "cif_competing", "event_free"))
        np.testing.assert_allclose(a + b + free, 1.0, atol=1e-12)
        assert ((a >= 0) & (b >= 0) & (free >= -1e-12)).all()
        assert (np.diff(a) >= 0).all()
        assert (np.diff(b) >= 0).all()
    # the risk score is the event's CIF at the model's risk horizon, grouped by the training cut-offs
    est = model.estimator
    frame = model.predict_frame(patients.loc[[r["row"] for r in scored]])
    direct = est.predict_cif(
        model.features.transform(model.validate_patients(patients.loc[[r["row"] for r in scored]])), [est.risk_horizon_]
    )  # type: ignore[attr-defined]
    np.testing.assert_allclose(frame["risk_score"], direct.iloc[:, 0], atol=1e-12)
    for r, risk in zip(scored, frame["risk_score"], strict=True):
        assert r["risk_score"] == pytest.approx(risk, abs=1e-12)
        assert r["risk_horizon_months"] == pytest.approx(est.risk_horizon_)  # type: ignore[attr-defined]
        if r["status"] == "scored":
            assert r["risk_group"] == model.risk_group(risk)
    assert list(frame.columns) == [
        "risk_score",
        *[f"cif_{h:g}" for h in HORIZONS],
        *[f"cif_competing_{h:g}" for h in HORIZONS],
        *[f"event_free_{h:g}" for h in HORIZONS],
    ]
    # PD at the 3-month CT is local failure: refused by the LC competing model, as by an LC survival model
    refused = {r["patient_id"] for r in records if r["status"] == "refused"}
    assert set(patients.loc[patients["response_3mo"] == "PD", "patient_id"]) <= refused


def test_save_and_load_round_trip_every_family(models: dict[str, RiskModel], tmp_path: Path) -> None:
    X = load_bundled().data.iloc[10:20]
    for family, model in models.items():
        folder = model.save(tmp_path / family)
        assert (folder / "competing.json").is_file()
        assert (folder / "cause_2").is_dir()
        assert not list(folder.rglob("*.pkl"))
        back = RiskModel.load(folder)
        assert back.competing
        assert type(back.estimator) is type(model.estimator)
        pd.testing.assert_frame_equal(back.predict_frame(X), model.predict_frame(X), rtol=0, atol=1e-12)


def test_a_tampered_cause_2_file_is_refused(models: dict[str, RiskModel], tmp_path: Path) -> None:
    folder = models["cox"].save(tmp_path / "cox")
    target = folder / "cause_2" / "cox.json"
    state = json.loads(target.read_text())
    state["coef"][0] = state["coef"][0] + 1.0
    target.write_text(json.dumps(state))
    with pytest.raises(ModelFileError, match=r"cause_2/cox\.json does not match its SHA-256"):
        RiskModel.load(folder)
    # whoever rewrites the manifest too still meets cause 2's own checks (a NaN coefficient)
    import hashlib

    state["coef"][0] = float("nan")
    target.write_text(json.dumps(state))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["cause_2/cox.json"] = hashlib.sha256(target.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError):
        RiskModel.load(folder)
    # and the command line says so in one line, exit code 2
    proc = subprocess.run(
        [sys.executable, "-m", "riskmodel", "score", "--model", str(folder), "--patients", str(bundled_cohort_path())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_score_command_writes_the_cif_columns_and_pages(
    models: dict[str, RiskModel], tmp_path: Path, patients: pd.DataFrame
) -> None:
    folder = models["cox"].save(tmp_path / "cox")
    out, pages = tmp_path / "s.csv", tmp_path / "pages"
    # two patients at risk and one PD (refused): a page's D90 what-if takes seconds per patient
    raw = pd.read_csv(bundled_cohort_path())
    chosen = pd.concat([raw[raw["response_3mo"] != "PD"].iloc[:2], raw[raw["response_3mo"] == "PD"].iloc[:1]])
    chosen.to_csv(tmp_path / "p.csv", index=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "riskmodel",
            "score",
            "--model",
            str(folder),
            "--patients",
            str(tmp_path / "p.csv"),
            "--out",
            str(out),
            "--report",
            str(pages),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out)
    for h in ("3", "6", "12"):
        assert {f"cif_{h}", f"cif_competing_{h}", f"event_free_{h}"} <= set(table.columns)
    assert (table["status"] == "refused").sum() == 1
    scored = table[table["status"] == "scored"]
    total = scored[["cif_6", "cif_competing_6", "event_free_6"]].sum(axis=1)
    np.testing.assert_allclose(total, 1.0, atol=1e-9)  # CSV keeps 15+ digits
    assert (scored["label_cif"] == "local failure").all()
    assert (scored["label_cif_competing"] == "death without local failure").all()
    page = Path(scored["page"].iloc[0]).read_text()
    assert STACKED_ALT in page
    assert "Bottom band: the probability of local failure" in page
    assert "Middle band: the probability of death without local failure" in page
    assert "CIF of local failure (12 months)" in page  # the SHAP waterfall of the CIF
    assert "contributions over time" in page
    ids = set(patients["patient_id"].astype(str))
    assert not any(pid in page for pid in ids)


@pytest.mark.parametrize("family", list(ESTIMATORS))
def test_shap_of_the_cif_is_exact_and_locally_accurate(
    models: dict[str, RiskModel], patients: pd.DataFrame, family: str
) -> None:
    model = models[family]
    X = patients.loc[patients["response_3mo"] != "PD"].iloc[:6]
    Z = model.features.transform(model.validate_patients(X))
    est = model.estimator
    for output, target in (
        (("cif", 6.0), est.predict_cif(Z, [6.0]).iloc[:, 0]),  # type: ignore[attr-defined]
        (("cif_competing", 6.0), est.predict_cif(Z, [6.0], cause=2).iloc[:, 0]),  # type: ignore[attr-defined]
        ("risk", est.predict_risk(Z)),
    ):
        e = model.explain(X, output=output)
        assert e.method.startswith("exact: interventional")
        np.testing.assert_allclose(e.base_values + e.values.sum(axis=1), np.asarray(target), atol=1e-10)


def test_shap_of_the_cif_equals_shaps_exact_explainer(models: dict[str, RiskModel], patients: pd.DataFrame) -> None:
    import shap

    model = models["cox"]
    X = patients.iloc[:3]
    Z = model.features.transform(model.validate_patients(X))
    ref = np.asarray(model.feature_means)[None, :]
    mine = model.explain(X, output=("cif", 6.0))

    def f(A: np.ndarray) -> np.ndarray:
        return np.asarray(model.estimator.predict_cif(A, [6.0]).iloc[:, 0])  # type: ignore[attr-defined]

    theirs = shap.ExactExplainer(f, shap.maskers.Independent(ref))(Z)
    np.testing.assert_allclose(mine.values, theirs.values, atol=1e-10)


@pytest.mark.parametrize("family", ["cox", "rsf"])
def test_explanations_over_time_sum_to_the_curve_at_every_time(
    models: dict[str, RiskModel], patients: pd.DataFrame, family: str
) -> None:
    model = models[family]
    X = patients.iloc[:4]
    Z = model.features.transform(model.validate_patients(X))
    ref = np.asarray(model.feature_means)[None, :]
    times = [1.0, 3.0, 6.0, 12.0]
    for output, cause in (("cif", 0), ("cif_competing", 1)):
        over = explain_over_time(model, X, times, output=output)
        cif = model.estimator.cif_matrix(Z, times)[cause]  # type: ignore[attr-defined]
        at_ref = model.estimator.cif_matrix(ref, times)[cause]  # type: ignore[attr-defined]
        # local accuracy at each t: Σ_j φ_j(t) = CIF(t | x) − CIF(t | reference)
        np.testing.assert_allclose(over.values.sum(axis=1), cif - at_ref, atol=1e-10)
        np.testing.assert_allclose(over.predictions, cif, atol=1e-12)
        # the values at each t are the SHAP values of CIF(t)
        for k, t in enumerate(times):
            one = model.explain(X, output=(output, t))
            np.testing.assert_allclose(over.values[:, :, k], one.values, atol=1e-12)
    glob = over.mean_abs()
    assert list(glob.columns) == times
    assert (glob.to_numpy() >= 0).all()


def test_over_time_explains_a_survival_model_too(patients: pd.DataFrame) -> None:
    from riskmodel.models import CoxPH

    sd = survival_data(load_bundled(), "os", landmark_months=3)
    features = ClinicalFeatures("study", landmark_months=3).fit(sd.X)
    cox = CoxPH(penalty=0.1).fit(features.transform(sd.X), sd.y)
    model = RiskModel.from_training(
        endpoint="os", family="cox", experiment="t", landmark_months=3, horizons=[6.0, 12.0],
        features=features, estimator=cox, X=sd.X,
    )  # fmt: skip
    X = patients.iloc[:3]
    over = explain_over_time(model, X, [6.0, 12.0])
    s = model.predict_survival(X, [6.0, 12.0]).to_numpy()
    s_ref = cox.predict_survival(np.asarray(model.feature_means)[None, :], [6.0, 12.0]).to_numpy()
    np.testing.assert_allclose(over.values.sum(axis=1), s - s_ref, atol=1e-10)
    with pytest.raises(Exception, match="competing-risk model"):
        explain_over_time(model, X, [6.0], output="cif")


def test_what_if_sweeps_both_cifs(models: dict[str, RiskModel], patients: pd.DataFrame) -> None:
    model = models["cox"]
    X = patients.loc[patients["response_3mo"] != "PD"].iloc[:2]
    sweep = model.what_if(X, "d90_gy", [80.0, 120.0, 300.0], times=[6.0])
    assert {"cif_6", "cif_competing_6", "event_free_6", "extrapolated"} <= set(sweep.columns)
    assert sweep.loc[sweep["value"] == 300.0, "extrapolated"].all()
    np.testing.assert_allclose(sweep[["cif_6", "cif_competing_6", "event_free_6"]].sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.slow
def test_pages_of_a_competing_and_a_survival_model_together(
    models: dict[str, RiskModel], patients: pd.DataFrame, tmp_path: Path
) -> None:
    from tests.small_models import save_small_model

    os_model = RiskModel.load(save_small_model(tmp_path / "os"))
    pages = write_patient_reports([models["rsf"], os_model], patients.iloc[:1], tmp_path / "pages")
    assert pages
    text = pages[0].read_text()
    assert STACKED_ALT in text
    assert "predicted survival curves" in text
    shutil.rmtree(tmp_path / "pages")


def test_nomogram_and_static_calculator_refuse_a_competing_model_in_its_own_words(
    models: dict[str, RiskModel],
) -> None:
    from riskmodel.errors import UserInputError
    from riskmodel.reporting.nomogram import check_nomogram_model
    from riskmodel.serving.calculator import calculator_spec

    with pytest.raises(UserInputError, match="competing-risks model") as nomogram:
        check_nomogram_model(models["cox"])
    assert "imputation" not in str(nomogram.value)
    with pytest.raises(UserInputError, match="competing-risks model") as calculator:
        calculator_spec(models["cox"])
    assert "no formula" not in str(calculator.value)
