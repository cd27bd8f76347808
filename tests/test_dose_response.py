"""Dose-response without a cut-off, against R's rms and survival, and the threshold analysis's honesty.

R references are run live (skipped without Rscript): ``Hmisc::rcspline.eval`` for the knots,
``rms::cph(Surv(t, e) ~ rcs(d90, knots))`` with the SAME knots passed explicitly (and
``eps = 1e-12``, ``tol = 1e-13``, ``iter.max = 100``: cph's default ``eps = 1e-4`` stops before the
coefficients settle to 1e-6, about 8e-6 away on the bundled LC data), ``lrtest``, ``anova.rms``
(Wald), ``Predict(…, ref.zero = TRUE)`` (the partial effect against the median, datadist's
adjust-to value), and ``survival::coxph`` for the linear and dichotomised fits. Tolerance 1e-6
absolute throughout (measured: at most 2e-12 on the bundled LC and OS cohorts and the synthetic one).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import Cohort
from riskmodel.errors import UserInputError
from riskmodel.stats import harrell_knots, logrank_chi2
from riskmodel.validation.dose_response import dose_data, dose_response
from riskmodel.validation.threshold import best_cut_point, lausen_schumacher_p, threshold_analysis

HAS_R = shutil.which("Rscript") is not None
GRID = [55.0, 70.0, 85.0, 100.0, 104.0, 118.0, 130.0, 145.0]
TOL = 1e-6


def _synthetic(n: int = 150, seed: int = 3, adjust: bool = True) -> pd.DataFrame:
    """A dose with a bent effect (a plateau above ~110), an age covariate, censoring, some tied times."""
    rng = np.random.default_rng(seed)
    d90 = rng.normal(105, 22, n).round(1)
    age = rng.normal(62, 9, n).round()
    lp = -0.03 * (np.minimum(d90, 110) - 105) + (0.02 * (age - 62) if adjust else 0.0)
    death = rng.exponential(12 * np.exp(-lp))
    censor = rng.uniform(2, 30, n)
    return pd.DataFrame(
        {"d90": d90, "age": age, "t": np.ceil(np.minimum(death, censor) * 4) / 4, "e": (death <= censor).astype(int)}
    )


def _cph_script(csv: Path, knots: np.ndarray, adjust: bool, cut: float) -> str:
    """rms and survival on the file: every number the dose-response and threshold tables show."""
    extra = " + age" if adjust else ""
    null = "cph(Surv(t, e) ~ age, data = d, eps = 1e-12, tol = 1e-13, iter.max = 100)" if adjust else "NULL"
    return f"""
d <- read.csv("{csv}")
dd <- datadist(d); options(datadist = "dd")
k <- c({", ".join(f"{v:.17g}" for v in knots)})
f <- function(x) cat(formatC(x, digits = 15, format = "g"), "\\n")
s <- cph(Surv(t, e) ~ rcs(d90, k){extra}, data = d, eps = 1e-12, tol = 1e-13, iter.max = 100)
l <- cph(Surv(t, e) ~ d90{extra}, data = d, eps = 1e-12, tol = 1e-13, iter.max = 100)
n0 <- {null}
cat("coef "); f(coef(s))
cat("loglik "); f(s$loglik[2])
cat("nonlinear_lr "); f(lrtest(s, l)$stats["L.R. Chisq"])
cat("overall_lr "); f(if (is.null(n0)) s$stats["Model L.R."] else lrtest(s, n0)$stats["L.R. Chisq"])
a <- anova(s)
cat("overall_wald "); f(a["d90", "Chi-Square"])
cat("nonlinear_wald "); f(a[" Nonlinear", "Chi-Square"])
p <- Predict(s, d90 = c({", ".join(f"{g:g}" for g in GRID)}), ref.zero = TRUE)
cat("yhat "); f(p$yhat)
cat("lower "); f(p$lower)
cat("upper "); f(p$upper)
cat("reference "); f(dd$limits["Adjust to", "d90"])
for (cut in c(110, {cut!r})) {{
  d$hi <- as.integer(d$d90 >= cut)
  m <- coxph(Surv(t, e) ~ hi{extra}, data = d, control = coxph.control(eps = 1e-12, iter.max = 100))
  cat(if (cut == 110) "cut110 " else "cutdata ")
  f(c(AIC(m), 2 * (m$loglik[2] - {"n0$loglik[2]" if adjust else "m$loglik[1]"})))
}}
m <- coxph(Surv(t, e) ~ d90{extra}, data = d, control = coxph.control(eps = 1e-12, iter.max = 100))
cat("linear "); f(c(AIC(m), 2 * (m$loglik[2] - {"n0$loglik[2]" if adjust else "m$loglik[1]"})))
"""


def _frames(bundled: Cohort) -> dict[str, tuple[pd.DataFrame, bool]]:
    b = bundled.data
    out = {
        ep: (pd.DataFrame({"d90": b["d90_gy"], "t": b[f"{ep}_months"], "e": b[f"{ep}_event"].astype(int)}), False)
        for ep in ("lc", "os")  # time from the implant
    }
    out["synthetic"] = (_synthetic(), True)
    return out


def _knot_samples(bundled: Cohort) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "bundled": bundled.data["d90_gy"].to_numpy(float),
        "large": rng.gamma(4, 25, 240).round(1),
        "tied": np.r_[np.zeros(30), rng.uniform(1, 50, 170).round(2)],  # 15 % at the minimum: its own knot
    }


def _adjust(frame: pd.DataFrame, adjust: bool) -> pd.DataFrame | None:
    return frame[["age"]] if adjust else None


@pytest.fixture(scope="module")
def r_reference(bundled: Cohort, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, np.ndarray]]:
    """One R session (rms loads in seconds) for every case: {case: {key: values}}; knots under "knots"."""
    if not HAS_R:
        pytest.skip("R is not installed (.ci/run installs r-cran-rms)")
    folder = tmp_path_factory.mktemp("dose_r")
    parts = []
    for case, (frame, adjust) in _frames(bundled).items():
        csv = folder / f"{case}.csv"
        frame.to_csv(csv, index=False, float_format="%.17g")
        knots = harrell_knots(frame["d90"].to_numpy(float), 4)
        cut, _ = best_cut_point(dose_data(frame["t"], frame["e"], frame["d90"], _adjust(frame, adjust)))
        parts.append(f'cat("case {case}\\n")\n' + _cph_script(csv, knots, adjust, cut))
    for name, x in _knot_samples(bundled).items():
        (folder / f"{name}.txt").write_text("\n".join(f"{v:.17g}" for v in x))
        parts.append(
            f'x <- scan("{folder / name}.txt", quiet = TRUE)\n'
            f'for (k in 3:5) cat(paste0("{name}_", k), '
            'formatC(Hmisc::rcspline.eval(x, nk = k, knots.only = TRUE), digits = 15, format = "g"), "\\n")'
        )
    path = folder / "check.R"
    path.write_text("suppressMessages(library(rms))\n" + "\n".join(parts))
    run = subprocess.run(["Rscript", str(path)], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    out: dict[str, dict[str, np.ndarray]] = {}
    case = "knots"
    for line in run.stdout.splitlines():
        key, *values = line.split()
        if key == "case":
            case = values[0]
            continue
        out.setdefault(case if "_" not in key or key.endswith(("_lr", "_wald")) else "knots", {})[key] = np.array(
            values, float
        )
    return out


@pytest.mark.parametrize("case", ["lc", "os", "synthetic"])
def test_spline_fit_tests_and_curve_equal_rms_cph(
    bundled: Cohort, case: str, r_reference: dict[str, dict[str, np.ndarray]]
) -> None:
    """cph(Surv(t, e) ~ rcs(d90, 4) [+ age]): coefficients, LR and Wald tests, Predict's curve and band;
    the threshold table's AIC and LR χ² against survival::coxph (linear, 110 Gy, the data-driven cut)."""
    frame, adjust = _frames(bundled)[case]
    r = r_reference[case]
    knots = harrell_knots(frame["d90"].to_numpy(float), 4)
    ours = dose_response(frame["t"], frame["e"], frame["d90"], _adjust(frame, adjust), knots, grid=GRID)
    np.testing.assert_allclose(ours.coef.to_numpy(), r["coef"], rtol=0, atol=TOL)
    assert ours.loglik["spline"] == pytest.approx(r["loglik"][0], abs=TOL)
    assert ours.reference == pytest.approx(r["reference"][0], abs=1e-12)  # the median
    for hypothesis in ("overall", "nonlinear"):
        assert ours.test(hypothesis, "LR")[0] == pytest.approx(r[f"{hypothesis}_lr"][0], abs=TOL), hypothesis
        assert ours.test(hypothesis, "Wald")[0] == pytest.approx(r[f"{hypothesis}_wald"][0], abs=TOL), hypothesis
    assert ours.test("overall")[1] == 3
    assert ours.test("nonlinear")[1] == 2
    np.testing.assert_allclose(ours.curve["log_hr"], r["yhat"], rtol=0, atol=TOL)
    np.testing.assert_allclose(ours.curve["lower"], r["lower"], rtol=0, atol=TOL)
    np.testing.assert_allclose(ours.curve["upper"], r["upper"], rtol=0, atol=TOL)
    result = threshold_analysis(
        frame["t"], frame["e"], frame["d90"], _adjust(frame, adjust), knots=knots, n_resamples=2
    )
    table = result.table.set_index("model")
    for model, key in (("linear", "linear"), ("threshold", "cut110"), ("data-driven", "cutdata")):
        assert table.at[model, "AIC"] == pytest.approx(r[key][0], abs=TOL), model
        assert table.at[model, "LR χ²"] == pytest.approx(r[key][1], abs=TOL), model
    assert table.at["spline", "LR χ²"] == pytest.approx(r["overall_lr"][0], abs=TOL)
    assert table.at["spline", "AIC"] == pytest.approx(-2 * r["loglik"][0] + 2 * len(r["coef"]), abs=TOL)


def test_knots_equal_hmisc_rcspline_eval(bundled: Cohort, r_reference: dict[str, dict[str, np.ndarray]]) -> None:
    """Harrell's default knots (3-5), for n < 100 (5th smallest/largest), n ≥ 100, and a tied lower end."""
    samples = _knot_samples(bundled)
    for name, x in samples.items():
        for k in (3, 4, 5):
            want = r_reference["knots"][f"{name}_{k}"]
            np.testing.assert_allclose(harrell_knots(x, k), want, rtol=1e-12, err_msg=f"{name}, {k}")
    assert harrell_knots(samples["tied"], 4)[0] > 0  # the tied minimum is not a knot; the next value is


def _noise(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "d90": rng.uniform(60, 150, n).round(1),
            "t": rng.exponential(10, n).round(2) + 0.01,
            "e": (rng.uniform(size=n) < 0.7).astype(int),
        }
    )


def test_data_driven_cut_point_is_optimistic_on_noise() -> None:
    """Dose unrelated to the outcome: the searched cut-point's apparent C is inflated, its optimism is
    positive and larger than the pre-specified cut-off's, and the verdict finds no threshold."""
    optimism, inflation = [], []
    for seed in range(3):
        d = _noise(60, seed)
        result = threshold_analysis(d["t"], d["e"], d["d90"], n_resamples=40, seed=seed)
        row = result.row("data-driven")
        optimism.append(row["optimism"])
        inflation.append(row["C (apparent)"] - result.row("threshold")["C (apparent)"])
        assert row["optimism"] > 0.01, seed
        assert row["C (corrected)"] < row["C (apparent)"]
        assert row["optimism"] > result.row("threshold")["optimism"], seed
        assert "110 Gy" in result.verdict
        assert "compatible" not in result.verdict
        assert result.failed == len(result.failures)  # every failure is listed
    assert np.mean(inflation) > 0  # the search finds a better-looking split than 110 Gy by chance


def test_search_corrected_p_holds_its_level_where_the_nominal_one_does_not() -> None:
    """Under no association, Lausen & Schumacher's p falls below 0.05 about 5 % of the time; the
    nominal χ²(1) p of the best cut-point several times as often (200 simulated cohorts of 80; measured:
    6.5 % and 42 %)."""
    from scipy import stats

    ls, nominal = [], []
    for seed in range(200):
        d = _noise(80, 1000 + seed)
        _, chi2 = best_cut_point(dose_data(d["t"], d["e"], d["d90"]))
        ls.append(lausen_schumacher_p(chi2))
        nominal.append(stats.chi2.sf(chi2, 1))
    assert np.mean(np.array(ls) < 0.05) < 0.1  # binomial sd at 5 %: 1.5 points
    assert np.mean(np.array(nominal) < 0.05) > 0.25


def test_best_cut_point_maximises_the_log_rank_over_the_middle_80_percent() -> None:
    d = _noise(50, 11)
    data = dose_data(d["t"], d["e"], d["d90"])
    cut, chi2 = best_cut_point(data)
    lo, hi = np.quantile(data.dose, [0.1, 0.9])
    assert lo <= cut <= hi
    brute = max(
        logrank_chi2(data.time, data.event, (data.dose >= c).astype(int), 2)
        for c in np.unique(data.dose[(data.dose >= lo) & (data.dose <= hi) & (data.dose > data.dose.min())])
    )
    assert chi2 == pytest.approx(brute, rel=1e-12)


def test_a_true_step_is_recognised_and_a_straight_line_is_not_called_a_threshold() -> None:
    rng = np.random.default_rng(5)
    n = 400
    dose = rng.uniform(60, 160, n).round(1)
    for lp, supported in ((np.where(dose >= 110, -1.5, 0.0), True), (-0.025 * (dose - 110), False)):
        death = rng.exponential(10 * np.exp(-lp))
        censor = rng.uniform(5, 40, n)
        result = threshold_analysis(np.minimum(death, censor), death <= censor, dose, n_resamples=5)
        assert ("compatible with a threshold at 110 Gy" in result.verdict) is supported, result.verdict
        assert "Exploratory" not in result.verdict  # over 200 events


def test_missing_values_are_left_out_and_counted_and_bad_input_is_one_clear_error() -> None:
    d = _synthetic(80, adjust=False)
    d.loc[[0, 5], "d90"] = np.nan
    result = dose_response(d["t"], d["e"], d["d90"])
    assert result.missing == 2
    assert result.patients == 78
    with pytest.raises(UserInputError, match="at least one event"):
        dose_response(d["t"], np.zeros(len(d)), d["d90"])
    with pytest.raises(UserInputError, match="0 or 1"):
        dose_response(d["t"], np.full(len(d), 2), d["d90"])
    with pytest.raises(UserInputError, match="increasing"):
        dose_response(d["t"], d["e"], d["d90"], knots=[100.0, 90.0, 120.0])


def test_the_log_rank_of_every_cut_at_once_equals_one_test_per_cut() -> None:
    """logrank_at_cuts (one 2-D count for all cut-points) against logrank_chi2 run per cut, whose
    k-group statistic is checked against R's survdiff: 150 random cohorts with tied times and
    doses, 1e-12; a side without an event is NaN, and the best cut is the same."""
    from riskmodel.validation.threshold import _candidates, logrank_at_cuts

    rng = np.random.default_rng(1)
    for _ in range(150):
        n = int(rng.integers(5, 300))
        t = np.round(rng.exponential(10, n), int(rng.integers(0, 3))) + 0.01
        e = rng.random(n) < rng.uniform(0.1, 0.9)
        dose = np.round(rng.uniform(60, 160, n), int(rng.integers(-1, 2)))
        cuts = _candidates(dose, 0.1, 0.9)
        got = logrank_at_cuts(t, e, dose, cuts)
        want = np.array(
            [
                logrank_chi2(t, e, (dose >= c).astype(int), 2)
                if (e & (dose >= c)).any() and (e & (dose < c)).any()
                else np.nan
                for c in cuts
            ]
        )
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        if np.isfinite(want).any():
            assert np.nanargmax(got) == np.nanargmax(want)
