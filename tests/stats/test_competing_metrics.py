"""Competing-risk metrics against riskRegression::Score (AUC, Brier, null model), survival::concordance
and brute-force pair sums written here from the papers' definitions.

Tolerances: 1e-10 against R for AUC and Brier (the brief asks 1e-6; measured differences are ~1e-16,
R prints 17 significant digits), 1e-12 against the quadratic pair sums.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.metrics import EvaluationWindow
from riskmodel.stats import competing_array
from riskmodel.stats.competing_metrics import (
    censoring_survival,
    cif_auc,
    cif_brier,
    cif_brier_null,
    cif_integrated_brier,
    cif_scaled_brier,
    competing_metric_names,
    competing_metrics,
    wolbers_c,
    wolbers_c_ipcw,
)

HAS_R = shutil.which("Rscript") is not None
HORIZONS = [3.0, 6.0, 12.0, 20.0]


def _cohort(n: int, seed: int, *, rounded: bool = True) -> pd.DataFrame:
    """Cause 1 depends on x, cause 2 does not; uniform censoring; whole months give many ties."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t1 = rng.exponential(10 / np.exp(0.8 * x))
    t2 = rng.exponential(15 * np.ones(n))
    c = rng.uniform(2, 40, n)
    t = np.minimum.reduce([t1, t2, c])
    cause = np.where(c <= np.minimum(t1, t2), 0, np.where(t1 < t2, 1, 2))
    return pd.DataFrame({"time": np.ceil(t) if rounded else t, "status": cause, "x": x})


def _cif(x: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Any monotone CIF of the linear predictor: the reference only needs the same numbers."""
    return 0.7 * (1 - np.exp(-np.asarray(times)[None, :] / 10 * np.exp(0.8 * np.asarray(x))[:, None]))


def _target(df: pd.DataFrame) -> np.ndarray:
    return competing_array(df["status"].to_numpy(), df["time"].to_numpy())


R_SCRIPT = """
suppressMessages({library(riskRegression); library(prodlim); library(data.table); library(survival)})
args <- commandArgs(TRUE)
tr <- read.csv(args[1]); te <- read.csv(args[2]); pred <- as.matrix(read.csv(args[3]))
hs <- as.numeric(strsplit(args[4], ",")[[1]])
f <- function(x) formatC(x, digits = 17, format = "g")
# 1. Score, its own censoring model on the test data
s <- Score(list(m = pred), Hist(time, status) ~ 1, data = te, times = hs, metrics = c("auc", "brier"),
           cause = 1, null.model = TRUE, se.fit = FALSE, cens.model = "marginal")
cat("score_auc", f(s$AUC$score[model == "m"]$AUC), "\\n")
cat("score_brier", f(s$Brier$score[model == "m"]$Brier), "\\n")
cat("score_null", f(s$Brier$score[model == "Null model"]$Brier), "\\n")
# 2. held out: Score's own AUC and Brier functions, given prodlim's reverse KM of the training set
fit <- prodlim(Hist(time, status) ~ 1, data = tr, reverse = TRUE)
g_left <- stepfun(fit$time, c(1, fit$surv), right = TRUE)
g_right <- stepfun(fit$time, c(1, fit$surv))
DT <- rbindlist(lapply(seq_along(hs), function(k) data.table(
  ID = seq_len(nrow(te)), model = 1, times = hs[k], risk = pred[, k], time = te$time,
  status = as.numeric(te$status != 0), event = ifelse(te$status == 0, 3, te$status),
  WTi = g_left(te$time), Wt = g_right(hs[k]))))
common <- list(MC = NULL, se.fit = FALSE, conservative = TRUE, cens.model = "marginal", multi.split.test = FALSE,
               alpha = 0.05, N = nrow(te), NT = length(hs), NF = 1, dolist = list(), cause = "1", states = c("1", "2"))
a <- do.call(riskRegression:::AUC.competing.risks, c(list(DT = copy(DT), ROC = FALSE), common))
b <- do.call(riskRegression:::Brier.competing.risks, c(list(DT = copy(DT)), common))
cat("held_auc", f(a$score$AUC), "\\n")
cat("held_brier", f(b$score$Brier), "\\n")
cat("train_g", f(fit$surv), "\\n")
cat("train_g_times", f(fit$time), "\\n")
"""


@pytest.fixture(scope="module")
def r_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    if not HAS_R:
        pytest.skip("R is not installed (.ci/run installs r-cran-riskregression)")
    folder = tmp_path_factory.mktemp("score")
    train, test = _cohort(400, 1), _cohort(250, 2)
    train.to_csv(folder / "train.csv", index=False, float_format="%.17g")
    test.to_csv(folder / "test.csv", index=False, float_format="%.17g")
    pd.DataFrame(_cif(test["x"].to_numpy(), np.array(HORIZONS))).to_csv(
        folder / "pred.csv", index=False, float_format="%.17g"
    )
    (folder / "score.R").write_text(R_SCRIPT)
    files = [str(folder / name) for name in ("train.csv", "test.csv", "pred.csv")]
    run = subprocess.run(
        ["Rscript", str(folder / "score.R"), *files, ",".join(f"{h:g}" for h in HORIZONS)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    return {key: np.array(values, float) for key, *values in map(str.split, run.stdout.splitlines())}


def test_auc_brier_and_null_brier_equal_riskregression_score_on_its_own_censoring_model(
    r_reference: dict[str, np.ndarray],
) -> None:
    test = _cohort(250, 2)
    y = _target(test)
    assert ((y["time"] == 6.0) & (y["cause"] == 0)).any()  # a censoring exactly at a horizon
    pred = _cif(test["x"].to_numpy(), np.array(HORIZONS))
    auc = [cif_auc(y, y, pred[:, k], h) for k, h in enumerate(HORIZONS)]
    brier = [cif_brier(y, y, pred[:, k], h) for k, h in enumerate(HORIZONS)]
    null = [cif_brier_null(y, y, h) for h in HORIZONS]
    np.testing.assert_allclose(auc, r_reference["score_auc"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(brier, r_reference["score_brier"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(null, r_reference["score_null"], rtol=0, atol=1e-10)
    scaled = [cif_scaled_brier(y, y, pred[:, k], h) for k, h in enumerate(HORIZONS)]
    np.testing.assert_allclose(scaled, 1 - r_reference["score_brier"] / r_reference["score_null"], atol=1e-10)


def test_held_out_auc_and_brier_equal_riskregression_with_the_training_censoring_weights(
    r_reference: dict[str, np.ndarray],
) -> None:
    train, test = _cohort(400, 1), _cohort(250, 2)
    y_train, y_test = _target(train), _target(test)
    pred = _cif(test["x"].to_numpy(), np.array(HORIZONS))
    times, surv = censoring_survival(y_train["time"], y_train["cause"])
    keep = np.isin(r_reference["train_g_times"], times)  # prodlim lists every time; G moves at censorings
    np.testing.assert_allclose(surv, r_reference["train_g"][keep], atol=1e-12)
    auc = [cif_auc(y_train, y_test, pred[:, k], h) for k, h in enumerate(HORIZONS)]
    brier = [cif_brier(y_train, y_test, pred[:, k], h) for k, h in enumerate(HORIZONS)]
    np.testing.assert_allclose(auc, r_reference["held_auc"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(brier, r_reference["held_brier"], rtol=0, atol=1e-10)
    assert not np.allclose(auc, [cif_auc(y_test, y_test, pred[:, k], h) for k, h in enumerate(HORIZONS)])


def test_integrated_brier_is_the_trapezoid_of_riskregression_briers_over_the_grid(
    r_reference: dict[str, np.ndarray],
) -> None:
    test = _cohort(250, 2)
    y = _target(test)
    pred = _cif(test["x"].to_numpy(), np.array(HORIZONS))
    r_brier = r_reference["score_brier"]
    want = np.sum(np.diff(HORIZONS) * (r_brier[1:] + r_brier[:-1]) / 2) / (HORIZONS[-1] - HORIZONS[0])
    assert cif_integrated_brier(y, y, pred, HORIZONS) == pytest.approx(want, abs=1e-10)


def test_censoring_survival_puts_events_before_censorings_at_a_tied_time() -> None:
    # prodlim reverse = TRUE: at t = 1 one event and one censoring among 4: G(1) = 1 - 1/3, not 1 - 1/4
    times, surv = censoring_survival([1.0, 1.0, 2.0, 5.0], [2, 0, 1, 0])
    assert times.tolist() == [1.0, 5.0]
    np.testing.assert_allclose(surv, [2 / 3, 0.0])


# ----------------------------------------------------------------------------- Wolbers C
def _brute_wolbers(time: np.ndarray, cause: np.ndarray, risk: np.ndarray, tau: float = math.inf) -> float:
    """Wolbers 2009 from its definition, one pair at a time."""
    num = den = 0.0
    for i in range(len(time)):
        if cause[i] != 1 or time[i] > tau:
            continue
        for j in range(len(time)):
            if time[j] > time[i] or cause[j] == 2:
                den += 1
                num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return num / den


def _brute_wolbers_ipcw(y_train: np.ndarray, y_test: np.ndarray, risk: np.ndarray, tau: float) -> float:
    """Wolbers et al. 2014's weighted pairs, with G written out as a product over training censorings."""

    def g(t: float, left: bool) -> float:
        out = 1.0
        for c in np.unique(y_train["time"][y_train["cause"] == 0]):
            if c < t or (c == t and not left):
                # events at c leave the risk set before the censorings at c
                at_risk = np.sum(y_train["time"] > c) + np.sum((y_train["time"] == c) & (y_train["cause"] == 0))
                out *= 1 - np.sum((y_train["time"] == c) & (y_train["cause"] == 0)) / at_risk
        return out

    time, cause = y_test["time"], y_test["cause"]
    num = den = 0.0
    for i in range(len(time)):
        if cause[i] != 1 or time[i] > tau:
            continue
        for j in range(len(time)):
            if time[j] > time[i]:
                w = 1 / (g(time[i], True) * g(time[i], False))
            elif cause[j] == 2:
                w = 1 / (g(time[i], True) * g(time[j], True))
            else:
                continue
            den += w
            num += w * (1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0)
    return num / den


def test_wolbers_c_on_five_patients_computed_by_hand() -> None:
    # A cause 1 at 2 (risk .8), B competing at 1 (.9), C censored at 2 (.1), D cause 1 at 4 (.5), E censored at 6 (.5)
    # A's pairs: B (competing, discordant), D (later, concordant), E (later, concordant); C censored at 2: no pair
    # D's pairs: B (competing, discordant), E (later, tied risk: 1/2)          → (2 + 0 + 0.5) / 5
    time = [2.0, 1.0, 2.0, 4.0, 6.0]
    cause = [1, 2, 0, 1, 0]
    risk = [0.8, 0.9, 0.1, 0.5, 0.5]
    assert wolbers_c(time, cause, risk) == pytest.approx(2.5 / 5, abs=1e-15)
    assert wolbers_c(time, cause, risk, tau=3.0) == pytest.approx(2 / 3, abs=1e-15)  # only A's pairs
    assert math.isnan(wolbers_c([1.0, 2.0], [2, 0], [0.1, 0.2]))  # no event of interest


@pytest.mark.parametrize("seed", [3, 4])
def test_wolbers_c_equals_the_pair_by_pair_definition_with_tied_times_and_risks(seed: int) -> None:
    df = _cohort(300, seed)
    risk = np.round(df["x"].to_numpy(), 1)  # many tied risks
    time, cause = df["time"].to_numpy(), df["status"].to_numpy()
    for tau in (math.inf, 8.0):
        want = _brute_wolbers(time, cause, risk, tau)
        assert wolbers_c(time, cause, risk, tau=None if tau == math.inf else tau) == pytest.approx(want, abs=1e-12)


def test_wolbers_c_ipcw_equals_the_weighted_pair_sums_of_wolbers_2014() -> None:
    train, test = _cohort(200, 5), _cohort(150, 6)
    y_train, y_test = _target(train), _target(test)
    risk = np.round(test["x"].to_numpy(), 1)
    for tau in (10.0, 30.0):
        want = _brute_wolbers_ipcw(y_train, y_test, risk, tau)
        assert wolbers_c_ipcw(y_train, y_test, risk, tau) == pytest.approx(want, abs=1e-12)


@pytest.mark.skipif(not HAS_R, reason="R is not installed (.ci/run installs r-cran-survival)")
def test_wolbers_c_equals_survival_concordance_once_competing_events_are_censored_at_infinity(
    tmp_path: Path,
) -> None:
    # survival::concordance refuses a multi-state outcome; Wolbers' C is Harrell's C with a competing
    # event's time moved past all others and censored (no tied times here, so tie rules do not differ)
    df = _cohort(300, 7, rounded=False)
    moved = df.assign(
        time=np.where(df["status"] == 2, df["time"].max() + 1, df["time"]), event=(df["status"] == 1).astype(int)
    )
    moved.to_csv(tmp_path / "d.csv", index=False, float_format="%.17g")
    script = f"""suppressMessages(library(survival)); d <- read.csv("{tmp_path / "d.csv"}")
cat(formatC(concordance(Surv(time, event) ~ x, data = d, reverse = TRUE)$concordance, digits = 17, format = "g"))"""
    run = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    ours = wolbers_c(df["time"], df["status"], df["x"])
    assert ours == pytest.approx(float(run.stdout), abs=1e-12)


# ----------------------------------------------------------------------------- competing_metrics
def test_competing_metrics_has_the_survival_keys_and_each_value_is_its_function() -> None:
    train, test = _cohort(400, 8), _cohort(200, 9)
    y_train, y_test = _target(train), _target(test)
    window = EvaluationWindow.from_data(y_train, [6.0, 12.0, 60.0])
    x = test["x"].to_numpy()
    out = competing_metrics(y_train, y_test, lambda times: _cif(x, times), x, window)
    assert list(out) == competing_metric_names(window.horizons)
    assert out["harrell_c"] == wolbers_c(y_test["time"], y_test["cause"], x)
    assert out["uno_c"] == wolbers_c_ipcw(y_train, y_test, x, window.tau)
    assert out["td_auc_6"] == cif_auc(y_train, y_test, _cif(x, np.array([6.0]))[:, 0], 6.0)
    assert out["brier_12"] == cif_brier(y_train, y_test, _cif(x, np.array([12.0]))[:, 0], 12.0)
    grid = np.asarray(window.grid)
    assert out["ibs"] == cif_integrated_brier(y_train, y_test, _cif(x, grid), grid)
    assert out["ibs"] < out["ibs_km"]  # x drives cause 1: the model beats Aalen-Johansen
    assert 0.6 < out["harrell_c"] < 0.8
    assert 0.6 < out["td_auc_6"] < 0.9


def test_competing_metrics_are_nan_where_the_test_set_cannot_give_them() -> None:
    y_train = _target(_cohort(300, 10))
    y_test = competing_array([2, 0, 2, 0], [1.0, 2.0, 3.0, 4.0])  # no event of interest, short follow-up
    window = EvaluationWindow.from_data(y_train, [6.0])
    out = competing_metrics(y_train, y_test, lambda t: np.full((4, len(t)), 0.2), np.zeros(4), window)
    for key in ("harrell_c", "uno_c", "td_auc_6", "brier_6", "ibs"):
        assert math.isnan(out[key]), key


def test_auc_refuses_a_horizon_without_cases_and_brier_a_censoring_weight_of_zero() -> None:
    y = competing_array([1, 2, 0, 0], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="no cases"):
        cif_auc(y, y, [0.1, 0.2, 0.3, 0.4], 0.5)
    ends_censored = competing_array([1, 0], [1.0, 2.0])  # G = 0 after 2
    with pytest.raises(ValueError, match="G reaches 0"):
        cif_brier(ends_censored, y, [0.1, 0.2, 0.3, 0.4], 3.5)
