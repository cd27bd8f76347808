"""The calibration slopes' lean Cox fit (no hazard-ratio table, no baseline) against lifelines and
against riskmodel's full unpenalised CoxPH fit, on tied, censored samples.

Every bootstrap resample fits four of them; the lean fit must give lifelines' coefficient (Efron
ties, to its convergence: 1e-5 relative, measured 4e-7 at most) and the full fit's ``coef_`` bit for bit, NaN where that
fit does not converge.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from riskmodel.errors import RiskModelWarning
from riskmodel.models import CoxPH
from riskmodel.stats import survival_array
from riskmodel.validation import calibration_slope, calibration_slope_at


def _sample(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(15, 80))
    x = rng.normal(size=n) * rng.choice([0.1, 1.0, 10.0])
    if seed % 3 == 0:
        x = np.round(x)  # tied covariate values
    time = np.ceil(rng.exponential(np.exp(-0.5 * x / max(np.std(x), 1e-9)) * 6))  # tied times
    event = rng.random(n) < rng.uniform(0.3, 0.9)
    event[0] = True
    return x, event, time


def _lifelines(frame: pd.DataFrame) -> float:
    """lifelines' Efron coefficient, converged far below its default precision (1e-7)."""
    fit = CoxPHFitter().fit(frame, "time", "event", fit_options={"precision": 1e-12, "max_steps": 200})
    return float(fit.params_["x"])


@pytest.mark.parametrize("seed", range(12))
def test_the_slope_is_lifelines_efron_coefficient(seed: int) -> None:
    x, event, time = _sample(seed)
    frame = pd.DataFrame({"x": x, "time": time, "event": event.astype(int)})
    if np.ptp(x) == 0:
        assert math.isnan(calibration_slope(survival_array(event, time), x))  # a constant has no slope
        return
    ref = _lifelines(frame)
    assert calibration_slope(survival_array(event, time), x) == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("seed", range(12))
def test_the_slope_at_a_horizon_is_lifelines_on_outcomes_censored_there(seed: int) -> None:
    x, event, time = _sample(seed)
    survival = np.exp(-np.exp(x / max(np.std(x), 1e-9)) * 0.2)
    horizon = float(np.median(time))
    cloglog = np.log(-np.log(np.clip(survival, 1e-12, 1 - 1e-12)))
    frame = pd.DataFrame(
        {"x": cloglog, "time": np.minimum(time, horizon), "event": (event & (time <= horizon)).astype(int)}
    )
    if frame["event"].sum() == 0 or np.ptp(x) == 0:
        return
    ref = _lifelines(frame)
    got = calibration_slope_at(survival_array(event, time), survival, horizon)
    assert got == pytest.approx(ref, rel=1e-5)


def test_the_slope_is_the_full_fit_s_coefficient_bit_for_bit_and_nan_where_it_does_not_converge() -> None:
    nan = 0
    for seed in range(300):
        x, event, time = _sample(seed)
        if seed % 4 == 0:
            event = x > np.median(x)  # separation: the fit runs off
            event[np.argmax(x)] = True
        if np.ptp(x) == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RiskModelWarning)
            fit = CoxPH(penalty=0.0).fit(x.reshape(-1, 1), survival_array(event, time))
        got = calibration_slope(survival_array(event, time), x)
        if not fit.converged_:
            nan += 1
            assert math.isnan(got)
        else:
            assert got == float(fit.coef_[0])
    assert nan > 0  # the separated samples were exercised


def _full_fit_smoother(x: np.ndarray, y: np.ndarray, horizon: float, knots: np.ndarray) -> np.ndarray:
    """The calibration smoother as the whole CoxPH fit and its predict_survival give it, at x."""
    from riskmodel.stats import restricted_cubic_spline

    def basis(v: np.ndarray) -> np.ndarray:
        return restricted_cubic_spline(v, knots) if len(knots) >= 3 else v[:, None]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RiskModelWarning)
        fit = CoxPH(penalty=0.0).fit(basis(x), y)
    return 1 - np.asarray(fit.predict_survival(basis(x), [min(horizon, fit.max_time_)]).to_numpy()[:, 0])


def test_the_smoother_is_the_full_fit_s_prediction_bit_for_bit() -> None:
    """The smoothed calibration curve (ICI's, and 100 bootstrap refits a horizon for its band) read
    off newton_fit and Efron's baseline: the full fit's S(t) on the same basis, to the bit."""
    from riskmodel.validation import smooth_calibration

    rng = np.random.default_rng(7)
    for i in range(200):
        n = int(rng.integers(8, 60))
        s = np.clip(rng.uniform(0.05, 0.99, n), 1e-10, 1 - 1e-10)
        if i % 4 == 0:
            s = np.round(s, 1).clip(0.05, 0.95)  # few distinct values: fewer knots, a linear smoother
        x = np.log(-np.log(s))
        time = np.ceil(rng.exponential(6, n)) if i % 2 else rng.exponential(6, n)
        event = rng.random(n) < rng.uniform(0.2, 0.9)
        event[0] = True
        y = survival_array(event, time)
        knots = np.unique(np.percentile(x, [10.0, 50.0, 90.0]))
        horizon = float(rng.choice([2.0, 6.0, 100.0]))
        got = smooth_calibration(y, s, horizon).observed
        np.testing.assert_array_equal(got, _full_fit_smoother(x, y, horizon, knots))
