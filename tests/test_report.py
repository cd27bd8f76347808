"""The statistics report: every section present, every figure a real PNG, numbers equal lifelines'."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.statistics import multivariate_logrank_test
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.cohort import Cohort, survival_data
from riskmodel.cohort.reconstruction.study import STUDY_GROUPINGS
from riskmodel.errors import UserInputError
from riskmodel.reporting import build_report
from riskmodel.reporting.survival_tables import multivariable_cox, univariate_table
from tests.browser import CHROMIUM, rendered_images


@pytest.fixture(scope="module")
def report(bundled: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(bundled, tmp_path_factory.mktemp("report"))


def test_every_section_and_figure(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    for heading in (
        "Cohort characteristics",
        "Local control",
        "Overall survival",
        "univariate analysis",
        "multivariable Cox",
        "proportional hazards",
        "scaled Schoenfeld residuals",
        "competing risk",
        "Published figures",
    ):
        assert heading in text, heading
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) >= 6
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert "RECON-" not in text  # counts and estimates only


@pytest.mark.parametrize("endpoint", ["lc", "os"])
def test_logrank_matches_lifelines(bundled: Cohort, endpoint: str) -> None:
    d = bundled.data
    table = univariate_table(d, endpoint)
    for factor, group_of in STUDY_GROUPINGS.items():
        if factor == "short_term_response":
            sd = survival_data(d, endpoint, landmark_months=3, feature_columns=["response_3mo"])  # type: ignore[arg-type]
            frame = sd.X.assign(T=sd.y["time"], E=sd.y["event"])
            label = f"{factor} (3-month landmark)"
        else:
            frame = d.assign(T=d[f"{endpoint}_months"], E=d[f"{endpoint}_event"])
            label = factor
        ref = multivariate_logrank_test(frame["T"], np.asarray(group_of(frame)).astype(str), frame["E"])
        ours = table.loc[table["factor"] == label].iloc[0]
        assert ours["log-rank χ²"] == pytest.approx(ref.test_statistic, rel=1e-6), factor
        assert ours["p"] == pytest.approx(ref.p_value, rel=1e-6, abs=1e-12), factor
    # the response rows as the study computed them (from the implant) are kept as a labelled reference
    frame = d.assign(T=d[f"{endpoint}_months"], E=d[f"{endpoint}_event"])
    groups = np.asarray(STUDY_GROUPINGS["short_term_response"](frame)).astype(str)
    ref = multivariate_logrank_test(frame["T"], groups, frame["E"])
    biased = table.loc[table["factor"].str.endswith("as published: guarantee-time biased)")].iloc[0]
    assert biased["log-rank χ²"] == pytest.approx(ref.test_statistic, rel=1e-6)


@pytest.mark.parametrize("endpoint", ["lc", "os"])
def test_multivariable_cox_matches_lifelines(bundled: Cohort, endpoint: str) -> None:
    table, tests = multivariable_cox(bundled.data, endpoint)
    sd = survival_data(bundled.data, endpoint, landmark_months=3, feature_columns=["response_3mo"])  # type: ignore[arg-type]
    df = pd.DataFrame(
        {
            "d90_ge_110gy": (sd.X["d90_gy"] >= 110).astype(float).to_numpy(),
            "response_cr_pr": sd.X["response_3mo"].isin(["CR", "PR"]).astype(float).to_numpy(),
            "T": sd.y["time"],
            "E": sd.y["event"],
        }
    )
    ref = CoxPHFitter().fit(df, "T", "E", fit_options={"precision": 1e-12, "max_steps": 500})
    np.testing.assert_allclose(table["hr"], ref.summary["exp(coef)"], rtol=1e-6)
    np.testing.assert_allclose(table["hr_lower_95"], ref.summary["exp(coef) lower 95%"], rtol=1e-6)
    np.testing.assert_allclose(table["hr_upper_95"], ref.summary["exp(coef) upper 95%"], rtol=1e-6)
    assert tests["lr_chi2"] == pytest.approx(ref.log_likelihood_ratio_test().test_statistic, rel=1e-6)
    beta, V = ref.params_.to_numpy(), ref.variance_matrix_.to_numpy()
    assert tests["wald_chi2"] == pytest.approx(float(beta @ np.linalg.solve(V, beta)), rel=1e-6)


def test_bad_endpoint_and_cli(bundled: Cohort, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="endpoints must be among lc, os"):
        build_report(bundled, tmp_path, endpoints=["pfs"])
    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "r"), "--endpoints", "os"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.html").exists()
    assert (tmp_path / "r" / "tables" / "os_univariate.csv").exists()
    assert not (tmp_path / "r" / "tables" / "lc_univariate.csv").exists()  # only the endpoints asked for
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert set(summary["endpoints"]) == {"os"}
    assert summary["patients"] == 36
    assert summary["endpoints"]["os"]["multivariable_cox"]["landmark_months"] == 3
    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "x"), "--data", str(tmp_path / "none.csv")])
    assert result.exit_code == 2
    assert "file not found" in result.output


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed (.ci/run installs r-cran-survival)")
@pytest.mark.parametrize("endpoint", ["lc", "os"])
def test_numbers_match_r_survival(bundled: Cohort, endpoint: str, tmp_path: Path) -> None:
    """R's survival package (survdiff, coxph with Efron ties) on the same data, to 1e-4."""
    d = bundled.data
    frame = d.assign(T=d[f"{endpoint}_months"], E=d[f"{endpoint}_event"])
    groups = {f: np.asarray(fn(frame)).astype(str) for f, fn in STUDY_GROUPINGS.items() if f != "short_term_response"}
    pd.DataFrame({"T": frame["T"], "E": frame["E"], **groups}).to_csv(tmp_path / "uni.csv", index=False)
    sd = survival_data(d, endpoint, landmark_months=3, feature_columns=["response_3mo"])  # type: ignore[arg-type]
    pd.DataFrame(
        {
            "T": sd.y["time"],
            "E": sd.y["event"].astype(int),
            "d90": (sd.X["d90_gy"] >= 110).astype(int).to_numpy(),
            "resp": sd.X["response_3mo"].isin(["CR", "PR"]).astype(int).to_numpy(),
        }
    ).to_csv(tmp_path / "cox.csv", index=False)
    script = tmp_path / "check.R"
    script.write_text(f"""
suppressMessages(library(survival))
u <- read.csv("{tmp_path / "uni.csv"}", check.names = FALSE, colClasses = "character")
u$T <- as.numeric(u$T); u$E <- as.numeric(u$E)
for (f in setdiff(names(u), c("T", "E"))) {{
  s <- survdiff(Surv(T, E) ~ u[[f]], data = u)
  cat("logrank", f, sprintf("%.10f", s$chisq), "\\n")
}}
c <- read.csv("{tmp_path / "cox.csv"}")
m <- coxph(Surv(T, E) ~ d90 + resp, data = c, ties = "efron")
ci <- exp(confint(m))
cat("cox", sprintf("%.10f", exp(coef(m))), sprintf("%.10f", ci[, 1]), sprintf("%.10f", ci[, 2]), "\\n")
""")
    out = subprocess.run(["Rscript", str(script)], capture_output=True, text=True, timeout=120, check=True).stdout
    ours = univariate_table(d, endpoint)
    for line in out.splitlines():
        parts = line.split()
        if parts[0] == "logrank":
            got = ours.loc[ours["factor"] == parts[1], "log-rank χ²"].iloc[0]
            assert got == pytest.approx(float(parts[2]), rel=1e-4, abs=1e-8), parts[1]
        elif parts[0] == "cox":
            r = np.array(parts[1:], dtype=float).reshape(3, 2)
            table, _ = multivariable_cox(d, endpoint)
            np.testing.assert_allclose(table["hr"], r[0], rtol=1e-4)
            np.testing.assert_allclose(table["hr_lower_95"], r[1], rtol=1e-4)
            np.testing.assert_allclose(table["hr_upper_95"], r[2], rtol=1e-4)
    assert "cox" in out
    assert out.count("logrank") == len(groups)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    """Every figure decodes and has a size when a real browser lays the page out."""
    loaded, total = rendered_images(report, tmp_path)
    assert total >= 6
    assert loaded == total


def test_cutoffs_are_configurable(bundled: Cohort, tmp_path: Path) -> None:
    table = univariate_table(bundled.data, "os", {"d90_gy": 100})
    rows = table[table["factor"] == "d90_gy"]
    assert set(rows["group"]) == {"<100", ">=100"}
    assert rows["n"].sum() == 36
    assert rows.loc[rows["group"] == ">=100", "n"].iloc[0] == (bundled.data["d90_gy"] >= 100).sum()
    with pytest.raises(UserInputError, match="no configurable cut-off for 'kps'"):
        univariate_table(bundled.data, "os", {"kps": 70})
    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path), "--cutoff", "d90_gy=abc"])
    assert result.exit_code == 2


# R 4.2.2, survival 3.5.3, on the published design of each endpoint (tests/data/published_<endpoint>.csv):
#   cox.zph(coxph(Surv(time, event) ~ ., data = df, ties = "efron"), transform = t)$table[, "chisq"]
R_ZPH = {
    "lc": {
        "km": [0.0032898880488, 3.38460768301, 3.45440725272],
        "rank": [0.0655260042509, 7.04327070767, 7.42042102216],
    },
    "os": {
        "km": [0.731406007264, 0.00869509116323, 0.731587603806],
        "rank": [0.552612918709, 0.0361073269641, 0.566697194794],
    },
}


@pytest.mark.parametrize("endpoint", ["lc", "os"])
def test_ph_checks_show_r_cox_zph_with_km_and_rank_time(bundled: Cohort, endpoint: str) -> None:
    """survival ≥ 3.0's score test; before it, the report's approximation put LC CR+PR at χ² 0.33."""
    from riskmodel.reporting.survival_tables import ph_checks

    table = ph_checks(bundled.data, endpoint).set_index("covariate")  # type: ignore[arg-type]
    assert list(table.index) == ["d90_ge_110gy", "response_cr_pr", "GLOBAL"]
    assert list(table["df"]) == [1, 1, 2]
    for transform in ("km", "rank"):
        np.testing.assert_allclose(table[f"χ² ({transform})"], R_ZPH[endpoint][transform], rtol=1e-8)
    if endpoint == "lc":
        assert table.loc["response_cr_pr", "χ² (km)"] == pytest.approx(3.3846, abs=1e-4)
        assert table.loc["response_cr_pr", "χ² (rank)"] == pytest.approx(7.0433, abs=1e-4)
        # the verdict reads km (p 0.066), R's default, though rank alone gives p 0.008
        assert table.loc["response_cr_pr", "p (rank)"] < 0.01
        assert table.loc["response_cr_pr", "verdict"].startswith("no evidence")


def test_report_shows_both_transforms_and_the_residual_plot(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert "km time, R&#x27;s default, which the verdict reads; rank time beside it" in text  # the caption, escaped
    assert text.count('alt="Local control scaled Schoenfeld residuals"') == 1
    assert text.count('alt="Overall survival scaled Schoenfeld residuals"') == 1
    table = pd.read_csv(report.parent / "tables" / "lc_ph_checks.csv")
    assert {"χ² (km)", "p (km)", "χ² (rank)", "p (rank)"} <= set(table.columns)
    summary = json.loads((report.parent / "summary.json").read_text())
    assert summary["endpoints"]["lc"]["ph_global_p"] == pytest.approx(0.177780857223, rel=1e-6)  # R's, km
    assert summary["endpoints"]["lc"]["ph_global_p_rank"] == pytest.approx(0.0244723710241, rel=1e-6)


def test_schoenfeld_plot_draws_each_covariate_with_its_smooth_band_and_beta(bundled: Cohort) -> None:
    from riskmodel.reporting.plots import pyplot, schoenfeld_plot
    from riskmodel.reporting.survival_tables import ph_residuals
    from riskmodel.stats import ph_smooth

    residuals = ph_residuals(bundled.data, "lc")
    fig = schoenfeld_plot(residuals, ["d90_ge_110gy", "response_cr_pr"], "LC")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2
    for j, ax in enumerate(panels):
        smooth = ph_smooth(residuals, j)
        assert smooth is not None
        np.testing.assert_allclose(ax.lines[0].get_ydata(), smooth.fit)
        assert ax.lines[1].get_ydata()[0] == pytest.approx(residuals.coef[j])  # the constant β̂
        points, band = ax.collections
        assert len(points.get_offsets()) == 13  # one point per LC death after the landmark
        assert band.get_paths()  # the filled 95% band
    pyplot().close(fig)


def test_schoenfeld_tests_of_one_covariate_give_the_same_global_test(bundled: Cohort) -> None:
    from riskmodel.reporting.survival_tables import schoenfeld_tests

    d = bundled.data
    design = pd.DataFrame(
        {
            "m1": (d["m_stage"] == "M1").astype(float).to_numpy(),
            "T": d["os_months"].to_numpy(),
            "E": d["os_event"].to_numpy(),
        }
    )
    one = schoenfeld_tests(design)
    for transform in ("km", "rank"):
        assert one.loc[1, f"χ² ({transform})"] == pytest.approx(one.loc[0, f"χ² ({transform})"], rel=1e-10)


def test_optional_columns_absent_or_partly_missing(bundled: Cohort, tmp_path: Path) -> None:
    """A valid cohort without optional columns gets a report; missing values are never grouped."""
    from riskmodel.cohort import from_frame

    d = bundled.data.copy()
    d.loc[d.index[:5], "seed_activity_mci"] = np.nan  # five patients without seed activity
    d.loc[d.index[5:8], "response_3mo"] = np.nan  # three without a recorded response
    partial = from_frame(d.reset_index(drop=True))
    table = univariate_table(partial.data, "os")
    activity = table[table["factor"] == "seed_activity_mci"]
    assert activity["n"].sum() == 31
    assert (activity["missing"] == 5).all()
    _, tests = multivariable_cox(partial.data, "os")
    assert tests["missing_response"] == 3
    assert tests["patients"] == 33
    reduced = from_frame(
        bundled.data.drop(
            columns=[
                "response_3mo",
                "seed_activity_mci",
                "post_implant_chemo",
                "prior_ebrt_dose_gy",
                "prior_ebrt_fractions",
            ]
        )
    )
    path = build_report(reduced, tmp_path / "reduced")
    text = path.read_text(encoding="utf-8")
    assert "No 3-month response in this cohort" in text
    assert (
        "seed_activity_mci" not in pd.read_csv(tmp_path / "reduced" / "tables" / "os_univariate.csv")["factor"].values
    )


def test_exploratory_is_judged_from_the_data_not_from_the_study(tmp_path: Path) -> None:
    """The same report of 36 patients and of 4,000 (synthetic, on the study's columns): only the
    first is labelled exploratory (before: every report said "with this few events")."""
    from riskmodel.cohort.synthetic import generate

    small = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "small"), "--endpoints", "os"])
    assert small.exit_code == 0, small.output
    html = (tmp_path / "small" / "report.html").read_text()
    assert "Exploratory: OS (36 patients, 25 events) is below Riley et al." in html.replace("&#x27;", "'")
    assert json.loads((tmp_path / "small" / "summary.json").read_text())["exploratory"] == {"os": True}

    generate(4000, seed=3).to_csv(tmp_path / "large.csv", index=False)
    args = ["report", "--out", str(tmp_path / "large"), "--data", str(tmp_path / "large.csv"), "--endpoints", "lc,os"]
    large = CliRunner().invoke(app, args)
    assert large.exit_code == 0, large.output
    html = (tmp_path / "large" / "report.html").read_text().replace("&#x27;", "'")
    assert "xploratory" not in html
    assert "meets Riley et al.'s minimum sample size" in html
    assert json.loads((tmp_path / "large" / "summary.json").read_text())["exploratory"] == {"lc": False, "os": False}
