"""Proportional-hazards score tests against R's survival::cox.zph (survival ≥ 3.0) and a hand derivation."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.models import CoxPH
from riskmodel.stats import TRANSFORMS, ph_smooth, ph_test, survival_array, transformed_time

DATA = Path(__file__).resolve().parent.parent / "data"

# R 4.2.2, survival 3.5.3, on tests/data/<design>.csv (see tests/data/README.md):
#   fit <- coxph(Surv(time, event) ~ ., data = df, ties = "efron",
#                control = coxph.control(eps = 1e-12, iter.max = 100, toler.chol = 1e-13))
#   cox.zph(fit, transform = t, terms = TRUE, global = TRUE)$table[, "chisq"]
# for t in km, rank, identity; written with formatC(x, digits = 12, format = "g").
# Per covariate in the CSV's column order, then GLOBAL.
R_CHISQ = {
    "published_lc": {
        "km": [0.0032898880488, 3.38460768301, 3.45440725272],
        "rank": [0.0655260042509, 7.04327070767, 7.42042102216],
        "identity": [0.245478966271, 7.84173166772, 8.59488167249],
    },
    "published_os": {
        "km": [0.731406007264, 0.00869509116323, 0.731587603806],
        "rank": [0.552612918709, 0.0361073269641, 0.566697194794],
        "identity": [0.543634387266, 0.00907917766751, 0.575970377694],
    },
    "study_lc": {
        "km": [
            0.219466063575,
            8.98178225089,
            0.478558769418,
            1.22894570497,
            1.41673214191,
            2.70272599168,
            0.391320950971,
            15.4293577828,
        ],
        "rank": [
            0.284086997583,
            26.5963458545,
            0.104454625995,
            0.653418374017,
            0.882671204309,
            4.6877289865,
            0.273995801799,
            32.3432907803,
        ],
        "identity": [
            0.0804534664955,
            30.987513424,
            0.024748188655,
            0.413410008695,
            1.1133951861,
            5.70113703354,
            0.107597239388,
            36.2312895698,
        ],
    },
    "synthetic_os": {
        "km": [
            2.96858981988,
            0.0718584321408,
            2.19834703136,
            3.44797066686,
            0.643468050595,
            0.282835344498,
            1.43295221788,
            12.989092285,
        ],
        "rank": [
            3.18651098941,
            0.117343239621,
            2.04149920295,
            3.34120417785,
            0.650964906719,
            0.296193642607,
            1.38294952926,
            12.8282569806,
        ],
        "identity": [
            1.16739528941,
            0.00495902089499,
            2.60012370527,
            4.68331884023,
            0.199886041983,
            0.376561109106,
            1.15198307414,
            12.428003221,
        ],
    },
}
# The same R fit of published_lc: coef(fit)
R_PUBLISHED_LC_COEF = [-1.31479622335, -3.1023658432]

# The issue asks for 1e-4 absolute. R's numbers carry 12 significant digits and riskmodel agrees to
# about 1e-10; 1e-8 relative leaves room for another BLAS.
RTOL = 1e-8


def _fit(design: pd.DataFrame, ties: str = "efron") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X = design.drop(columns=["time", "event"])
    time, event = design["time"].to_numpy(float), design["event"].to_numpy(bool)
    beta = CoxPH(penalty=0, ties=ties).fit(X, survival_array(event, time)).coef_  # type: ignore[arg-type]
    return X.to_numpy(float), time, event, beta


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("design", sorted(R_CHISQ))
def test_chi_squares_equal_r_cox_zph_on_the_recorded_designs(design: str, transform: str) -> None:
    X, time, event, beta = _fit(pd.read_csv(DATA / f"{design}.csv"))
    result = ph_test(X, time, event, beta, transform=transform)  # type: ignore[arg-type]
    want = R_CHISQ[design][transform]
    np.testing.assert_allclose(result.chisq, want[:-1], rtol=RTOL)
    assert result.global_chisq == pytest.approx(want[-1], rel=RTOL)
    assert result.global_df == X.shape[1]


def test_the_published_lc_model_is_r_s_and_cr_pr_fails_proportional_hazards_by_rank() -> None:
    """The issue's case: survival < 3.0's approximation found CR+PR χ² 0.33; R 3.x finds 7.04 (rank)."""
    X, time, event, beta = _fit(pd.read_csv(DATA / "published_lc.csv"))
    np.testing.assert_allclose(beta, R_PUBLISHED_LC_COEF, rtol=1e-9)
    rank = ph_test(X, time, event, beta, transform="rank")
    assert rank.chisq[1] == pytest.approx(7.04327070767, rel=RTOL)
    assert rank.p[1] == pytest.approx(0.00795636050491, rel=1e-6)  # R's p, 12 digits
    km = ph_test(X, time, event, beta)  # km is the default, as in R
    assert km.transform == "km"
    assert km.chisq[1] == pytest.approx(3.38460768301, rel=RTOL)
    assert km.global_p == pytest.approx(0.177780857223, rel=1e-6)


def test_breslow_score_test_equals_the_hand_derivation() -> None:
    """Six subjects, one binary x, Breslow ties, g(t) = t; every term worked out by hand.

    Deaths at 1 (x = 1; at risk three with x = 1, three with x = 0), at 6 (two tied, x = 1 and
    x = 0; at risk one x = 1, three x = 0) and at 9 (alone at risk). With r = e^β the score per
    death is 1/(r+1), 3/(r+3), −r/(r+3), 0, and the variance of x in each risk set r/(r+1)²,
    3r/(r+3)² (twice, Breslow) and 0. The score vanishes at r² − 3r − 6 = 0, r = (3 + √33)/2.
    Adding x·g(t): U_γ = Σ g·score and the information is [[ΣV, ΣgV], [ΣgV, Σg²V]].
    """
    time = np.array([9.0, 1.0, 1.0, 6.0, 6.0, 8.0])
    event = np.array([1, 1, 0, 1, 1, 0], bool)
    x = np.array([[0.0], [1.0], [1.0], [1.0], [0.0], [0.0]])
    r = (3 + math.sqrt(33)) / 2
    score = np.array([1 / (r + 1), 3 / (r + 3), -r / (r + 3), 0.0])
    variance = np.array([r / (r + 1) ** 2, 3 * r / (r + 3) ** 2, 3 * r / (r + 3) ** 2, 0.0])
    g = np.array([1.0, 6.0, 6.0, 9.0])
    u = np.array([0.0, g @ score])
    info = np.array([[variance.sum(), g @ variance], [g @ variance, g**2 @ variance]])
    expected = float(u @ np.linalg.solve(info, u))

    result = ph_test(x, time, event, np.array([math.log(r)]), transform="identity", ties="breslow")
    assert result.chisq[0] == pytest.approx(expected, rel=1e-12)
    assert result.global_chisq == pytest.approx(expected, rel=1e-12)  # one covariate: the same test


def test_transformed_times_follow_r_with_ties_and_censoring() -> None:
    time = np.array([5.0, 2.0, 2.0, 3.0, 2.0, 7.0])
    event = np.array([1, 1, 0, 1, 1, 0])
    # KM: 6 at risk at 2 with 2 deaths → 2/3; 3 at risk at 3 → 4/9; 2 at risk at 5 → 2/9.
    # 1 − S(t−) takes the value just before each time: a censoring at 2 sees S = 1.
    km = transformed_time(time, event, "km")
    np.testing.assert_allclose(km, [1 - 4 / 9, 0, 0, 1 / 3, 0, 1 - 2 / 9], atol=1e-15)
    np.testing.assert_array_equal(transformed_time(time, event, "rank"), [5, 2, 2, 4, 2, 6])
    np.testing.assert_array_equal(transformed_time(time, event, "identity"), time)


def test_a_constant_covariate_is_left_out_as_r_drops_it() -> None:
    X, time, event, beta = _fit(pd.read_csv(DATA / "published_lc.csv"))
    with_constant = ph_test(np.column_stack([X, np.ones(len(X))]), time, event, np.r_[beta, 0.0])
    alone = ph_test(X, time, event, beta)
    assert np.isnan(with_constant.chisq[2])
    np.testing.assert_allclose(with_constant.chisq[:2], alone.chisq, rtol=1e-12)
    assert with_constant.global_chisq == pytest.approx(alone.global_chisq, rel=1e-12)
    assert with_constant.global_df == 2
    assert np.isnan(with_constant.scaled_residuals[:, 2]).all()


def test_bad_input_is_refused_with_the_reason() -> None:
    X = np.ones((3, 1)) * [[0.0], [1.0], [2.0]]
    time = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="all samples are censored"):
        ph_test(X, time, np.zeros(3, bool), np.zeros(1))
    with pytest.raises(ValueError, match="transform must be one of km, rank, identity; got 'log'"):
        ph_test(X, time, np.ones(3, bool), np.zeros(1), transform="log")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="p = len"):
        ph_test(X, time, np.ones(3, bool), np.zeros(2))


def _simulated_with_ties(seed: int, n: int = 160) -> pd.DataFrame:
    """Three covariates with a time-varying effect of the binary one; times rounded so deaths tie."""
    rng = np.random.default_rng(seed)
    binary = rng.integers(0, 2, n).astype(float)
    dose = rng.normal(100, 15, n).round(1)
    stage = rng.integers(1, 4, n).astype(float)
    early = rng.exponential(1 / np.exp(1.0 * binary + 0.01 * (dose - 100) + 0.2 * stage))
    late = rng.exponential(1 / np.exp(0.01 * (dose - 100) + 0.2 * stage))
    death = np.where(early < 0.5, early, 0.5 + late)  # the binary effect stops at t = 0.5
    censor = rng.uniform(0.2, 3.0, n)
    return pd.DataFrame(
        {
            "binary": binary,
            "dose": dose,
            "stage": stage,
            "time": np.ceil(np.minimum(death, censor) * 20) / 20,  # steps of 0.05: many ties
            "event": (death <= censor).astype(int),
        }
    )


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed (.ci/run installs r-cran-survival)")
@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_live_r_cox_zph_on_fresh_tied_data(ties: str, tmp_path: Path) -> None:
    """R's coxph + cox.zph + plot.cox.zph's smooth on a new dataset, every transform: χ², residuals, band."""
    design = _simulated_with_ties(seed=15)
    X, time, event, beta = _fit(design, ties)
    assert len(np.unique(time[event])) < event.sum()  # tied deaths exist
    design.to_csv(tmp_path / "d.csv", index=False, float_format="%.17g")
    script = tmp_path / "zph.R"
    script.write_text(f"""
suppressMessages({{library(survival); library(splines)}})
if (packageVersion("survival") < "3.0") quit(status = 3)
setwd("{tmp_path}")
df <- read.csv("d.csv")
fit <- coxph(Surv(time, event) ~ ., data = df, ties = "{ties}",
             control = coxph.control(eps = 1e-12, iter.max = 100, toler.chol = 1e-13))
f <- function(x) formatC(x, digits = 15, format = "g")
cat("coef all", f(coef(fit)), "\\n")
for (tr in c("km", "rank", "identity")) {{
  z <- cox.zph(fit, transform = tr)
  cat("chisq", tr, f(z$table[, "chisq"]), "\\n")
  cat("x", tr, f(z$x), "\\n")
  cat("y", tr, f(z$y[, 1]), "\\n")
  # plot.cox.zph's smooth and its half-width (2 se) for the first covariate, as that function computes them
  pred <- seq(min(z$x), max(z$x), length = 40)
  lmat <- ns(c(pred, z$x), df = 4, intercept = TRUE)
  q <- qr(lmat[-(1:40), ])
  bk <- backsolve(q$qr[1:4, 1:4], diag(4))
  cat("smooth", tr, f(lmat[1:40, ] %*% qr.coef(q, z$y[, 1])), "\\n")
  cat("half", tr, f(2 * sqrt(z$var[1, 1] * rowSums((lmat[1:40, ] %*% bk %*% t(bk)) * lmat[1:40, ]))), "\\n")
}}
""")
    run = subprocess.run(["Rscript", str(script)], capture_output=True, text=True, timeout=120)
    if run.returncode == 3:
        pytest.skip("R's survival package is older than 3.0")
    assert run.returncode == 0, run.stderr
    r = {(kind, which): np.array(values, float) for kind, which, *values in map(str.split, run.stdout.splitlines())}
    np.testing.assert_allclose(beta, r["coef", "all"], rtol=1e-8)
    two_se = 0.9544997361036416  # R's band is ± 2 se: the level whose normal quantile is 2
    for transform in TRANSFORMS:
        ours = ph_test(X, time, event, beta, transform=transform, ties=ties)  # type: ignore[arg-type]
        want = r["chisq", transform]
        np.testing.assert_allclose(np.r_[ours.chisq, ours.global_chisq], want, rtol=1e-8, err_msg=transform)
        np.testing.assert_allclose(ours.transformed_time, r["x", transform], rtol=1e-12)
        np.testing.assert_allclose(ours.scaled_residuals[:, 0], r["y", transform], rtol=1e-8)
        smooth = ph_smooth(ours, 0, level=two_se)
        assert smooth is not None
        np.testing.assert_allclose(smooth.fit, r["smooth", transform], rtol=1e-8, atol=1e-10)
        half = r["half", transform]
        np.testing.assert_allclose(smooth.upper - smooth.fit, half, rtol=1e-8)
        np.testing.assert_allclose(smooth.fit - smooth.lower, half, rtol=1e-8)


def test_the_smooth_band_is_95_percent_by_default_and_none_when_a_spline_cannot_be_fitted() -> None:
    X, time, event, beta = _fit(pd.read_csv(DATA / "published_lc.csv"))
    result = ph_test(X, time, event, beta)
    wide = ph_smooth(result, 1)
    narrow = ph_smooth(result, 1, level=0.5)
    assert wide is not None
    assert narrow is not None
    np.testing.assert_allclose((wide.upper - wide.fit) / (narrow.upper - narrow.fit), 1.959964 / 0.6744898, rtol=1e-6)
    four_deaths = ph_test(np.array([[0.0], [1.0], [0.0], [1.0]]), np.arange(1.0, 5.0), np.ones(4, bool), np.zeros(1))
    assert ph_smooth(four_deaths, 0, df=4) is not None
    assert ph_smooth(four_deaths, 0, df=5) is None  # more spline columns than deaths: R skips the panel
