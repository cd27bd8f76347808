"""Predictions that refuse to mislead (issue 20 §1): the landmark rule, no risk group outside the
development data, pages linked to patients, clinical labels, an honest what-if, warnings once."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import bundled_cohort_path, load_bundled, survival_data
from riskmodel.cohort.declaration import CohortDeclaration
from riskmodel.features import ClinicalFeatures
from riskmodel.models import CoxPH, SurvivalForest
from riskmodel.privacy import pseudonym
from riskmodel.reporting.page import format_p, format_probability
from riskmodel.scoring import RiskModel
from tests.conftest import REPO

HEADER = (
    "patient_id,age_years,sex,kps,pathological_grade,t_stage,n_stage,m_stage,recurrence_interval_months,"
    "lesion_volume_cm3,d90_gy,response_3mo\n"
)
# written by hand: an ordinary patient, a PD patient, D90 = 260 Gy, and an N stage no LC training patient had
PATIENTS = HEADER + (
    "MRN-20001,61,M,80,low,T2,N1,M0,12.5,18.0,115,PR\n"
    "MRN-20002,66,F,70,moderate,T3,N1,M0,10.0,20.0,110,PD\n"
    "MRN-20003,70,F,70,moderate,T3,N2,M1,14.0,40.0,260,SD\n"
    "MRN-20004,58,M,90,low,T2,N3,M0,12.0,20.0,110,PR\n"
)
ENCODINGS = ("log_lesion_volume_cm3", "response_cr_pr", "t_stage_ordinal", "n_stage_ordinal", "d90_gy", "= m1")


def _fit(folder: Path, endpoint: str, estimator: object) -> Path:
    sd = survival_data(load_bundled(), endpoint, landmark_months=3, feature_columns=["response_3mo"])
    features = ClinicalFeatures("study", landmark_months=3).fit(sd.X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = estimator.fit(features.transform(sd.X), sd.y)  # type: ignore[attr-defined]
    model = RiskModel.from_training(
        endpoint=endpoint,
        family="cox" if isinstance(estimator, CoxPH) else "rsf",
        experiment="t",
        landmark_months=3,
        horizons=[6.0, 12.0],
        features=features,
        estimator=fitted,
        X=sd.X,
        reliable_until=8.0,  # so S(12) is a thin horizon: fewer than 10 followed to it
        min_at_risk=10,
    )
    return model.save(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "lc_cox": _fit(root / "lc_cox", "lc", CoxPH(penalty=0.1)),
        "os_rsf": _fit(root / "os_rsf", "os", SurvivalForest(n_estimators=20, min_samples_leaf=3, random_state=0)),
    }


def _score(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command in its own process (its warnings printed as a user sees them)."""
    return subprocess.run(
        [sys.executable, "-m", "riskmodel", "score", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def scored(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path, str]:
    folder = tmp_path_factory.mktemp("scored")
    (folder / "p.csv").write_text(PATIENTS)
    args = ["--model", str(models["lc_cox"]), "--model", str(models["os_rsf"]), "--patients", str(folder / "p.csv")]
    proc = _score(*args, "--out", str(folder / "s.json"), "--report", str(folder / "pages"))
    assert proc.returncode == 0, proc.stderr
    return json.loads((folder / "s.json").read_text()), folder / "pages", proc.stderr


def _record(records: list[dict], pid: str, endpoint: str) -> dict:
    return next(r for r in records if r["patient_id"] == pid and r["endpoint"] == endpoint)


def test_an_lc_score_of_a_pd_patient_is_a_per_row_refusal(scored: tuple[list[dict], Path, str]) -> None:
    records, _, err = scored
    lc = _record(records, "MRN-20002", "lc")
    assert lc["status"] == "refused"
    assert lc["reason"] == "local failure at the 3-month CT; not at risk after the landmark"
    assert lc["risk_group"] is None
    assert "survival" not in lc
    assert "risk_score" not in lc
    # the same patient is scored for OS, and the other patients for LC: not an error for the file
    assert _record(records, "MRN-20002", "os")["status"] != "refused"
    assert _record(records, "MRN-20001", "lc")["status"] == "scored"
    assert "row 3: refused by the LC cox model: local failure at the 3-month CT" in err


def test_d90_of_260_gy_and_an_unseen_category_get_predictions_but_no_risk_group(
    scored: tuple[list[dict], Path, str],
) -> None:
    records, _, _ = scored
    for pid in ("MRN-20003", "MRN-20004"):
        r = _record(records, pid, "lc")
        assert r["status"] == "outside the development data", r
        assert r["risk_group"] is None
        assert 0 <= r["survival"]["6"] <= 1
    assert any(f.startswith("d90_gy 260 is above the middle") for f in _record(records, "MRN-20003", "lc")["flags"])
    assert any("n_stage N3 was not seen in training" in f for f in _record(records, "MRN-20004", "lc")["flags"])
    assert _record(records, "MRN-20001", "lc")["risk_group"] in ("low", "intermediate", "high")


def test_allow_extrapolation_gives_the_group_and_still_says_extrapolated(
    models: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "p.csv").write_text(PATIENTS)
    proc = _score("--model", str(models["lc_cox"]), "--patients", str(tmp_path / "p.csv"), "--allow-extrapolation")
    assert proc.returncode == 0, proc.stderr
    r = _record(json.loads(proc.stdout), "MRN-20003", "lc")
    assert r["status"] == "extrapolated: outside the development data"
    assert r["risk_group"] in ("low", "intermediate", "high")


def test_a_thin_horizon_is_flagged_on_every_prediction(scored: tuple[list[dict], Path, str]) -> None:
    records, _, _ = scored
    predicted = [r for r in records if "survival" in r]
    assert len(predicted) == 7  # 4 patients × 2 models, less the refusal
    assert all(any(f.startswith("S(12): fewer than 10 training patients") for f in r["flags"]) for r in predicted)
    assert all(not any(f.startswith("S(6)") for f in r["flags"]) for r in predicted)


def test_the_score_output_links_each_id_to_its_pseudonym_and_page(scored: tuple[list[dict], Path, str]) -> None:
    records, pages, _ = scored
    for r in records:
        assert r["pseudonym"] == pseudonym(r["patient_id"])
        page = Path(r["page"])
        assert page.parent == pages
        assert page.exists()
        text = page.read_text(encoding="utf-8")
        assert r["pseudonym"] in text
        assert r["patient_id"] not in text


def _page_text(pages: Path, pid: str) -> str:
    html = (pages / f"patient_{pseudonym(pid).removeprefix('pid:')}.html").read_text(encoding="utf-8")
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)


def test_pages_show_clinical_labels_never_encodings(scored: tuple[list[dict], Path, str]) -> None:
    _, pages, _ = scored
    text = _page_text(pages, "MRN-20003")
    for encoding in ENCODINGS:
        assert encoding not in text, encoding
    for label in ("D90 260 Gy", "lesion volume 40 cm³", "M stage M1", "3-month response SD (SD/PD)"):
        assert label in text, label
    assert "none: outside the development data" in text
    refused = _page_text(pages, "MRN-20002")
    assert "local failure at the 3-month CT; not at risk after the landmark" in refused


def test_the_what_if_page_marks_its_extrapolated_part(scored: tuple[list[dict], Path, str]) -> None:
    _, pages, _ = scored
    text = _page_text(pages, "MRN-20003")
    assert "is extrapolated: outside the development data (dashed, shaded)" in text
    assert "95% band from the Cox coefficients" in text
    assert "no band: this family keeps no uncertainty estimate" in text


def test_each_warning_prints_once_in_plain_words(scored: tuple[list[dict], Path, str]) -> None:
    _, _, err = scored
    lines = [line for line in err.splitlines() if line.startswith("warning")]
    assert lines, err  # D90 260 Gy is outside the plausible range: said once, not once per page and sweep value
    assert len(lines) == len(set(lines))
    assert sum("value '260'" in line for line in lines) == 1
    assert "Cohort.warnings" not in err


def test_scoring_the_bundled_cohort_refuses_who_was_not_at_risk_and_warns_nothing_about_fitting(
    models: dict[str, Path],
) -> None:
    proc = _score("--model", str(models["lc_cox"]), "--patients", str(bundled_cohort_path()))
    assert proc.returncode == 0, proc.stderr
    assert "all patients are censored" not in proc.stderr
    assert "Cohort.warnings" not in proc.stderr
    records = json.loads(proc.stdout)
    raw = pd.read_csv(bundled_cohort_path())
    # independently of riskmodel: PD at 3 months, or LC follow-up ending by the 3-month landmark
    expected = set(raw.loc[(raw["response_3mo"] == "PD") | (raw["lc_months"] <= 3), "patient_id"])
    assert {r["patient_id"] for r in records if r["status"] == "refused"} == expected
    assert len(expected) >= 10


def test_outcome_columns_before_the_landmark_refuse_the_row(models: dict[str, Path]) -> None:
    model = RiskModel.load(models["os_rsf"])
    frame = pd.read_csv(bundled_cohort_path()).head(3).drop(columns=["lc_months", "lc_event"])
    frame = frame.assign(response_3mo="PR", os_months=[2.0, 2.5, 20.0], os_event=[1, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = model.score(frame)
    assert [r["status"] for r in records[:2]] == ["refused", "refused"]
    assert records[0]["reason"].startswith("OS event at 2 months, at or before the 3-month landmark")
    assert records[1]["reason"].startswith("OS follow-up ended at 2.5 months")
    assert records[2]["status"] in ("scored", "outside the development data")


def test_a_declared_cohort_declares_its_event_at_landmark_levels() -> None:
    base = {
        "id": "ID",
        "covariates": [
            {"name": "resp", "column": "R", "kind": "categorical", "levels": ["CR", "PD"], "measured_at_months": 3}
        ],
        "endpoints": [{"name": "pfs", "time": "T", "event": "E"}],
    }
    rule = {"endpoint": "pfs", "levels": ["PD"], "meaning": "progression at the 3-month CT"}
    base["covariates"][0]["event_at_landmark"] = [rule]  # type: ignore[index]
    assert CohortDeclaration.model_validate(base).covariate("resp").event_at_landmark[0].levels == ["PD"]
    wrong = (({**rule, "levels": ["XX"]}, "not among the levels"), ({**rule, "endpoint": "os"}, "not declared"))
    for bad, message in wrong:
        base["covariates"][0]["event_at_landmark"] = [bad]  # type: ignore[index]
        with pytest.raises(ValueError, match=message):
            CohortDeclaration.model_validate(base)


def test_the_what_if_sweep_covers_the_training_range_and_marks_extrapolation(models: dict[str, Path]) -> None:
    cox, rsf = RiskModel.load(models["lc_cox"]), RiskModel.load(models["os_rsf"])
    patient = pd.read_csv(bundled_cohort_path()).iloc[[1]]
    default = cox.what_if(patient)
    lo, hi = cox.numeric_ranges["d90_gy"]
    assert default["value"].min() == lo
    assert default["value"].max() == hi
    assert not default["extrapolated"].any()
    sweep = cox.what_if(patient, "d90_gy", [100.0, 260.0], times=[6.0])
    assert sweep["extrapolated"].tolist() == [False, True]
    assert (sweep["S_6_lower"] <= sweep["S_6"]).all()
    assert (sweep["S_6"] <= sweep["S_6_upper"]).all()
    trees = rsf.what_if(patient, "d90_gy", [100.0, 260.0], times=[6.0])
    assert not any(c.endswith(("_lower", "_upper")) for c in trees.columns)
    assert trees.attrs["band"].startswith("no band")


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed")
def test_the_cox_what_if_band_matches_r(tmp_path: Path) -> None:
    """R's coxph (Efron ties) on the same unpenalised design: β to 1e-6 and its covariance (vcov) to
    1e-5 relative; the band is exp(−H₀(t)·exp(η ± 1.96 se(η))) with se(η) from R's vcov, to 1e-6."""
    from riskmodel.explain.whatif import Z_95, cox_band
    from riskmodel.models.base import proportional_survival
    from riskmodel.stats import step_values

    sd = survival_data(load_bundled(), "os", landmark_months=3, feature_columns=["response_3mo"])
    features = ClinicalFeatures("study", landmark_months=3).fit(sd.X)
    X = pd.DataFrame(features.transform(sd.X), columns=features.get_feature_names_out())
    cox = CoxPH(penalty=0.0).fit(X.to_numpy(), sd.y)
    X.assign(T=sd.y["time"], E=sd.y["event"].astype(int)).to_csv(tmp_path / "fit.csv", index=False)
    (tmp_path / "fit.R").write_text(f"""
suppressMessages(library(survival))
d <- read.csv("{tmp_path / "fit.csv"}")
m <- coxph(Surv(T, E) ~ . , data = d, ties = "efron")
cat(sprintf("%.12g", coef(m)), "\n", sprintf("%.12g", as.vector(vcov(m))), "\n")
""")
    out = subprocess.run(
        ["Rscript", str(tmp_path / "fit.R")], capture_output=True, text=True, timeout=120, check=True
    ).stdout.splitlines()
    beta_r = np.array(out[0].split(), dtype=float)
    p = len(beta_r)
    vcov_r = np.array(out[1].split(), dtype=float).reshape(p, p)
    np.testing.assert_allclose(cox.coef_, beta_r, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.inv(cox.information_), vcov_r, rtol=1e-5)
    Z = X.iloc[:5].assign(d90_gy=[60.0, 100.0, 151.0, 200.0, 260.0]).to_numpy()
    centred = Z - cox.mean_
    eta, se = centred @ beta_r, np.sqrt(np.einsum("ij,jk,ik->i", centred, vcov_r, centred))
    band = cox_band(cox, Z, [6.0])
    assert band is not None
    H0 = step_values(cox.event_times_, cox.baseline_cumhaz_, np.array([6.0]))
    np.testing.assert_allclose(band[0], proportional_survival(eta + Z_95 * se, H0), rtol=1e-5)
    np.testing.assert_allclose(band[1], proportional_survival(eta - Z_95 * se, H0), rtol=1e-5)
    assert (band[0] < band[1]).all()


def test_probabilities_and_p_values_never_read_zero() -> None:
    assert [format_probability(p) for p in (4e-10, 0.004, 0.005, 0.5, 0.996, 1.0)] == [
        "< 0.01",
        "< 0.01",
        "0.01",
        "0.50",
        "> 0.99",
        "1.00",
    ]
    assert [format_p(p) for p in (1e-12, 0.0009, 0.001, 0.0456)] == ["< 0.001", "< 0.001", "0.001", "0.0456"]
    assert REPO.exists()
