"""The survival report's Dose-response section: present for LC and OS, wired to the statistics
(checked against R in tests/test_dose_response.py), and shareable (a binned rug, a trimmed curve)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import Cohort
from riskmodel.features.safe_harbor import shared_range
from riskmodel.privacy import PhiGuard
from riskmodel.reporting import build_report
from riskmodel.validation.dose_response import dose_response


@pytest.fixture(scope="module")
def report(bundled: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(bundled, tmp_path_factory.mktemp("dose_report"), dose_resamples=20)


@pytest.mark.parametrize(("ep", "label"), [("lc", "Local control"), ("os", "Overall survival")])
def test_section_figure_tests_table_and_verdict_for_each_endpoint(
    report: Path, bundled: Cohort, ep: str, label: str
) -> None:
    text = report.read_text(encoding="utf-8")
    assert f"{label} (from implant): dose-response of D90, without a cut-off" in text
    assert f'alt="{label} (from implant): partial effect of D90 on the log hazard" src="data:image/png;base64,' in text
    assert "Threshold?</b> The data" in text
    tables = report.parent / "tables"
    summary = json.loads((report.parent / "summary.json").read_text())["endpoints"][ep]["dose_response"]
    d = bundled.data
    ours = dose_response(d[f"{ep}_months"], d[f"{ep}_event"], d["d90_gy"])
    shown = pd.read_csv(tables / f"{ep}_dose_tests.csv")
    np.testing.assert_allclose(shown["chi2"], ours.tests["chi2"], rtol=1e-12)
    assert summary["knots"] == pytest.approx(ours.knots.tolist())
    assert summary["reference"] == float(np.median(d["d90_gy"]))
    threshold = pd.read_csv(tables / f"{ep}_threshold.csv")
    assert threshold["model"].tolist() == ["linear", "spline", "threshold", "data-driven"]
    assert threshold.loc[2, "coding"] == "dichotomised at 110 (pre-specified)"
    assert summary["threshold"]["resamples"] == 20
    assert summary["threshold"]["verdict"] in re.sub(r"&#x27;", "'", text)
    assert "Exploratory" in summary["threshold"]["verdict"]  # 23 and 25 events for 3 parameters


def test_the_rug_is_binned_and_the_curve_never_ends_on_one_patients_dose(report: Path, bundled: Cohort) -> None:
    doses = bundled.data["d90_gy"].to_numpy(float)
    tables = report.parent / "tables"
    for ep in ("lc", "os"):
        rug = pd.read_csv(tables / f"{ep}_dose_rug.csv")
        assert list(rug.columns) == ["bin_low", "bin_high", "patients"]
        assert rug["patients"].sum() == len(doses)
        widths = rug["bin_high"] - rug["bin_low"]
        assert widths.nunique() == 1
        assert widths.iloc[0] >= 5  # no narrower than 5 Gy
        assert not np.isin(rug["bin_low"], doses).all()  # bin edges, not the doses themselves
        curve = pd.read_csv(tables / f"{ep}_dose_response.csv")
        low, high = shared_range(doses) or (np.nan, np.nan)
        assert curve["dose"].min() == low
        assert curve["dose"].max() == high
    PhiGuard.for_cohort(bundled).check_tree(report.parent, "report")  # passes the guard as written


def test_another_cut_off_is_the_one_tested(bundled: Cohort, tmp_path: Path) -> None:
    build_report(bundled, tmp_path, endpoints=["os"], cutoffs={"d90_gy": 120}, dose_resamples=2)
    threshold = pd.read_csv(tmp_path / "tables" / "os_threshold.csv")
    assert threshold.loc[2, "coding"] == "dichotomised at 120 (pre-specified)"
    assert "threshold at 120 Gy" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_a_declared_spline_covariate_gets_its_dose_response_and_a_cutoff_its_threshold_analysis(
    tmp_path: Path,
) -> None:
    """The declared report: age (encoding: spline) gets the section, tested at --cutoff age=65; size
    (encoding: threshold) does not; the tests equal dose_response on the same complete cases."""
    from riskmodel.config import load_experiment
    from riskmodel.workflow import experiment_report
    from tests.test_report_declared import COVARIATES, experiment, export

    frame = export(160, seed=7)
    path = experiment(tmp_path, frame, COVARIATES)
    report = experiment_report(load_experiment(path), tmp_path / "report", cutoffs={"age": 65})
    text = report.read_text(encoding="utf-8")
    assert "dose-response of age, without a cut-off" in text
    assert "dose-response of size" not in text
    shown = pd.read_csv(tmp_path / "report" / "tables" / "os_age_dose_tests.csv")
    months = frame["OS (days)"] / (365.25 / 12)
    ours = dose_response(months, frame["Status"] == 1, frame["Age (years)"])  # death from other causes censored
    np.testing.assert_allclose(shown["chi2"], ours.tests["chi2"], rtol=1e-9)
    threshold = pd.read_csv(tmp_path / "report" / "tables" / "os_age_threshold.csv")
    assert threshold.loc[2, "coding"] == "dichotomised at 65 (pre-specified)"
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert "at 65 years" in summary["endpoints"]["os"]["dose_response"]["age"]["threshold"]["verdict"]
