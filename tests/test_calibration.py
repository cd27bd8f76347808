"""Calibration and decision curves against a known truth and a hand computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import survival_data
from riskmodel.cohort.synthetic import OS_COEFFICIENTS, _terms, generate
from riskmodel.models import CoxPH
from riskmodel.validation import d_calibration, net_benefit, smooth_calibration, survival_at_own_time


@pytest.fixture(scope="module")
def fitted_and_new() -> tuple[CoxPH, pd.DataFrame, np.ndarray]:
    """A correctly specified Cox model (the DGP's own terms), and 5,000 new patients."""
    train, test = generate(5000, seed=21), generate(5000, seed=22)
    a = survival_data(train, "os", landmark_months=3)
    b = survival_data(test, "os", landmark_months=3)

    def terms(frame: pd.DataFrame) -> pd.DataFrame:
        t = _terms(frame)
        return pd.DataFrame({k: t[k] for k in OS_COEFFICIENTS})

    model = CoxPH(penalty=0.0).fit(terms(train.loc[a.X.index]), a.y)
    return model, terms(test.loc[b.X.index]), b.y


def test_a_correct_model_has_a_small_ici_and_a_miscalibrated_one_a_large_ici(
    fitted_and_new: tuple[CoxPH, pd.DataFrame, np.ndarray],
) -> None:
    model, Z, y = fitted_and_new
    s12 = model.predict_survival(Z, [12]).to_numpy()[:, 0]
    good = smooth_calibration(y, s12, 12)
    assert good.ici < 0.02
    assert good.e50 <= good.e90
    bad = smooth_calibration(y, s12**3, 12)  # every risk inflated
    assert bad.ici > 0.1


def test_d_calibration_accepts_the_truth_and_rejects_a_distortion(
    fitted_and_new: tuple[CoxPH, pd.DataFrame, np.ndarray],
) -> None:
    model, Z, y = fitted_and_new
    own = survival_at_own_time(model, Z, y["time"])
    p_good, shares = d_calibration(y, own)
    assert p_good > 0.005  # measured 0.029 at this seed (n = 5,000 gives the test much power)
    assert shares.sum() == pytest.approx(1.0)
    p_bad, _ = d_calibration(y, own**3)
    assert p_bad < 1e-6


def test_net_benefit_without_censoring_is_the_binary_formula() -> None:
    # 10 patients, no censoring: events by month 12 for patients 0-3
    time = np.array([2, 5, 8, 11, 20, 25, 30, 30, 40, 50], float)
    y = np.empty(10, dtype=[("event", "?"), ("time", "<f8")])
    y["event"], y["time"] = True, time
    risk = np.array([0.9, 0.8, 0.3, 0.6, 0.7, 0.1, 0.2, 0.1, 0.05, 0.5])
    curve = net_benefit(y, risk, 12, [0.25, 0.55])
    # p = 0.25: treated = risk ≥ 0.25 -> patients 0,1,2,3,4,9: TP 4, FP 2 -> 4/10 − 2/10 · 1/3
    assert curve.loc[0, "model"] == pytest.approx(0.4 - 0.2 / 3)
    # p = 0.55: treated 0,1,3,4: TP 3, FP 1 -> 0.3 − 0.1 · 0.55/0.45
    assert curve.loc[1, "model"] == pytest.approx(0.3 - 0.1 * 0.55 / 0.45)
    assert curve.loc[0, "treat_all"] == pytest.approx(0.4 - 0.6 / 3)
    assert (curve["treat_none"] == 0).all()


def test_grouped_calibration_is_kaplan_meier_with_lifelines_intervals() -> None:
    from lifelines import KaplanMeierFitter

    from riskmodel.validation import calibration_curve

    frame = generate(300, seed=5)
    data = survival_data(frame, "os", landmark_months=3)
    rng = np.random.default_rng(1)
    survival = rng.uniform(0.2, 0.9, len(data.y))
    curve = calibration_curve(data.y, survival, 12, groups=4, n_boot=20)
    assert curve.groups["patients"].sum() == len(data.y)
    risk = 1 - survival
    order = np.argsort(risk, kind="stable")
    for (_, row), members in zip(curve.groups.iterrows(), np.array_split(order, 4), strict=True):
        kmf = KaplanMeierFitter().fit(data.y["time"][members], data.y["event"][members])
        at = kmf.survival_function_.index[kmf.survival_function_.index <= 12].max()
        ci = kmf.confidence_interval_survival_function_.loc[at]
        assert row["predicted"] == pytest.approx(risk[members].mean(), abs=1e-12)
        assert row["observed"] == pytest.approx(1 - kmf.survival_function_.loc[at].iloc[0], abs=1e-10)
        assert row["observed_low"] == pytest.approx(1 - ci.iloc[1], abs=1e-6)
        assert row["observed_high"] == pytest.approx(1 - ci.iloc[0], abs=1e-6)


def test_the_smoothed_band_holds_the_truth_for_a_correct_model_and_not_for_a_distorted_one(
    fitted_and_new: tuple[CoxPH, pd.DataFrame, np.ndarray],
) -> None:
    from riskmodel.validation import calibration_curve

    model, Z, y = fitted_and_new
    s12 = model.predict_survival(Z, [12]).to_numpy()[:, 0]
    good = calibration_curve(y, s12, 12, n_boot=50).smooth
    inside = (good["observed_low"] <= good["predicted"] + 0.01) & (good["predicted"] - 0.01 <= good["observed_high"])
    assert inside.mean() >= 0.9
    assert (good["observed_high"] - good["observed_low"]).max() < 0.1  # 5,000 patients: a narrow band
    bad = calibration_curve(y, s12**3, 12, n_boot=50).smooth
    assert ((bad["observed_high"] < bad["predicted"]).mean()) > 0.8  # risks inflated: observed below them


def test_calibration_in_the_large_is_near_zero_for_the_truth_and_signed_for_a_distortion(
    fitted_and_new: tuple[CoxPH, pd.DataFrame, np.ndarray],
) -> None:
    from lifelines import KaplanMeierFitter

    from riskmodel.validation import calibration_in_the_large

    model, Z, y = fitted_and_new
    s12 = model.predict_survival(Z, [12]).to_numpy()[:, 0]
    kmf = KaplanMeierFitter().fit(y["time"], y["event"])
    expected = (1 - float(kmf.predict(12.0))) - float(np.mean(1 - s12))
    assert calibration_in_the_large(y, s12, 12) == pytest.approx(expected, abs=1e-10)
    assert abs(calibration_in_the_large(y, s12, 12)) < 0.02
    assert calibration_in_the_large(y, s12**3, 12) < -0.1  # risks inflated: observed below predicted
