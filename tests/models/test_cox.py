"""Cox against lifelines' CoxPHFitter (coefficients, SEs) and R's survfit.coxph (S(t | x), by ties), same design."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import Cohort, survival_data
from riskmodel.cohort.synthetic import generate
from riskmodel.errors import RiskModelWarning
from riskmodel.features import ClinicalFeatures
from riskmodel.models import CoxPH


def design(cohort: Cohort | pd.DataFrame, endpoint: str) -> tuple[pd.DataFrame, np.ndarray]:
    data = survival_data(cohort, endpoint, landmark_months=3, feature_columns=["response_3mo"])  # type: ignore[arg-type]
    X = ClinicalFeatures("study", landmark_months=3).set_output(transform="pandas").fit_transform(data.X)
    return X, data.y


def lifelines_fit(X: pd.DataFrame, y: np.ndarray, **kwargs: float):  # type: ignore[no-untyped-def]
    """lifelines fitted to convergence: its default stopping rule can leave a gradient of ~1e-2."""
    from lifelines import CoxPHFitter

    return CoxPHFitter(**kwargs).fit(
        X.assign(T=y["time"], E=y["event"]), "T", "E", fit_options={"precision": 1e-12, "max_steps": 500}
    )


def test_hr_table_matches_lifelines_on_the_bundled_cohort(bundled: Cohort) -> None:
    X, y = design(bundled, "os")
    ours = CoxPH(penalty=0).fit(X, y).hazard_ratios_
    ref = lifelines_fit(X, y).summary
    tol = {"atol": 1e-4, "rtol": 1e-4}
    np.testing.assert_allclose(ours["coef"], ref["coef"], **tol)
    np.testing.assert_allclose(ours["hr"], ref["exp(coef)"], **tol)
    np.testing.assert_allclose(ours["se"], ref["se(coef)"], **tol)
    np.testing.assert_allclose(ours["hr_lower_95"], ref["exp(coef) lower 95%"], **tol)
    np.testing.assert_allclose(ours["hr_upper_95"], ref["exp(coef) upper 95%"], **tol)
    np.testing.assert_allclose(ours["p"], ref["p"], **tol)
    assert list(ours.index) == list(ref.index)


def test_efron_ties_match_lifelines_coefficients_and_standard_errors() -> None:
    frame = generate(3000, seed=9)
    frame["os_months"] = np.ceil(frame["os_months"])  # heavy ties: whole months
    X, y = design(frame, "os")
    model = CoxPH(penalty=0).fit(X, y)
    ref = lifelines_fit(X, y)
    np.testing.assert_allclose(model.coef_, ref.params_.to_numpy(), atol=1e-6)
    np.testing.assert_allclose(model.hazard_ratios_["se"], ref.standard_errors_.to_numpy(), rtol=1e-5)


HAS_R = shutil.which("Rscript") is not None
R_SURVFIT = """
suppressMessages(library(survival))
f <- function(key, x) writeLines(paste(c(key, trimws(formatC(x, digits = 17, format = "g"))), collapse = "\t"))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
new <- read.csv(args[2])
times <- as.numeric(strsplit(args[3], ",")[[1]])
for (ties in c("efron", "breslow")) {
  fit <- coxph(Surv(time, event) ~ ., data = d, ties = ties,
               control = coxph.control(eps = 1e-14, iter.max = 200, toler.chol = 1e-15))
  s <- summary(survfit(fit, newdata = new), times = times, extend = TRUE)
  f(paste0(ties, ":coef"), coef(fit))
  f(paste0(ties, ":surv"), s$surv)  # times × patients, flattened patient by patient
}
"""


@pytest.mark.skipif(not HAS_R, reason="needs Rscript (R's survival)")
@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_survival_matches_r_survfit_of_the_same_ties(ties: str, tmp_path: Path) -> None:
    """S(t | x) equals R's ``survfit(coxph(…, ties = ties), newdata)``: the baseline follows the
    ties (Efron fit → Efron's baseline, survfit's ctype 2; Breslow → Breslow's, ctype 1), at several
    t and x, on whole-month times (many ties). Tolerance 1e-8 absolute (measured: ~1e-13)."""
    frame = generate(600, seed=21)
    frame["os_months"] = np.ceil(frame["os_months"])
    X, y = design(frame, "os")
    assert len(np.unique(y["time"][y["event"]])) < y["event"].sum() / 3  # tied event times, many
    times = [1.0, 4.0, 9.0, 17.0, 30.0]
    new = X.iloc[[0, 5, 17, 123, 400]]
    X.assign(time=y["time"], event=y["event"].astype(int)).to_csv(tmp_path / "d.csv", index=False)
    new.to_csv(tmp_path / "new.csv", index=False)
    ref = run_r(R_SURVFIT, tmp_path, str(tmp_path / "d.csv"), str(tmp_path / "new.csv"), ",".join(map(str, times)))
    model = CoxPH(penalty=0, ties=ties).fit(X, y)  # type: ignore[arg-type]
    np.testing.assert_allclose(model.coef_, ref[f"{ties}:coef"], atol=1e-9)
    ours = model.predict_survival(new, times).to_numpy()
    np.testing.assert_allclose(ours, ref[f"{ties}:surv"].reshape(len(new), len(times)), atol=1e-8, rtol=0)
    other = CoxPH(penalty=0, ties="breslow" if ties == "efron" else "efron").fit(X, y)
    assert np.abs(other.predict_survival(new, times).to_numpy() - ours).max() > 1e-4  # the test can tell them apart


def run_r(script: str, folder: Path, *args: str) -> dict[str, np.ndarray]:
    (folder / "check.R").write_text(script, encoding="utf-8")
    run = subprocess.run(["Rscript", str(folder / "check.R"), *args], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    out: dict[str, np.ndarray] = {}
    for line in run.stdout.splitlines():
        key, *values = line.split("\t")
        out[key] = np.array([float(v) for v in values])
    return out


def test_penalised_fit_has_no_wald_intervals_and_shrinks(bundled: Cohort) -> None:
    X, y = design(bundled, "os")
    free = CoxPH(penalty=0).fit(X, y)
    ridge = CoxPH(penalty=1.0).fit(X, y)
    assert ridge.hazard_ratios_["p"].isna().all()
    assert ridge.hazard_ratios_["se"].isna().all()
    standardised = lambda m: m.coef_ * X.std(ddof=0).to_numpy()  # noqa: E731
    assert np.linalg.norm(standardised(ridge)) < np.linalg.norm(standardised(free))
    lasso = CoxPH(penalty=0.5, l1_ratio=1.0).fit(X, y)
    assert (np.abs(standardised(lasso)) < 1e-3).sum() >= 1  # L1 pushes some coefficients to ~0


def test_separation_is_reported_not_hidden() -> None:
    X = pd.DataFrame({"x": [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]})
    y = np.array(
        [(False, 5.0), (False, 6.0), (False, 7.0), (True, 1.0), (True, 2.0), (True, 3.0)],
        dtype=[("event", "?"), ("time", "<f8")],
    )
    with pytest.warns(RiskModelWarning, match="did not converge"):
        model = CoxPH(penalty=0).fit(X, y)
    assert model.hazard_ratios_["p"].isna().all()
    assert np.isfinite(CoxPH(penalty=0.5).fit(X, y).coef_).all()  # a penalty tames it
