"""Fine-Gray and Gray's test against R's cmprsk (crr, predict.crr, cuminc), run live.

Tolerances: coefficients 1e-6 absolute (the brief asks 1e-4; both fits converge to ~1e-10), standard
errors and the whole robust variance 1e-6 relative, log-likelihoods 1e-8, the baseline cumulative
subdistribution hazard and predicted CIFs 1e-6 absolute. Gray's test: 1e-6 relative where no two
events of the cause share a time; with tied event times after earlier events, cuminc's tie
correction is not reproduced exactly (see ``test_gray_with_tied_event_times_is_close_to_cuminc``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import load_bundled, local_failure_competing
from riskmodel.cohort.synthetic import fine_gray_sample, generate
from riskmodel.errors import UserInputError
from riskmodel.stats import fine_gray, gray_test

needs_r = pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed (cmprsk)")

R_CRR = r"""
suppressMessages(library(cmprsk))
f <- function(key, x) writeLines(paste(c(key, trimws(formatC(x, digits = 17, format = "g"))), collapse = "\t"))
for (path in commandArgs(trailingOnly = TRUE)) {
  d <- read.csv(path)
  X <- as.matrix(d[, -(1:2), drop = FALSE])
  fit <- crr(d$time, d$cause, X, gtol = 1e-12, maxiter = 200)
  k <- basename(path)
  f(paste0(k, ":coef"), fit$coef); f(paste0(k, ":var"), fit$var)
  f(paste0(k, ":loglik"), c(fit$loglik, fit$loglik.null)); f(paste0(k, ":uftime"), fit$uftime)
  f(paste0(k, ":bfitj"), fit$bfitj)
  new <- X[c(1, 2, nrow(X)), , drop = FALSE]
  p <- predict(fit, new)
  f(paste0(k, ":cif"), p[, -1])
}
"""


def run_r(script: str, folder: Path, *args: str) -> dict[str, np.ndarray]:
    (folder / "check.R").write_text(script, encoding="utf-8")
    run = subprocess.run(["Rscript", str(folder / "check.R"), *args], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    out: dict[str, np.ndarray] = {}
    for line in run.stdout.splitlines():
        key, *values = line.split("\t")
        out[key] = np.array([float(v) for v in values])
    return out


def bundled_design() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bundled cohort: LC with death without local failure competing, from the implant."""
    data = load_bundled().data
    cr = local_failure_competing(data)
    X = np.column_stack(
        [data["d90_gy"] / 10, np.log(data["lesion_volume_cm3"]), data["recurrence_interval_months"] / 12]
    )
    return X, cr["time"].to_numpy(float), cr["event_type"].to_numpy(int)


def synthetic_design(n: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data = generate(n, seed=11)
    cr = local_failure_competing(data)
    X = np.column_stack(
        [
            (data["d90_gy"] - 100) / 10,
            np.log(data["lesion_volume_cm3"] / 21),
            np.log(data["recurrence_interval_months"] / 8.6),
            (data["age_years"] - 60) / 10,
            (data["m_stage"].astype(str) == "M1").astype(float),
        ]
    )
    return X, cr["time"].to_numpy(float), cr["event_type"].to_numpy(int)


def tied_design() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fine-Gray-true data with times rounded up to whole units: a few dozen distinct times."""
    X, time, cause = fine_gray_sample(600, [0.6, -0.4], seed=5)
    X = np.column_stack([X, (X[:, 0] > 0).astype(float)])
    return X, np.ceil(time * 2), cause


DESIGNS = {"bundled": bundled_design, "synthetic": synthetic_design, "ties": tied_design}


@pytest.fixture(scope="module")
def crr(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("crr")
    paths = []
    for name, make in DESIGNS.items():
        X, time, cause = make()
        frame = pd.DataFrame({"time": time, "cause": cause, **{f"x{i}": X[:, i] for i in range(X.shape[1])}})
        frame.to_csv(folder / name, index=False, float_format="%.17g")
        paths.append(str(folder / name))
    return run_r(R_CRR, folder, *paths)


@needs_r
@pytest.mark.parametrize("name", list(DESIGNS))
def test_fine_gray_equals_cmprsk_crr(name: str, crr: dict[str, np.ndarray]) -> None:
    """Coefficients, the robust variance (with the censoring term), log-likelihoods, baseline, CIFs."""
    X, time, cause = DESIGNS[name]()
    if name == "synthetic":
        assert len(np.unique(time[cause == 1])) < (cause == 1).sum()  # tied event times (PD at month 3)
    fit = fine_gray(X, time, cause)
    assert fit.converged
    np.testing.assert_allclose(fit.coef, crr[f"{name}:coef"], rtol=0, atol=1e-6)
    p = len(fit.coef)
    np.testing.assert_allclose(fit.cov, crr[f"{name}:var"].reshape(p, p), rtol=1e-6)
    np.testing.assert_allclose(fit.se, np.sqrt(np.diag(crr[f"{name}:var"].reshape(p, p))), rtol=1e-6)
    np.testing.assert_allclose([fit.loglik, fit.loglik_null], crr[f"{name}:loglik"], rtol=1e-8)
    np.testing.assert_allclose(fit.event_times, crr[f"{name}:uftime"], rtol=1e-12)
    np.testing.assert_allclose(fit.cumulative_hazard, np.cumsum(crr[f"{name}:bfitj"]), rtol=1e-6, atol=1e-9)
    cif = fit.cif(X[[0, 1, -1]], fit.event_times)  # predict.crr: one column per patient
    np.testing.assert_allclose(cif.ravel(), crr[f"{name}:cif"], rtol=0, atol=1e-6)


R_CUMINC = r"""
suppressMessages(library(cmprsk))
for (path in commandArgs(trailingOnly = TRUE)) {
  d <- read.csv(path)
  x <- if (is.null(d$strata)) cuminc(d$time, d$cause, d$group) else cuminc(d$time, d$cause, d$group, d$strata)
  x <- x$Tests
  writeLines(paste(c(basename(path), formatC(x["1", ], digits = 17, format = "g")), collapse = "\t"))
}
"""


def gray_cases() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]:
    data = load_bundled().data
    cr = local_failure_competing(data)
    t, c = cr["time"].to_numpy(float), cr["event_type"].to_numpy(int)
    syn = generate(2000, seed=11)
    cs = local_failure_competing(syn)
    ts, cc = cs["time"].to_numpy(float), cs["event_type"].to_numpy(int)
    X, time, cause = fine_gray_sample(1500, [0.5, -0.3], seed=8)
    three = np.digitize(X[:, 0], [-0.5, 0.5])
    stratum = (X[:, 1] > 0).astype(int)
    return {
        "bundled_d90": (t, c, (data["d90_gy"] >= 110).to_numpy().astype(int), None),
        "bundled_response": (t, c, data["response_3mo"].astype(str).to_numpy(), None),
        "synthetic_response": (ts, cc, syn["response_3mo"].astype(str).to_numpy(), None),
        "untied_two": (time, cause, (X[:, 0] > 0).astype(int), None),
        "untied_three": (time, cause, three, None),
        "untied_three_stratified": (time, cause, three, stratum),
    }


@pytest.fixture(scope="module")
def cuminc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("cuminc")
    paths = []
    for name, (time, cause, group, strata) in gray_cases().items():
        frame = pd.DataFrame({"time": time, "cause": cause, "group": group})
        if strata is not None:
            frame["strata"] = strata
        frame.to_csv(folder / name, index=False, float_format="%.17g")
        paths.append(str(folder / name))
    return run_r(R_CUMINC, folder, *paths)


@needs_r
@pytest.mark.parametrize("name", ["untied_two", "untied_three", "untied_three_stratified"])
def test_gray_equals_cuminc_without_tied_event_times(name: str, cuminc: dict[str, np.ndarray]) -> None:
    time, cause, group, strata = gray_cases()[name]
    result = gray_test(time, cause, group, strata=strata)
    statistic, p_value, df = cuminc[name]
    assert result.df == df
    assert result.statistic == pytest.approx(statistic, rel=1e-6)
    assert result.p_value == pytest.approx(p_value, rel=1e-6)


@needs_r
@pytest.mark.parametrize("name", ["bundled_d90", "bundled_response", "synthetic_response"])
def test_gray_with_tied_event_times_is_close_to_cuminc(name: str, cuminc: dict[str, np.ndarray]) -> None:
    """Tied event times that follow earlier events: cuminc's tie correction differs from ours by
    3e-4 (D90) and 7e-4 (response) relative on the bundled cohort, 3e-6 on the synthetic one; the
    score is identical. Held to 1e-3 relative until the correction is reproduced."""
    time, cause, group, strata = gray_cases()[name]
    result = gray_test(time, cause, group, strata=strata)
    statistic, p_value, df = cuminc[name]
    assert result.df == df
    assert result.statistic == pytest.approx(statistic, rel=1e-3)
    assert result.p_value == pytest.approx(p_value, rel=2e-2, abs=1e-12)


def test_gray_hand_example_with_one_tie() -> None:
    """Two events tied at t = 1 in groups of 2 and 2: Var = 2·(1/2)²·(2/4)·(4 − 2)/(4 − 1) = 1/3,
    score 1 − 2·(2/4) = 0 for group 1 (cuminc gives 0 and 1/3)."""
    result = gray_test([1.0, 1.0, 2.0, 2.0], [1, 1, 0, 0], [1, 2, 1, 2])
    assert result.statistic == pytest.approx(0.0, abs=1e-12)
    result = gray_test([1.0, 2.0, 3.0], [1, 0, 0], [1, 2, 2])  # score 2/3, variance 2/9: χ² = 2
    assert result.statistic == pytest.approx(2.0, rel=1e-12)


def test_fine_gray_recovers_the_true_coefficients_at_20000() -> None:
    """Data from Fine & Gray's section-5 design, where the model is true: each 95 % CI covers β."""
    beta = np.array([0.5, -0.5, 0.25])
    X, time, cause = fine_gray_sample(20_000, beta, seed=1)
    table = fine_gray(X, time, cause).table(["a", "b", "c"])
    assert ((table["lower"] < np.exp(beta)) & (np.exp(beta) < table["upper"])).all(), table
    assert np.abs(table["coef"] - beta).max() < 0.05


def test_cif_is_a_distribution_function_and_never_nan() -> None:
    X, time, cause = fine_gray_sample(400, [1.0, -1.0], seed=3)
    fit = fine_gray(X, time, cause)
    grid = np.linspace(0, time.max() * 2, 50)
    extreme = np.array([[0.0, 0.0], [1e3, -1e3], [-1e3, 1e3], [1e300, 0.0]])
    cif = fit.cif(np.vstack([X[:20], extreme]), grid)
    assert np.isfinite(cif).all()
    assert (cif >= 0).all()
    assert (cif <= 1).all()
    assert (np.diff(cif, axis=1) >= 0).all()
    assert cif[-3, -1] == 1.0  # a huge linear predictor gives 1, not NaN
    assert cif[-2, -1] == 0.0
    assert (fit.cif(X[:5], [0.0]) == 0).all()  # no event before the first event time


def test_table_reports_wald_intervals() -> None:
    X, time, cause = fine_gray_sample(500, [0.4], seed=2)
    fit = fine_gray(X, time, cause)
    row = fit.table(["dose"]).iloc[0]
    assert list(fit.table().columns) == ["term", "coef", "se", "hr", "lower", "upper", "z", "p"]
    assert row["term"] == "dose"
    assert row["lower"] == pytest.approx(np.exp(fit.coef[0] - 1.959963984540054 * fit.se[0]), rel=1e-12)
    assert row["z"] == pytest.approx(fit.coef[0] / fit.se[0])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda X, t, c: fine_gray(X, t, np.where(c == 1, 2, c)), "no patient has the event of interest"),
        (lambda X, t, c: fine_gray(np.where(np.arange(len(t))[:, None] == 3, np.nan, X), t, c), "row 3"),
        (lambda X, t, c: fine_gray(X[:-1], t, c), "lengths"),
        (lambda X, t, c: fine_gray(np.column_stack([X, np.ones(len(t))]), t, c), "column 1: constant"),
        (lambda X, t, c: fine_gray(np.column_stack([X, 2 * X]), t, c), "collinear"),
        (lambda X, t, c: fine_gray(X, -t, c), "non-negative"),
        (lambda X, t, c: gray_test(t, c, np.zeros(len(t))), "at least two groups"),
        (lambda X, t, c: gray_test(t, c, np.arange(len(t) - 1)), "group has"),
    ],
)
def test_bad_input_is_refused_with_the_reason(call, message: str) -> None:  # type: ignore[no-untyped-def]
    X, time, cause = fine_gray_sample(200, [0.5], seed=4)
    with pytest.raises(UserInputError, match=message):
        call(X, time, cause)


def test_a_covariate_seen_in_no_risk_set_is_refused_as_a_singular_information_matrix() -> None:
    """Only patients censored before the first event have x2 = 1: no risk set ever sees it."""
    X, time, cause = fine_gray_sample(200, [0.5], seed=4)
    early = time < time[cause == 1].min()
    time[:3], cause[:3] = time.min() / 2, 0
    flag = ((np.arange(len(time)) < 3) | (early & (cause == 0))).astype(float)
    with pytest.raises(UserInputError, match="information matrix is singular"):
        fine_gray(np.column_stack([X, flag]), time, cause)
