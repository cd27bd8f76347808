"""``riskmodel report EXPERIMENT`` on a declared cohort: its numbers against R, what it leaves out, its CLI.

References and tolerances (R 4.2, survival ≥ 3.0, rms, mice; each computes its own groups, spline
basis and event coding from the raw export, so the grouping and encoding are checked too):

* log-rank χ² per covariate against ``survdiff``: 1e-8 relative;
* Kaplan-Meier medians and their 95% intervals, the reverse-KM median follow-up, and the rates at
  the horizons (log-log intervals) against ``survfit``: 1e-8 relative;
* the multivariable Cox HRs, 95% CIs, p, Wald and likelihood-ratio χ² against ``coxph`` (Efron)
  with ``rms::rcspline.eval`` for the declared spline: 1e-6 relative (both converge to 1e-12; the
  slack is for another BLAS);
* the proportional-hazards tests per covariate (its columns jointly) and global against
  ``cox.zph(fit, transform, terms = TRUE)``: 1e-6 relative;
* under ``missing: impute``, the pooled table against ``mice::pool`` of ``coxph`` fits on the
  same completed datasets: 1e-6 relative (as tests/stats/test_pooling.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.config import load_experiment
from riskmodel.workflow import experiment_report
from riskmodel.workflow.prepare import load_cohort

HAS_R = shutil.which("Rscript") is not None
needs_r = pytest.mark.skipif(not HAS_R, reason="R is not installed (.ci/run installs r-cran-survival)")
DAYS_PER_MONTH = 365.25 / 12

COVARIATES = [
    {"name": "age", "column": "Age (years)", "kind": "numeric", "unit": "years", "encoding": "spline", "knots": 4},
    {"name": "size", "column": "Size (cm)", "kind": "numeric", "unit": "cm", "encoding": "threshold", "threshold": 3},
    {"name": "grade", "column": "Grade", "kind": "ordinal", "levels": ["1", "2", "3"]},
    {"name": "arm", "column": "Arm", "kind": "categorical", "levels": ["A", "B", "C"], "reference": "A"},
    {"name": "smoker", "column": "Smoker", "kind": "binary"},
    {
        "name": "histology",
        "column": "Histology",
        "kind": "categorical",
        "levels": ["adeno", "squamous", "other", "unknown"],
        "reference": "adeno",
    },
    {"name": "placeholder", "column": "Placeholder", "kind": "numeric"},
]
IMPUTED = [
    {"name": "age", "column": "Age (years)", "kind": "numeric", "unit": "years"},
    {"name": "marker", "column": "Marker (ng/mL)", "kind": "numeric", "encoding": "log", "missing": "impute"},
    {"name": "ecog", "column": "ECOG", "kind": "ordinal", "levels": ["0", "1", "2"], "missing": "impute"},
]


def export(n: int, seed: int) -> pd.DataFrame:
    """A clinical export: IDs, two centres, six covariates (one rare histology level), a constant
    placeholder column, free-text notes, OS in days with death from other causes as code 2."""
    rng = np.random.default_rng(seed)
    age = rng.normal(62, 9, n).round()
    size = rng.gamma(4, 0.8, n).round(1)
    grade = rng.integers(1, 4, n)
    arm = rng.choice(["A", "B", "C"], n, p=[0.4, 0.35, 0.25])
    smoker = rng.random(n) < 0.4
    histology = np.where(np.arange(n) < 4, "other", rng.choice(["adeno", "squamous"], n, p=[0.6, 0.4]))
    lp = 0.03 * (age - 62) + 0.5 * (size >= 3) + 0.3 * grade + 0.4 * (arm == "C") - 0.3 * (arm == "B") + 0.3 * smoker
    days = rng.exponential(400 * np.exp(-lp)) + 1
    censor = rng.uniform(200, 1500, n)
    status = np.where(days <= censor, np.where(rng.random(n) < 0.15, 2, 1), 0)
    return pd.DataFrame(
        {
            "Patient ID": [f"PT-{i:04d}" for i in range(n)],
            "Site": rng.choice(["North", "South"], n),
            "Age (years)": age,
            "Size (cm)": size,
            "Grade": grade,
            "Arm": arm,
            "Smoker": np.where(smoker, "yes", "no"),
            "Histology": histology,
            "Placeholder": 0,
            "Notes": [f"seen by Dr Canary{i} on ward {i % 7}" for i in range(n)],
            "OS (days)": np.ceil(np.minimum(days, censor)).astype(int),
            "Status": status,
        }
    )


def imputed_export(n: int, seed: int) -> pd.DataFrame:
    """Age, a log-normal marker and ECOG, the last two missing at random (more often after an event)."""
    rng = np.random.default_rng(seed)
    age = rng.normal(62, 9, n).round()
    marker = np.exp(rng.normal(1.5, 0.6, n) + 0.01 * (age - 62)).round(2)
    ecog = np.clip(np.round(rng.normal(0.8, 0.7, n)), 0, 2).astype(int)
    lp = 0.02 * (age - 62) + 0.6 * np.log(marker) + 0.4 * ecog
    days = rng.exponential(900 * np.exp(-lp)) + 1
    censor = rng.uniform(100, 1500, n)
    status = (days <= censor).astype(int)
    frame = pd.DataFrame(
        {
            "Patient ID": [f"MI-{i:04d}" for i in range(n)],
            "Age (years)": age,
            "Marker (ng/mL)": marker.astype(object),
            "ECOG": ecog.astype(object),
            "OS (days)": np.ceil(np.minimum(days, censor)).astype(int),
            "Status": status,
        }
    )
    frame.loc[rng.random(n) < 0.15 + 0.15 * status, "Marker (ng/mL)"] = ""
    frame.loc[rng.random(n) < 0.12, "ECOG"] = ""
    return frame


def experiment(folder: Path, frame: pd.DataFrame, covariates: list[dict[str, Any]], **extra: Any) -> Path:
    frame.to_csv(folder / "export.csv", index=False)
    cohort = {
        "id": "Patient ID",
        "covariates": covariates,
        "endpoints": [
            {"name": "os", "time": "OS (days)", "time_unit": "days", "event": "Status", "event_codes": [1]}
            | ({"competing_codes": [2]} if (frame["Status"] == 2).any() else {})
        ],
    }
    if "Site" in frame.columns:
        cohort["centre"] = "Site"
    raw = {"name": "declared-report", "data": {"path": "export.csv"}, "cohort": cohort, "horizons": [6, 12], **extra}
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def declared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, Path]:
    """(the experiment, its export, the report folder) of a 160-patient declared cohort."""
    folder = tmp_path_factory.mktemp("declared")
    frame = export(160, seed=7)
    path = experiment(folder, frame, COVARIATES)
    experiment_report(load_experiment(path), folder / "report")
    return path, frame, folder / "report"


def tables(report: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(report / "tables" / f"{name}.csv")


def run_r(script: str, folder: Path, *args: str) -> dict[str, np.ndarray]:
    (folder / "check.R").write_text(script, encoding="utf-8")
    run = subprocess.run(["Rscript", str(folder / "check.R"), *args], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    out: dict[str, np.ndarray] = {}
    for line in run.stdout.splitlines():
        key, *values = line.split("\t")
        out[key] = np.array([float("nan") if v.strip() == "NA" else float(v) for v in values])
    return out


R_DECLARED = r"""
args <- commandArgs(trailingOnly = TRUE)
suppressMessages({library(survival); library(rms)})
d <- read.csv(args[1], check.names = FALSE, stringsAsFactors = FALSE)
d$T <- d[["OS (days)"]] * 12 / 365.25
d$E <- as.integer(d$Status == 1)
age <- d[["Age (years)"]]; size <- d[["Size (cm)"]]
d$agesp <- rcspline.eval(age, knots = quantile(age, c(.05, .35, .65, .95)), inclx = TRUE, norm = 2)
colnames(d$agesp) <- c("", "_rcs1", "_rcs2")
d$size3 <- as.integer(size >= 3)
d$arm <- factor(d$Arm, levels = c("A", "B", "C"))
d$smoker <- as.integer(d$Smoker == "yes")
d$hist <- factor(d$Histology, levels = c("adeno", "squamous", "other"))
out <- function(key, x) writeLines(paste(c(key, trimws(formatC(x, digits = 15, format = "g"))), collapse = "\t"))
groups <- list(age = ifelse(age >= median(age), "hi", "lo"), size = d$size3, grade = d$Grade, arm = d$Arm,
               smoker = d$Smoker, histology = d$Histology)
for (g in names(groups)) { s <- survdiff(Surv(d$T, d$E) ~ groups[[g]]); out(paste0("logrank_", g), s$chisq) }
q <- quantile(survfit(Surv(T, E) ~ 1, data = d), 0.5)
out("median", c(q$quantile, q$lower, q$upper))
q <- quantile(survfit(Surv(T, 1 - E) ~ 1, data = d), 0.5)
out("followup", c(q$quantile, q$lower, q$upper))
s <- summary(survfit(Surv(T, E) ~ 1, data = d, conf.type = "log-log"), times = c(6, 12))
out("rates", c(s$surv, s$lower, s$upper))
fit <- coxph(Surv(T, E) ~ agesp + size3 + Grade + arm + smoker + hist, data = d, ties = "efron",
             control = coxph.control(eps = 1e-12, iter.max = 100, toler.chol = 1e-13))
se <- sqrt(diag(vcov(fit)))
b <- coef(fit)
out("hr", exp(b)); out("lower", exp(b - qnorm(.975) * se)); out("upper", exp(b + qnorm(.975) * se))
out("p", summary(fit)$coefficients[, "Pr(>|z|)"])
out("lr", summary(fit)$logtest["test"]); out("wald", coef(fit) %*% solve(vcov(fit), coef(fit)))
for (tr in c("km", "rank")) {
  z <- cox.zph(fit, transform = tr)
  out(paste0("zph_", tr), z$table[, "chisq"]); out(paste0("zphdf_", tr), z$table[, "df"])
}
"""


@needs_r
def test_declared_report_numbers_match_r(declared: tuple[Path, pd.DataFrame, Path], tmp_path: Path) -> None:
    _, frame, report = declared
    frame.to_csv(tmp_path / "export.csv", index=False)
    r = run_r(R_DECLARED, tmp_path, str(tmp_path / "export.csv"))
    uni = tables(report, "os_univariate")
    for covariate in ("age", "size", "grade", "arm", "smoker", "histology"):
        got = uni.loc[uni["covariate"] == covariate, "log-rank χ²"].iloc[0]
        assert got == pytest.approx(r[f"logrank_{covariate}"][0], rel=1e-8), covariate
    summary = tables(report, "os_summary").set_index("figure")[["estimate", "lower 95%", "upper 95%"]]
    np.testing.assert_allclose(summary.loc["median survival, KM (months)"], r["median"], rtol=1e-8)
    np.testing.assert_allclose(summary.loc["median follow-up, reverse KM (months)"], r["followup"], rtol=1e-8)
    rates = summary.loc[["S(6) %", "S(12) %"]].to_numpy().T.ravel() / 100
    np.testing.assert_allclose(rates, r["rates"], rtol=1e-8)
    cox = tables(report, "os_multivariable_cox")
    assert list(cox["feature"]) == [
        "age",
        "age_rcs1",
        "age_rcs2",
        "size_ge_3",
        "grade",
        "arm_B",
        "arm_C",
        "smoker",
        "histology_squamous",
        "histology_other",
    ]
    for ours, theirs in (("hr", "hr"), ("hr_lower_95", "lower"), ("hr_upper_95", "upper"), ("p", "p")):
        np.testing.assert_allclose(cox[ours], r[theirs], rtol=1e-6, err_msg=ours)
    tests = json.loads((report / "summary.json").read_text())["endpoints"]["os"]["multivariable_cox"]
    assert tests["lr_chi2"] == pytest.approx(r["lr"][0], rel=1e-6)
    assert tests["wald_chi2"] == pytest.approx(r["wald"][0], rel=1e-6)
    ph = tables(report, "os_ph_checks")
    assert list(ph["covariate"]) == ["age", "size", "grade", "arm", "smoker", "histology", "GLOBAL"]
    np.testing.assert_array_equal(ph["df"], r["zphdf_km"])  # spline 3, arm 2, histology 2, global 10
    for transform in ("km", "rank"):
        np.testing.assert_allclose(ph[f"χ² ({transform})"], r[f"zph_{transform}"], rtol=1e-6, err_msg=transform)


def test_a_constant_column_is_left_out_with_a_note(declared: tuple[Path, pd.DataFrame, Path]) -> None:
    _, _, report = declared
    text = (report / "report.html").read_text(encoding="utf-8")
    assert "covariate placeholder has the same value for every patient: left out of the models" in text
    summary = json.loads((report / "summary.json").read_text())
    assert "placeholder" not in summary["covariates"]
    assert any("placeholder" in note for note in summary["left_out"])
    for name in ("characteristics", "missing_data", "os_univariate", "os_multivariable_cox", "os_ph_checks"):
        assert "placeholder" not in (report / "tables" / f"{name}.csv").read_text(), name
    assert 'alt="OS by placeholder"' not in text


def test_groups_say_how_they_were_formed_and_sparse_levels_are_marked(
    declared: tuple[Path, pd.DataFrame, Path],
) -> None:
    _, frame, report = declared
    uni = tables(report, "os_univariate").fillna({"note": ""})
    by = uni.groupby("covariate", sort=False)["groups by"].first()
    assert by["age"] == f"median {frame['Age (years)'].median():g} years"
    assert by["size"] == "declared threshold 3 cm"
    assert by["arm"] == "declared levels"
    other = uni[(uni["covariate"] == "histology") & (uni["group"] == "other")].iloc[0]
    assert other["n"] == 4
    assert other["note"].startswith("sparse")
    unknown = uni[(uni["covariate"] == "histology") & (uni["group"] == "unknown")].iloc[0]
    assert (unknown["n"], unknown["note"]) == (0, "no patients")
    assert uni.loc[uni["covariate"] == "histology", "df"].iloc[0] == 2  # three groups with patients
    assert set(uni.loc[uni["covariate"] == "smoker", "group"]) == {"no", "yes"}
    n_smoker = uni.loc[uni["covariate"] == "smoker", "n"]
    assert n_smoker.sum() == len(frame)


def test_characteristics_overall_and_by_centre(declared: tuple[Path, pd.DataFrame, Path]) -> None:
    _, frame, report = declared
    chars = tables(report, "characteristics")
    north, south = (frame["Site"] == "North").sum(), (frame["Site"] == "South").sum()
    assert list(chars.columns) == ["covariate", "statistic", "all (n=160)", f"North (n={north})", f"South (n={south})"]
    arm_c = chars[(chars["covariate"] == "arm") & (chars["statistic"] == "C, n (%)")].iloc[0]
    k = (frame["Arm"] == "C").sum()
    assert arm_c["all (n=160)"] == f"{k} ({100 * k / 160:.0f}%)"
    size = chars[chars["covariate"] == "size (cm)"].set_index("statistic")["all (n=160)"]
    q1, med, q3 = np.percentile(frame["Size (cm)"], [25, 50, 75])
    assert size["median (IQR)"] == f"{med:.3g} ({q1:.3g}-{q3:.3g})"  # three significant digits
    assert size["range"] == f"{frame['Size (cm)'].min():.3g}-{frame['Size (cm)'].max():.3g}"


def test_small_cohort_is_exploratory_by_riley_and_nothing_identifies_a_patient(
    declared: tuple[Path, pd.DataFrame, Path],
) -> None:
    _, frame, report = declared
    summary = json.loads((report / "summary.json").read_text())["endpoints"]["os"]
    assert summary["exploratory"] is True
    assert summary["sample_size"]["adequate"] is False
    assert summary["sample_size"]["minimum_n"] > 160
    text = (report / "report.html").read_text(encoding="utf-8")
    assert text.count("EXPLORATORY: below Riley et al.&#x27;s minimum n") >= 3  # captions (figures carry it too)
    everything = b"".join(p.read_bytes() for p in report.rglob("*") if p.is_file())
    for value in (*frame["Patient ID"][:20], "Canary1", "ward"):
        assert value.encode() not in everything, value


def test_exploratory_follows_the_assessment_not_the_study(
    declared: tuple[Path, pd.DataFrame, Path], tmp_path: Path
) -> None:
    from riskmodel.reporting import build_declared_report
    from riskmodel.stats.samplesize import SampleSize
    from riskmodel.workflow.prepare import drop_uninformative

    path, _, _ = declared
    config = load_experiment(path)
    cohort = load_cohort(config)
    config, notes = drop_uninformative(config, cohort)
    adequate = SampleSize(160, 100, 10, 0.2, 0.9, {"shrinkage": 150, "optimism": 120}, 0.95)
    build_declared_report(cohort, config, tmp_path, sample_sizes={"os": adequate}, notes=notes)
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "EXPLORATORY" not in text
    assert json.loads((tmp_path / "summary.json").read_text())["endpoints"]["os"]["exploratory"] is False


R_POOL = r"""
args <- commandArgs(trailingOnly = TRUE)
suppressMessages({library(survival); library(mice)})
d <- read.csv(args[1], check.names = FALSE)
fits <- lapply(split(d, d$.imp), function(x) coxph(Surv(T, E) ~ ., data = x[, names(x) != ".imp"], ties = "efron",
               control = coxph.control(eps = 1e-12, iter.max = 100, toler.chol = 1e-13)))
s <- summary(pool(as.mira(fits)), conf.int = TRUE)
out <- function(key, x) writeLines(paste(c(key, trimws(formatC(x, digits = 15, format = "g"))), collapse = "\t"))
out("hr", exp(s$estimate)); out("lower", exp(s[["2.5 %"]])); out("upper", exp(s[["97.5 %"]]))
out("p", s$p.value); out("df", s$df); out("fmi", pool(as.mira(fits))$pooled$fmi)
"""


@needs_r
def test_imputed_covariates_give_the_pooled_table_of_mice(tmp_path: Path) -> None:
    from riskmodel.cohort import survival_data
    from riskmodel.reporting.declared_cox import fit_imputed

    frame = imputed_export(220, seed=3)
    path = experiment(tmp_path, frame, IMPUTED, imputation={"n_imputations": 5, "n_iter": 5}, seed=11)
    config = load_experiment(path)
    experiment_report(config, tmp_path / "report")
    cox = tables(tmp_path / "report", "os_multivariable_cox")
    assert list(cox["feature"]) == ["age", "log_marker", "ecog"]
    text = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "pooled over 5 imputations by Rubin&#x27;s rules" in text
    ph = json.loads((tmp_path / "report" / "summary.json").read_text())["endpoints"]["os"]
    complete = frame[["Marker (ng/mL)", "ECOG"]].ne("").all(axis=1).sum()
    assert ph["ph_patients"] == complete
    assert f"on the {complete} complete cases" in text
    # the same imputations, replayed, fitted and pooled by R
    cohort = load_cohort(config)
    sd = survival_data(cohort, "os", feature_columns=config.covariates)
    impute = [config.cohort.covariate("marker"), config.cohort.covariate("ecog")]  # type: ignore[union-attr]
    mi, inputs = fit_imputed(sd.X, sd.y, config.cohort, config.covariates, impute, n_imputations=5, n_iter=5, seed=11)  # type: ignore[arg-type]
    long = []
    for i, (encoding, completed) in enumerate(zip(mi.encodings_, mi.completed_training(inputs, sd.y), strict=True)):
        design = pd.DataFrame(encoding.transform(completed), columns=encoding.get_feature_names_out())
        long.append(design.assign(T=sd.y["time"], E=sd.y["event"].astype(int), **{".imp": i + 1}))
    pd.concat(long).to_csv(tmp_path / "completed.csv", index=False, float_format="%.17g")
    r = run_r(R_POOL, tmp_path, str(tmp_path / "completed.csv"))
    for ours, theirs in (("hr", "hr"), ("hr_lower_95", "lower"), ("hr_upper_95", "upper"), ("p", "p")):
        np.testing.assert_allclose(cox[ours], r[theirs], rtol=1e-6, err_msg=ours)
    np.testing.assert_allclose(cox["df"], r["df"], rtol=1e-6)
    np.testing.assert_allclose(cox["fmi"], r["fmi"], rtol=1e-6)


def test_cli_declared_report_exits_0_and_a_bad_declaration_exits_2_with_one_line(
    declared: tuple[Path, pd.DataFrame, Path], tmp_path: Path
) -> None:
    path, _, _ = declared
    result = CliRunner().invoke(app, ["report", str(path), "--out", str(tmp_path / "r"), "--cutoff", "age=70"])
    assert result.exit_code == 0, result.output
    uni = tables(tmp_path / "r", "os_univariate")
    # a CSV text cell starting with "-" carries OWASP's leading quote, so a spreadsheet shows it as text
    assert uni.loc[uni["covariate"] == "age", "groups by"].iloc[0] == "'--cutoff 70 years"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["cohort"]["covariates"][3] = {"name": "arm", "column": "Arm", "kind": "categorical"}  # no levels
    raw["data"]["path"] = str(path.parent / "export.csv")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = CliRunner().invoke(app, ["report", str(bad), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "cohort.covariates" in lines[0]
    assert "needs its levels" in lines[0]
    assert not (tmp_path / "x" / "report.html").exists()
    result = CliRunner().invoke(app, ["report", str(path), "--out", str(tmp_path / "y"), "--cutoff", "grade=2"])
    assert result.exit_code == 2
    assert "not a numeric covariate" in result.output
    help_text = CliRunner().invoke(app, ["report", "--help"]).output
    assert "EXPERIMENT" in help_text
    assert "declared cohort" in help_text
