"""Kaplan-Meier medians and intervals against R's survival package (survfit, quantile.survfit).

References: ``tests/data/km_medians_r.csv`` holds R 4.2.2 / survival 3.5.3's
``quantile(survfit(Surv(time, event) ~ 1), 0.5)`` (default log-type interval) for every row of the
bundled cohort's univariate tables, written with 12 significant digits; the live test runs Rscript
on simulated curves. Medians and their limits are observed times or midpoints of two, so the
tolerance is 1e-9 months; survival probabilities and their log-log limits are held to 1e-9.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import Cohort, survival_data
from riskmodel.cohort.reconstruction.study import STUDY_GROUPINGS
from riskmodel.reporting.survival_tables import AS_PUBLISHED, LANDMARKED, km_overall, univariate_table
from riskmodel.stats import km_at, km_median, km_summary
from tests.conftest import REPO

TOL = 1e-9
R_MEDIANS = REPO / "tests" / "data" / "km_medians_r.csv"
needs_r = pytest.mark.skipif(
    shutil.which("Rscript") is None, reason="R is not installed (.ci/run installs r-cran-survival)"
)


def r_medians() -> pd.DataFrame:
    return pd.read_csv(R_MEDIANS, keep_default_na=False, na_values=["NA"])


def table_groups(bundled: Cohort) -> Iterator[tuple[str, str, str, np.ndarray, np.ndarray]]:
    """The patients of every univariate-table row: endpoint, factor label, group, time, event."""
    d = bundled.data
    for ep in ("lc", "os"):
        for factor, group_of in STUDY_GROUPINGS.items():
            frames = {factor: d}
            if factor == "short_term_response":
                sd = survival_data(d, ep, landmark_months=3, feature_columns=["response_3mo"])  # type: ignore[arg-type]
                landmarked = sd.X.assign(**{f"{ep}_months": sd.y["time"], f"{ep}_event": sd.y["event"]})
                frames = {factor + LANDMARKED: landmarked, factor + AS_PUBLISHED: d}
            for label, frame in frames.items():
                groups = np.asarray(group_of(frame)).astype(str)
                time, event = frame[f"{ep}_months"].to_numpy(float), frame[f"{ep}_event"].to_numpy(bool)
                for group in sorted(set(groups)):
                    yield ep, label, group, time[groups == group], event[groups == group]


def test_every_univariate_median_is_r_survfits(bundled: Cohort) -> None:
    """All 64 rows, including the 12 whose curve is exactly 0.5 over an interval."""
    ours = pd.concat([univariate_table(bundled.data, ep).assign(endpoint=ep) for ep in ("lc", "os")])
    both = r_medians().merge(ours, on=["endpoint", "factor", "group"], how="outer", validate="1:1", indicator=True)
    assert (both["_merge"] == "both").all()
    assert len(both) == 64
    assert (both["n_x"] == both["n_y"]).all()
    np.testing.assert_allclose(both["median"], both["r_median"], atol=TOL, rtol=0)


def test_every_univariate_median_interval_is_r_survfits(bundled: Cohort) -> None:
    ref = r_medians().set_index(["endpoint", "factor", "group"])
    seen = 0
    for ep, label, group, time, event in table_groups(bundled):
        r = ref.loc[(ep, label, group)]
        assert len(time) == r["n"], (ep, label, group)
        assert event.sum() == r["events"], (ep, label, group)
        got = km_median(time, event)
        np.testing.assert_allclose(got, r[["r_median", "r_lower", "r_upper"]].to_numpy(float), atol=TOL, rtol=0)
        seen += 1
    assert seen == 64


def test_an_exact_half_plateau_takes_the_midpoint_to_the_next_event() -> None:
    # S: 3/4 at 1, 1/2 from 2 (the censoring at 3 keeps it there), 0 at 5: R gives (2 + 5) / 2
    time, event = np.array([1.0, 2.0, 3.0, 5.0]), np.array([True, True, False, True])
    assert km_median(time, event)[0] == 3.5
    assert km_summary(time, event, [6.0])[1] == 3.5
    assert km_summary(time, event, [6.0], median_rule="first")[1] == 2.0


def test_a_curve_left_at_one_half_takes_the_midpoint_to_the_last_follow_up() -> None:
    time, event = np.array([1.0, 2.0, 3.0, 9.0]), np.array([True, True, False, False])
    assert km_median(time, event)[0] == (2.0 + 9.0) / 2


def test_a_curve_above_one_half_has_no_median_and_a_curve_below_has_no_plateau() -> None:
    assert np.isnan(km_median(np.array([1.0, 2.0, 3.0]), np.array([True, False, False]))[0])
    assert np.isnan(km_summary(np.array([1.0, 2.0]), np.array([False, False]), [1.0])[1])
    # S: 2/3 at 1, 1/3 at 2: the curve jumps past 0.5, so the median is the event time itself
    assert km_median(np.array([1.0, 2.0, 3.0]), np.array([True, True, False]))[0] == 2.0


def test_an_unknown_median_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="median_rule must be 'midpoint' or 'first', got 'last'"):
        km_summary(np.array([1.0]), np.array([True]), [1.0], median_rule="last")  # type: ignore[arg-type]


def plateau_curves(seed: int, count: int) -> pd.DataFrame:
    """Small samples on a coarse integer time grid: ties everywhere and many curves exactly at 0.5."""
    rng = np.random.default_rng(seed)
    rows = []
    for curve in range(count):
        n = int(rng.choice([2, 4, 6, 8, 10, 12, 16, 20, 24, 40]))
        time = rng.integers(1, int(rng.choice([3, 5, 10, 30])) + 1, n).astype(float)
        event = rng.random(n) < rng.choice([0.3, 0.5, 0.7, 1.0])
        event[0] = True
        rows += [(curve, t, int(e)) for t, e in zip(time, event, strict=True)]
    return pd.DataFrame(rows, columns=["curve", "time", "event"])


@needs_r
def test_medians_intervals_and_landmark_rates_match_r_on_simulated_plateaus(tmp_path: Path) -> None:
    data = plateau_curves(seed=15, count=300)
    data.to_csv(tmp_path / "curves.csv", index=False)
    script = tmp_path / "km.R"
    script.write_text(f"""
suppressMessages(library(survival))
d <- read.csv("{tmp_path / "curves.csv"}")
g <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))
for (i in unique(d$curve)) {{
  s <- d[d$curve == i, ]
  fit <- survfit(Surv(time, event) ~ 1, data = s)
  q <- quantile(fit, 0.5)
  at <- summary(survfit(Surv(time, event) ~ 1, data = s, conf.type = "log-log"), times = 2.5, extend = TRUE)
  half <- any(abs(fit$surv - 0.5) < 1e-12)
  to_end <- half && abs(tail(fit$surv, 1) - 0.5) < 1e-12
  cat(i, g(q$quantile), g(q$lower), g(q$upper), g(at$surv), g(at$lower), g(at$upper), half, to_end, "\\n")
}}
""")
    out = subprocess.run(["Rscript", str(script)], capture_output=True, text=True, timeout=300, check=True).stdout
    lines = [line.split() for line in out.splitlines()]
    assert len(lines) == 300
    for fields in lines:
        curve = data[data["curve"] == int(fields[0])]
        time, event = curve["time"].to_numpy(), curve["event"].to_numpy(bool)
        r = np.array([np.nan if v == "NA" else float(v) for v in fields[1:7]])
        np.testing.assert_allclose(km_median(time, event), r[:3], atol=TOL, rtol=0, err_msg=fields[0])
        rates, median = km_summary(time, event, [2.5])
        np.testing.assert_allclose([median, rates[0]], [r[0], r[3]], atol=TOL, rtol=0, err_msg=fields[0])
        if 0 < r[3] < 1:  # km_at leaves the interval undefined at S = 1, where R's summary prints 1
            np.testing.assert_allclose(km_at(time, event, 2.5), r[3:], atol=TOL, rtol=0, err_msg=fields[0])
    plateaus = sum(f[7] == "TRUE" for f in lines)
    to_end = sum(f[8] == "TRUE" for f in lines)
    assert plateaus >= 50  # the rule under test was exercised, also where S stays at 0.5 to the end
    assert to_end >= 8


@needs_r
def test_overall_table_matches_r(bundled: Cohort, tmp_path: Path) -> None:
    """The report's overall median (log interval) and landmark rates (log-log intervals) are survfit's."""
    d = bundled.data
    d[["lc_months", "lc_event", "os_months", "os_event"]].to_csv(tmp_path / "cohort.csv", index=False)
    script = tmp_path / "overall.R"
    script.write_text(f"""
suppressMessages(library(survival))
d <- read.csv("{tmp_path / "cohort.csv"}")
g <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))
for (ep in c("lc", "os")) {{
  f <- as.formula(paste0("Surv(", ep, "_months, ", ep, "_event) ~ 1"))
  q <- quantile(survfit(f, data = d), 0.5)
  s <- summary(survfit(f, data = d, conf.type = "log-log"), times = c(6, 12, 18, 24), extend = TRUE)
  cat(ep, g(q$quantile), g(q$lower), g(q$upper), g(100 * s$surv), g(100 * s$lower), g(100 * s$upper), "\\n")
}}
""")
    out = subprocess.run(["Rscript", str(script)], capture_output=True, text=True, timeout=120, check=True).stdout
    for line in out.splitlines():
        ep, *values = line.split()
        r = np.array([np.nan if v == "NA" else float(v) for v in values])
        table = km_overall(d[f"{ep}_months"].to_numpy(float), d[f"{ep}_event"].to_numpy(bool))
        np.testing.assert_allclose(table.iloc[0, 1:].to_numpy(float), r[:3], atol=TOL, rtol=0)
        ours = table.iloc[1:, 1:].to_numpy(float)  # rows S(6)..S(24); columns estimate, lower, upper
        np.testing.assert_allclose(ours, r[3:].reshape(3, 4).T, atol=1e-7, rtol=0)
    assert out.count("\n") == 2
