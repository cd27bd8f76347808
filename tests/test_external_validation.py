"""External validation (riskmodel.validation.external, case_mix) against independent references.

A Cox model is developed on two centres of a synthetic multi-centre cohort and validated on the
third. Each measure is checked against scikit-survival (C-indices, td-AUC, Brier, IBS), lifelines
(the Kaplan-Meier behind O/E, the Cox fits behind the slopes), R's survival (concordance, survfit,
coxph; skipped without Rscript) or a hand computation, with the tolerance stated at each assertion.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)

from riskmodel.cohort import survival_data
from riskmodel.cohort.synthetic import generate
from riskmodel.features import ClinicalFeatures
from riskmodel.models import CoxPH, SurvivalForest
from riskmodel.scoring import RiskModel
from riskmodel.validation.calibration import smooth_calibration
from riskmodel.validation.case_mix import membership_c, outside_ranges, standardised_differences
from riskmodel.validation.external import external_validation, fixed_predictions, point_estimates

HORIZONS = [12.0, 24.0]
INPUTS = ["response_3mo"]


def develop(estimator, frame: pd.DataFrame) -> RiskModel:  # type: ignore[no-untyped-def]
    sd = survival_data(frame, "os", landmark_months=3, feature_columns=INPUTS)
    features = ClinicalFeatures("study", landmark_months=3).fit(sd.X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(features.transform(sd.X), sd.y)
    return RiskModel.from_training(
        endpoint="os",
        family="cox",
        experiment="t",
        landmark_months=3,
        horizons=HORIZONS,
        features=features,
        estimator=estimator,
        X=sd.X,
    )


@pytest.fixture(scope="module")
def centres() -> tuple[RiskModel, pd.DataFrame, np.ndarray]:
    """A Cox model of centres 1 and 2, and centre 3's patients from the landmark."""
    dev = pd.concat([generate(200, 11), generate(200, 12)], ignore_index=True)
    model = develop(CoxPH(), dev)
    val = survival_data(generate(300, 13), "os", landmark_months=3, feature_columns=INPUTS)
    return model, val.X, val.y


@pytest.fixture(scope="module")
def validated(centres):  # type: ignore[no-untyped-def]
    model, X, y = centres
    return external_validation(model, X, y, HORIZONS, n_boot=40, seed=3, band_resamples=10)


def survival_at(model: RiskModel, X: pd.DataFrame, h: float) -> np.ndarray:
    return model.estimator.predict_survival(model.features.transform(X), [h]).to_numpy()[:, 0]


def test_c_indices_and_td_auc_equal_scikit_survival(centres, validated) -> None:  # type: ignore[no-untyped-def]
    model, X, y = centres
    risk = model.estimator.predict_risk(model.features.transform(X))
    est = validated.estimates()
    harrell = concordance_index_censored(y["event"], y["time"], risk)[0]
    uno = concordance_index_ipcw(y, y, risk, tau=max(HORIZONS))[0]
    assert abs(est["harrell_c"] - harrell) < 1e-12
    assert abs(est["uno_c"] - uno) < 1e-12
    for h in HORIZONS:
        auc = cumulative_dynamic_auc(y, y, 1 - survival_at(model, X, h), [h])[0][0]
        assert abs(est[f"td_auc_{h:g}"] - auc) < 1e-12
    assert 0.6 < harrell < 0.9  # the model discriminates on the third centre


def test_brier_ibs_and_scaled_scores_equal_scikit_survival(centres, validated) -> None:  # type: ignore[no-untyped-def]
    model, X, y = centres
    est = validated.estimates()
    km = KaplanMeierFitter().fit(y["time"], y["event"])
    for h in HORIZONS:
        s = survival_at(model, X, h)
        ref = brier_score(y, y, s, h)[1][0]
        null = brier_score(y, y, np.full(len(s), km.predict(h)), h)[1][0]
        assert abs(est[f"brier_{h:g}"] - ref) < 1e-10
        assert abs(est[f"brier_km_{h:g}"] - null) < 1e-10
        assert abs(est[f"scaled_brier_{h:g}"] - (1 - ref / null)) < 1e-9
    grid = np.asarray(validated.grid)
    surv = model.estimator.predict_survival(model.features.transform(X), grid).to_numpy()
    ibs = integrated_brier_score(y, y, surv, grid)
    ibs_km = integrated_brier_score(y, y, np.tile(km.predict(grid).to_numpy(), (len(y), 1)), grid)
    assert abs(est["ibs"] - ibs) < 1e-10
    assert abs(est["ibs_km"] - ibs_km) < 1e-10
    assert abs(est["scaled_ibs"] - (1 - ibs / ibs_km)) < 1e-9


def test_oe_and_calibration_slopes_equal_hand_computation(centres, validated) -> None:  # type: ignore[no-untyped-def]
    """O/E from lifelines' Kaplan-Meier; slopes from lifelines' Cox fits (tolerance 1e-4)."""
    model, X, y = centres
    est = validated.estimates()
    km = KaplanMeierFitter().fit(y["time"], y["event"])
    lp = model.estimator.predict_risk(model.features.transform(X))
    frame = pd.DataFrame({"t": y["time"], "e": y["event"].astype(int), "lp": lp})
    slope = CoxPHFitter().fit(frame, "t", "e").params_["lp"]
    assert abs(est["slope"] - slope) < 1e-4
    for h in HORIZONS:
        s = survival_at(model, X, h)
        oe = (1 - km.predict(h)) / np.mean(1 - s)
        assert abs(est[f"oe_{h:g}"] - oe) < 1e-12
        at_h = pd.DataFrame(
            {"t": np.minimum(y["time"], h), "e": (y["event"] & (y["time"] <= h)).astype(int), "x": np.log(-np.log(s))}
        )
        assert abs(est[f"slope_{h:g}"] - CoxPHFitter().fit(at_h, "t", "e").params_["x"]) < 1e-4
        austin = smooth_calibration(y, s, h)  # the existing Austin et al. 2020 implementation
        assert (est[f"ici_{h:g}"], est[f"e50_{h:g}"], est[f"e90_{h:g}"]) == (austin.ici, austin.e50, austin.e90)
        assert 0.9 < oe < 1.1  # same generating model in every centre: calibrated


def test_bootstrap_intervals_resample_patients_with_the_model_fixed(centres, validated) -> None:  # type: ignore[no-untyped-def]
    model, X, y = centres
    table = validated.table.set_index("key")
    assert (table["resamples"] == 40).all()
    # a percentile interval need not hold a skewed measure's estimate (E50 near 0); these it does
    inside = table.loc[["harrell_c", "uno_c", "oe_12", "oe_24", "brier_12", "slope"]]
    assert ((inside["low"] < inside["estimate"]) & (inside["estimate"] < inside["high"])).all()
    # the fixed model's predictions, resampled: one replicate by hand equals the same measures on
    # the resampled rows' own predictions (the model is not refitted)
    p = fixed_predictions(model.estimator, model.features.transform(X), y, HORIZONS)
    idx = np.random.default_rng(0).integers(0, len(y), len(y))
    again = fixed_predictions(model.estimator, model.features.transform(X.iloc[idx]), y[idx], HORIZONS)
    a, b = point_estimates(y[idx], p.take(idx)), point_estimates(y[idx], again)
    assert a["harrell_c"] == b["harrell_c"]
    assert a["oe_12"] == b["oe_12"]
    # the CI of Harrell's C is about ±2 bootstrap SEs of a C on 300 patients (0.02 to 0.04 wide each side)
    low, high = validated.interval("harrell_c")
    assert 0.02 < high - low < 0.12


def test_a_model_whose_baseline_hazard_was_doubled_over_predicts(centres) -> None:  # type: ignore[no-untyped-def]
    """O/E below 1, its CI excluding 1: the risk is over-predicted, and O/E says so the right way round."""
    model, X, y = centres
    bad = develop(CoxPH(), pd.concat([generate(200, 11), generate(200, 12)], ignore_index=True))
    bad.estimator.baseline_cumhaz_ = bad.estimator.baseline_cumhaz_ * 2.0
    result = external_validation(bad, X, y, [12.0], n_boot=30, seed=1, band_resamples=0)
    oe = result.estimates()["oe_12"]
    s = survival_at(bad, X, 12.0)
    km = KaplanMeierFitter().fit(y["time"], y["event"])
    assert abs(oe - (1 - km.predict(12.0)) / np.mean(1 - s)) < 1e-12
    assert oe < 0.9
    assert result.interval("oe_12")[1] < 1.0
    # discrimination is unchanged by a baseline hazard (a monotone change of every prediction)
    unchanged = external_validation(model, X, y, [12.0], n_boot=0).estimates()["harrell_c"]
    assert result.estimates()["harrell_c"] == unchanged


def test_a_forest_has_no_overall_slope_but_a_slope_at_each_horizon(centres) -> None:  # type: ignore[no-untyped-def]
    _, X, y = centres
    forest = develop(SurvivalForest(n_estimators=10, random_state=0), generate(300, 11))
    est = external_validation(forest, X, y, HORIZONS, n_boot=0).estimates()
    assert math.isnan(est["slope"])
    assert all(math.isfinite(est[f"slope_{h:g}"]) for h in HORIZONS)


def test_standardised_differences_by_hand(centres) -> None:  # type: ignore[no-untyped-def]
    model, X, _ = centres
    table = standardised_differences(X, model.input_summaries).set_index(["input", "level"])
    dev = survival_data(
        pd.concat([generate(200, 11), generate(200, 12)], ignore_index=True),
        "os",
        landmark_months=3,
        feature_columns=INPUTS,
    ).X
    d_dev, d_val = dev["d90_gy"].astype(float), X["d90_gy"].astype(float)
    smd = (d_val.mean() - d_dev.mean()) / math.sqrt((d_dev.var() + d_val.var()) / 2)
    assert abs(table.loc[("d90_gy", ""), "smd"] - smd) < 1e-12
    p_d, p_v = (dev["m_stage"].astype(str) == "M1").mean(), (X["m_stage"].astype(str) == "M1").mean()
    smd_m1 = (p_v - p_d) / math.sqrt((p_d * (1 - p_d) + p_v * (1 - p_v)) / 2)
    assert abs(table.loc[("m_stage", "M1"), "smd"] - smd_m1) < 1e-12
    assert table["smd"].abs().max() < 0.25  # same generator: alike


def test_a_shifted_cohort_is_told_apart(centres) -> None:  # type: ignore[no-untyped-def]
    """D90 40 Gy higher: a large standardised difference, patients outside the range, membership C near 1."""
    model, X, _ = centres
    shifted = X.assign(d90_gy=X["d90_gy"].astype(float) + 40.0)
    smd = standardised_differences(shifted, model.input_summaries).set_index(["input", "level"])
    assert smd.loc[("d90_gy", ""), "smd"] > 1.5
    share, counts = outside_ranges(shifted, model.numeric_ranges, model.categories)
    above = int(counts.set_index("input").loc["d90_gy", "above"])
    _lo, hi = model.numeric_ranges["d90_gy"]
    assert above == int((shifted["d90_gy"].astype(float) > hi).sum())
    assert above > 50
    assert share >= above / len(X)
    Z_dev = model.features.transform(X.iloc[:150])
    assert membership_c(Z_dev, model.features.transform(X.iloc[150:])) < 0.65  # one centre split in two
    assert membership_c(Z_dev, model.features.transform(shifted.iloc[150:])) > 0.9


HAS_R = shutil.which("Rscript") is not None
R_SCRIPT = r"""
suppressMessages(library(survival))
d <- read.csv(commandArgs(TRUE)[1])
out <- function(key, value) cat(key, sprintf("%.17g", value), "\n")
out("harrell", concordance(Surv(t, e) ~ lp, data = d, reverse = TRUE)$concordance)
out("slope", coef(coxph(Surv(t, e) ~ lp, data = d, ties = "efron", control = coxph.control(eps = 1e-12))))
km <- survfit(Surv(t, e) ~ 1, data = d)
for (h in c(12, 24)) {
  s <- d[[paste0("s", h)]]
  out(paste0("oe_", h), (1 - summary(km, times = h)$surv) / mean(1 - s))
  dh <- data.frame(t = pmin(d$t, h), e = as.integer(d$e == 1 & d$t <= h), x = log(-log(s)))
  fit <- coxph(Surv(t, e) ~ x, data = dh, ties = "efron", control = coxph.control(eps = 1e-12))
  out(paste0("slope_", h), coef(fit))
}
"""


@pytest.mark.skipif(not HAS_R, reason="R is not installed")
def test_c_oe_and_slopes_equal_r_survival(centres, validated, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Harrell's C (survival::concordance), O/E (survfit's KM) to 1e-10; slopes (coxph, Efron ties) to 1e-6."""
    model, X, y = centres
    Z = model.features.transform(X)
    frame = pd.DataFrame({"t": y["time"], "e": y["event"].astype(int), "lp": model.estimator.predict_risk(Z)})
    for h in HORIZONS:
        frame[f"s{h:g}"] = survival_at(model, X, h)
    frame.to_csv(tmp_path / "d.csv", index=False, float_format="%.17g")
    (tmp_path / "check.R").write_text(R_SCRIPT)
    run = subprocess.run(
        ["Rscript", str(tmp_path / "check.R"), str(tmp_path / "d.csv")], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    r = {key: float(value) for key, value in map(str.split, run.stdout.splitlines())}
    est = validated.estimates()
    assert abs(est["harrell_c"] - r["harrell"]) < 1e-10
    for h in HORIZONS:
        assert abs(est[f"oe_{h:g}"] - r[f"oe_{h:g}"]) < 1e-10
        assert abs(est[f"slope_{h:g}"] - r[f"slope_{h:g}"]) < 1e-6
    assert abs(est["slope"] - r["slope"]) < 1e-6
