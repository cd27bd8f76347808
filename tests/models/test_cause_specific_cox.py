"""Cause-specific Cox CIFs against R, and recovery of known cause-specific effects.

Reference: ``riskRegression::CSC(Hist(time, cause) ~ …)`` + ``predictRisk(…, times, cause)``
(riskRegression's defaults: product-limit S(s−)) and ``survival::coxph`` per cause, run live on
(a) the bundled cohort's local failure with death as the competing event (ten tied failures at
the 3-month scan) and (b) a synthetic cohort with many tied times, for Breslow's and Efron's ties.
Stated tolerance 1e-6 (absolute, CIFs; relative, coefficients and SEs). Measured max differences:
CIFs 4.4e-16 (bundled) and 1.9e-10 (tied); coefficients 1.6e-15 (bundled) and 1.7e-8 (tied: R's
own convergence criterion); SEs 1.8e-11. One bundled patient (Efron) has an all-cause jump above 1
at the last local failure (three at risk), where riskRegression's CIFs sum to more than 1 and
riskmodel's are capped (differing by 9.8e-5): that patient is checked for exactly that.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import load_bundled, local_failure_competing
from riskmodel.cohort.synthetic import LC_COEFFICIENTS, OS_COEFFICIENTS, REFERENCE, generate
from riskmodel.models import CauseSpecificCox
from riskmodel.models.competing import aalen_johansen_cif
from riskmodel.stats import competing_array

TOL = 1e-6
COVARIATES = {"bundled": ["age_years", "d90_gy", "lesion_volume_cm3"], "tied": ["dose", "node", "stage"]}
TIMES = {"bundled": [1.0, 3.0, 6.0, 12.0, 16.0], "tied": [0.25, 0.5, 1.0, 1.5]}
N_TIMES = {name: len(t) for name, t in TIMES.items()}


def bundled_frame() -> pd.DataFrame:
    cohort = load_bundled()
    cr = local_failure_competing(cohort)
    frame = cohort.data[COVARIATES["bundled"]].astype(float).copy()
    frame["time"], frame["cause"] = cr["time"], cr["event_type"]
    return frame.reset_index(drop=True)


def tied_frame(n: int = 300, seed: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dose = rng.normal(0, 1, n).round(2)
    node = rng.integers(0, 2, n).astype(float)
    stage = rng.integers(1, 4, n).astype(float)
    t1 = rng.exponential(1 / np.exp(0.6 * dose + 0.3 * stage - 1.2))
    t2 = rng.exponential(1 / np.exp(-0.6 * node + 0.2 * stage - 1.2))
    censor = rng.uniform(0.5, 4.0, n)
    first = np.minimum.reduce([t1, t2, censor])
    cause = np.where(first == t1, 1, np.where(first == t2, 2, 0))
    time = np.ceil(first * 10) / 10  # steps of 0.1: many tied times, of either cause
    return pd.DataFrame({"dose": dose, "node": node, "stage": stage, "time": time, "cause": cause})


R_SCRIPT = """
suppressMessages({library(riskRegression); library(survival); library(prodlim)})
f <- function(x) formatC(x, digits = 17, format = "g")
args <- commandArgs(trailingOnly = TRUE)
for (name in c("bundled", "tied")) {
  d <- read.csv(file.path(args[1], paste0(name, ".csv")))
  times <- scan(file.path(args[1], paste0(name, ".times")), quiet = TRUE)
  form <- as.formula(paste("~", paste(setdiff(names(d), c("time", "cause")), collapse = " + ")))
  for (ties in c("breslow", "efron")) {
    fit <- CSC(update(form, Hist(time, cause) ~ .), data = d, ties = ties)
    for (k in 1:2) {
      cat(name, ties, k, "cif", f(as.vector(predictRisk(fit, newdata = d, times = times, cause = k))), "\\n")
      m <- coxph(update(form, Surv(time, cause == k) ~ .), data = d, ties = ties)
      cat(name, ties, k, "coef", f(coef(m)), "\\n")
      cat(name, ties, k, "se", f(sqrt(diag(vcov(m)))), "\\n")
    }
  }
}
"""


@pytest.fixture(scope="module")
def r_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], np.ndarray]:
    if shutil.which("Rscript") is None:
        pytest.skip("R is not installed (.ci/run installs r-cran-survival and r-cran-riskregression)")
    folder = tmp_path_factory.mktemp("csc")
    for name, frame in (("bundled", bundled_frame()), ("tied", tied_frame())):
        frame.to_csv(folder / f"{name}.csv", index=False, float_format="%.17g")
        (folder / f"{name}.times").write_text(" ".join(map(str, TIMES[name])))
    (folder / "csc.R").write_text(R_SCRIPT)
    run = subprocess.run(
        ["Rscript", str(folder / "csc.R"), str(folder)], capture_output=True, text=True, timeout=180, check=False
    )
    assert run.returncode == 0, run.stderr
    return {tuple(key): np.array(values, float) for *key, values in _rows(run.stdout)}


def _rows(text: str) -> list[tuple[str, str, str, str, list[str]]]:
    return [(a, b, c, d, rest) for a, b, c, d, *rest in map(str.split, text.splitlines())]


@pytest.mark.parametrize("ties", ["breslow", "efron"])
@pytest.mark.parametrize("name", ["bundled", "tied"])
def test_cifs_coefficients_and_ses_equal_riskregression_and_coxph(
    name: str, ties: str, r_reference: dict[tuple[str, ...], np.ndarray]
) -> None:
    frame = bundled_frame() if name == "bundled" else tied_frame()
    X = frame[COVARIATES[name]]
    y = competing_array(frame["cause"], frame["time"])
    if name == "tied":  # tied event times within and across the causes
        event_times = frame["time"][frame["cause"] > 0]
        assert event_times.duplicated().sum() > 50
    model = CauseSpecificCox(penalty=0.0, ties=ties).fit(X, y)  # type: ignore[arg-type]
    cif = model.cif_matrix(X, TIMES[name])
    capped = _capped(model, X, max(TIMES[name]))
    want = np.stack([r_reference[name, ties, str(k), "cif"].reshape(N_TIMES[name], len(X)).T for k in (1, 2)])
    # where an all-cause jump exceeds 1, riskRegression's product-limit S turns negative and its
    # CIFs stop being CIFs (sum above 1, or a CIF falling); riskmodel caps that jump instead
    assert capped.sum() <= max(2, 0.02 * len(X)), capped.sum()
    r_sum = want.sum(axis=0)[capped]
    r_falls = (np.diff(want, axis=2) < -1e-12).any(axis=(0, 2))[capped]
    assert ((r_sum > 1 + 1e-9).any(axis=1) | r_falls).all()
    assert np.abs(cif - want)[:, ~capped].max() < TOL  # every other patient: riskRegression's CIFs
    tables = model.hazard_ratio_tables()
    for k in (1, 2):
        np.testing.assert_allclose(tables[k]["coef"], r_reference[name, ties, str(k), "coef"], rtol=TOL)
        np.testing.assert_allclose(tables[k]["se"], r_reference[name, ties, str(k), "se"], rtol=TOL)
    assert (cif[0, :, -1] > 0.05).all()  # a real comparison: the CIFs are far from 0


def _capped(model: CauseSpecificCox, X: pd.DataFrame, until: float) -> np.ndarray:
    """Patients with an all-cause hazard jump above 1 by ``until`` (from each cause's Cox model)."""
    times = np.unique(np.concatenate([m.event_times_ for m in model.models_]))
    times = times[times <= until]
    total = np.zeros((len(X), times.size))
    for m in model.models_:
        jumps = np.outer(np.exp(m.predict_risk(X)), np.diff(m.baseline_cumhaz_, prepend=0.0))
        total[:, np.searchsorted(times, m.event_times_[m.event_times_ <= until])] += jumps[:, m.event_times_ <= until]
    return np.asarray((total > 1).any(axis=1))


def test_hazard_ratio_tables_are_the_component_cox_tables() -> None:
    frame = tied_frame()
    model = CauseSpecificCox(penalty=0.0).fit(frame[COVARIATES["tied"]], competing_array(frame["cause"], frame["time"]))
    tables = model.hazard_ratio_tables(["Dose (SD)", "Node positive", "Stage"])
    assert set(tables) == {1, 2}
    table = tables[1]
    assert list(table.columns) == ["term", "coef", "se", "hr", "lower", "upper", "p"]
    assert list(table["term"]) == ["Dose (SD)", "Node positive", "Stage"]
    np.testing.assert_allclose(table["hr"], np.exp(table["coef"]))
    np.testing.assert_allclose(table["lower"], np.exp(table["coef"] - 1.959963984540054 * table["se"]))
    assert table["p"].iloc[0] < 1e-6  # dose acts on cause 1 (log-HR 0.6)
    assert tables[2]["p"].iloc[0] > 1e-3  # and not on cause 2


def test_an_all_cause_jump_above_one_is_capped_so_the_cifs_still_add_up() -> None:
    # one patient, t = 1: ΔH1 = 3 and ΔH2 = 1 (a plain product-limit would give S = 1 − 4 = −3)
    cif, surv = aalen_johansen_cif(
        [np.array([1.0]), np.array([1.0, 2.0])],
        [np.array([[3.0]]), np.array([[1.0, 0.5]])],
        np.array([0.5, 1.0, 2.0]),
    )
    np.testing.assert_allclose(cif[:, 0, :], [[0.0, 0.75, 0.75], [0.0, 0.25, 0.25]], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(surv[0], [1.0, 0.0, 0.0])
    # an infinite hazard (overflowed exp(η)) takes the whole jump
    cif, _ = aalen_johansen_cif([np.array([1.0]), np.array([1.0])], [np.full((1, 1), np.inf), np.ones((1, 1))], [1.0])
    np.testing.assert_array_equal(cif[:, 0, 0], [1.0, 0.0])


def _terms(frame: pd.DataFrame) -> pd.DataFrame:
    """The generator's covariates on the scale its log hazard ratios are defined (its module docstring)."""
    resp = frame["response_3mo"].astype(str)
    t_ordinal = frame["t_stage"].astype(str).str[1].astype(float)
    return pd.DataFrame(
        {
            "d90_per_10gy": (frame["d90_gy"] - REFERENCE["d90_gy"]) / 10,
            "log_volume": np.log(frame["lesion_volume_cm3"] / REFERENCE["lesion_volume_cm3"]),
            "log_interval": np.log(frame["recurrence_interval_months"] / REFERENCE["recurrence_interval_months"]),
            "response_sd": (resp == "SD").astype(float),
            "grade_moderate_or_high": (frame["pathological_grade"].astype(str) != "low").astype(float),
            "t_ordinal": t_ordinal,
            "n_ordinal": frame["n_stage"].astype(str).str[1].astype(float),
            "m1": (frame["m_stage"].astype(str) == "M1").astype(float),
            "age_per_10y": (frame["age_years"] - REFERENCE["age_years"]) / 10,
            "kps_per_10": (frame["kps"] - REFERENCE["kps"]) / 10,
            "chemo": frame["post_implant_chemo"].astype(float),
        },
        index=frame.index,
    )


def test_cause_specific_effects_of_the_generator_are_recovered_at_n_20000() -> None:
    """Local progression (cause 1) and death without it (cause 2) after the 3-month landmark have
    cause-specific Weibull hazards with log-HRs ``LC_COEFFICIENTS`` and ``OS_COEFFICIENTS``: the
    Cox model per cause is correctly specified, so its Wald intervals cover the truth.

    22 intervals: each 95% CI misses with probability 0.05, so ≤ 4 misses (P(≥ 5 | correct) ≈ 0.005)
    and every |z| < 4 (P(any | correct) ≈ 0.002); a wrong risk set, cause coding or time shift
    moves estimates by many SEs at this n. (Seed 18 misses 4, max |z| 3.26; over seeds 0-19 the
    440 intervals missed 6.6 %, max |z| 3.42.)
    """
    frame = generate(20_000, seed=18)
    cr = local_failure_competing(frame, landmark_months=3.0)  # PD patients failed at month 3: left out
    X = _terms(frame.loc[cr.index])
    y = competing_array(cr["event_type"], cr["time"])
    model = CauseSpecificCox(penalty=0.0).fit(X, y)
    tables = model.hazard_ratio_tables()
    z = []
    for k, truth in ((1, LC_COEFFICIENTS), (2, OS_COEFFICIENTS)):
        table = tables[k].set_index("term")
        beta = np.array([truth[term] for term in table.index])
        z.extend((table["coef"] - beta) / table["se"])
        if k == 1:  # a real effect is found, not only covered
            assert table.loc["response_sd", "lower"] > np.exp(0.9)
    z_abs = np.abs(np.asarray(z))
    assert len(z_abs) == 22
    assert (z_abs > 1.959963984540054).sum() <= 4, z_abs.round(2)
    assert z_abs.max() < 4.0, z_abs.round(2)
