"""Grouped calibration and decision curves with competing risks, against cmprsk::cuminc per group.

Tolerances: 1e-8 for the Aalen-Johansen CIF and net benefit (measured ~1e-16), 1e-8 relative for
cuminc's variance.
"""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from riskmodel.stats import competing_array
from riskmodel.validation import cif_at_horizon, cif_calibration_groups, net_benefit_competing

HAS_R = shutil.which("Rscript") is not None
HORIZONS = (6.0, 12.0)
THRESHOLDS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.999)


def _cohort(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A competing-risks target in whole months (many ties) and a predicted CIF at 12 months."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t1 = rng.exponential(10 / np.exp(0.8 * x))
    t2 = rng.exponential(15 * np.ones(n))
    c = rng.uniform(2, 40, n)
    t = np.ceil(np.minimum.reduce([t1, t2, c]))
    cause = np.where(c <= np.minimum(t1, t2), 0, np.where(t1 < t2, 1, 2))
    return competing_array(cause, t), 0.7 * (1 - np.exp(-1.2 * np.exp(0.8 * x)))


R_SCRIPT = """
suppressMessages(library(cmprsk))
args <- commandArgs(TRUE)
d <- read.csv(args[1]); groups <- as.integer(args[2])
hs <- c(6, 12); ps <- c(0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.999)
f <- function(x) formatC(x, digits = 17, format = "g")
aj <- function(rows, h) {  # est and var of cause 1 at h, 0 when the group has no cause-1 event
  if (!any(d$status[rows] == 1)) return(c(0, 0))
  ci <- cuminc(d$time[rows], d$status[rows], cencode = 0)
  tp <- timepoints(ci, h)
  k <- which(sub(".* ", "", rownames(tp$est)) == "1")  # rows are "group cause"
  stopifnot(length(k) == 1)
  c(tp$est[k, 1], tp$var[k, 1])
}
group <- ceiling(rank(d$pred, ties.method = "first") / (nrow(d) / groups))
for (h in hs) {
  r <- sapply(seq_len(groups), function(g) aj(group == g, h))
  cat("observed", h, f(r[1, ]), "\\n"); cat("var", h, f(r[2, ]), "\\n")
  all <- aj(rep(TRUE, nrow(d)), h)[1]
  nb <- sapply(ps, function(p) {
    treated <- d$pred >= p; share <- mean(treated)
    risk <- if (any(treated)) aj(treated, h)[1] else 0
    share * risk - share * (1 - risk) * p / (1 - p)
  })
  cat("model", h, f(nb), "\\n"); cat("all", h, f(all - (1 - all) * ps / (1 - ps)), "\\n")
}
"""


@pytest.fixture(scope="module")
def cuminc(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, float], np.ndarray]:
    if not HAS_R:
        pytest.skip("R is not installed (.ci/run installs r-cran-cmprsk)")
    folder = tmp_path_factory.mktemp("cuminc")
    y, pred = _cohort(250, 11)
    pd.DataFrame({"time": y["time"], "status": y["cause"], "pred": pred}).to_csv(
        folder / "d.csv", index=False, float_format="%.17g"
    )
    (folder / "check.R").write_text(R_SCRIPT)
    run = subprocess.run(
        ["Rscript", str(folder / "check.R"), str(folder / "d.csv"), "5"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return {(key, float(h)): np.array(v, float) for key, h, *v in map(str.split, run.stdout.splitlines())}


@pytest.mark.parametrize("horizon", HORIZONS)
def test_grouped_observed_cif_and_its_variance_equal_cmprsk_cuminc_per_group(
    cuminc: dict[tuple[str, float], np.ndarray], horizon: float
) -> None:
    y, pred = _cohort(250, 11)
    table = cif_calibration_groups(y, pred, horizon, groups=5)
    assert table["patients"].tolist() == [50] * 5
    assert table["predicted"].is_monotonic_increasing
    np.testing.assert_allclose(table["observed"], cuminc["observed", horizon], rtol=0, atol=1e-8)
    np.testing.assert_allclose(table["observed_se"] ** 2, cuminc["var", horizon], rtol=1e-8, atol=1e-15)
    z = 1.959963984540054
    se = np.sqrt(cuminc["var", horizon]) / (cuminc["observed", horizon] * -np.log(cuminc["observed", horizon]))
    np.testing.assert_allclose(table["observed_low"], cuminc["observed", horizon] ** np.exp(z * se), rtol=1e-8)
    np.testing.assert_allclose(table["observed_high"], cuminc["observed", horizon] ** np.exp(-z * se), rtol=1e-8)
    assert (table["observed_low"] < table["observed"]).all()
    assert (table["observed"] < table["observed_high"]).all()


@pytest.mark.parametrize("horizon", HORIZONS)
def test_net_benefit_equals_an_independent_cuminc_computation_per_threshold(
    cuminc: dict[tuple[str, float], np.ndarray], horizon: float
) -> None:
    y, pred = _cohort(250, 11)
    curve = net_benefit_competing(y, pred, horizon, THRESHOLDS)
    assert list(curve.columns) == ["threshold", "model", "treat_all", "treat_none"]
    np.testing.assert_allclose(curve["model"], cuminc["model", horizon], rtol=0, atol=1e-8)
    np.testing.assert_allclose(curve["treat_all"], cuminc["all", horizon], rtol=0, atol=1e-8)


def test_net_benefit_at_threshold_zero_is_treat_all_and_near_one_nobody_is_treated() -> None:
    y, pred = _cohort(250, 11)
    curve = net_benefit_competing(y, pred, 12.0, [0.0, 0.999])
    assert curve["model"][0] == pytest.approx(curve["treat_all"][0], abs=1e-15)
    assert curve["model"][1] == 0.0  # no prediction reaches 0.999
    assert (curve["treat_none"] == 0.0).all()
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        net_benefit_competing(y, pred, 12.0, [1.0])


def test_competing_events_are_not_counted_as_events_of_interest() -> None:
    # 1 − KM with competing events censored would say 1/2 + 1/2·(1/2) = 3/4 by time 3; AJ says 1/2
    y = competing_array([1, 2, 1, 0], [1.0, 2.0, 3.0, 4.0])
    assert cif_at_horizon(y["time"], y["cause"], 3.0)[0] == 0.5
    assert cif_at_horizon(y["time"], y["cause"], 0.5) == (0.0, 0.0)


def test_a_group_without_events_observes_zero_with_no_interval() -> None:
    y = competing_array([0, 2, 0, 1, 1, 0], [5.0, 2.0, 7.0, 1.0, 3.0, 9.0])
    table = cif_calibration_groups(y, [0.01, 0.02, 0.03, 0.5, 0.6, 0.7], 6.0, groups=2)
    assert table["observed"].tolist()[0] == 0.0
    assert math.isnan(table["observed_low"][0])
    assert table["events"].tolist() == [0, 2]
    assert table["competing"].tolist() == [1, 0]
    observed = [cif_calibration_groups(y, np.full(6, 0.3), h, groups=1)["observed"][0] for h in (1, 2, 3, 6, 9)]
    assert observed == sorted(observed)  # a CIF never decreases
    with pytest.raises(ValueError, match="probabilities"):
        cif_calibration_groups(y, [0.1, 0.2, 0.3, 0.4, 0.5, 1.5], 6.0)
