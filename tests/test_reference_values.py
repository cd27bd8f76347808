"""riskmodel's own statistics against published reference results, to 1e-6.

* Therneau & Grambsch (2000), *Modeling Survival Data*, test data 1 (also the survival package's
  validation vignette): 7 observations, one with a missing status, one covariate. The Breslow
  estimate has the closed form β = log(1.5 + √33/2) = 1.475285; Efron's is 1.676857.
* The Rossi recidivism data (Rossi, Berk & Lenihan 1980) as published with R's survival
  package output under Efron ties, e.g. in Fox & Weisberg, *Cox proportional-hazards regression
  for survival data in R* (2018 appendix): fin −0.3794222 and the six other coefficients to the
  five decimals printed there.
* A Kaplan-Meier example computed by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_rossi

from riskmodel.models import CoxPH
from riskmodel.stats import kaplan_meier


def target(time: list[float] | np.ndarray, event: list[bool] | np.ndarray) -> np.ndarray:
    y = np.empty(len(time), dtype=[("event", "?"), ("time", "<f8")])
    y["event"], y["time"] = event, time
    return y


def therneau_test1() -> tuple[pd.DataFrame, np.ndarray]:
    """time 4 3 1 1 2 2 3, status 1 NA 1 0 1 1 0, x 0 2 1 1 1 0 0; the NA row is dropped as R does."""
    time = np.array([4, 3, 1, 1, 2, 2, 3], float)
    status = np.array([1, np.nan, 1, 0, 1, 1, 0])
    x = np.array([0, 2, 1, 1, 1, 0, 0], float)
    keep = ~np.isnan(status)
    return pd.DataFrame({"x": x[keep]}), target(time[keep], status[keep].astype(bool))


def test_breslow_beta_on_therneau_grambsch_test1_is_the_closed_form() -> None:
    X, y = therneau_test1()
    fit = CoxPH(penalty=0.0, ties="breslow").fit(X, y)
    assert fit.coef_[0] == pytest.approx(math.log(1.5 + math.sqrt(33) / 2), abs=1e-6)
    assert fit.coef_[0] == pytest.approx(1.475285, abs=1e-6)


def test_efron_beta_on_therneau_grambsch_test1() -> None:
    X, y = therneau_test1()
    assert CoxPH(penalty=0.0).fit(X, y).coef_[0] == pytest.approx(1.676857, abs=1e-6)


ROSSI_EFRON = {  # R: coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = Rossi)
    "fin": -0.37942,
    "age": -0.05744,
    "race": 0.31390,
    "wexp": -0.14980,
    "mar": -0.43370,
    "paro": -0.08487,
    "prio": 0.09150,
}


def test_rossi_coefficients_under_efron_match_r() -> None:
    rossi = load_rossi()
    X = rossi[list(ROSSI_EFRON)]
    fit = CoxPH(penalty=0.0).fit(X, target(rossi["week"].to_numpy(float), rossi["arrest"].to_numpy(bool)))
    got = dict(zip(ROSSI_EFRON, fit.coef_, strict=True))
    assert got["fin"] == pytest.approx(-0.3794222, abs=1e-6)
    for name, published in ROSSI_EFRON.items():
        assert got[name] == pytest.approx(published, abs=5e-6), name  # printed to 5 decimals


def test_kaplan_meier_matches_a_hand_computation() -> None:
    # times 1 2 2 3 4 5, events 1 1 0 1 0 1:
    # t=1: 6 at risk, 1 event -> 5/6; t=2: 5 at risk, 1 event -> 5/6·4/5 = 2/3 (the censored 2 stays at risk)
    # t=3: 3 at risk, 1 event -> 2/3·2/3 = 4/9; t=5: 1 at risk, 1 event -> 0
    times, surv = kaplan_meier(np.array([1, 2, 2, 3, 4, 5], float), np.array([1, 1, 0, 1, 0, 1], bool))
    expected = {1.0: 5 / 6, 2.0: 2 / 3, 3.0: 4 / 9, 5.0: 0.0}
    lookup = dict(zip(times.tolist(), surv.tolist(), strict=True))
    for t, s in expected.items():
        assert lookup[t] == pytest.approx(s, abs=1e-12)
    assert np.all(np.diff(surv) <= 0)
