"""The censoring distribution fitted once (:mod:`riskmodel.stats.censoring`) against scikit-survival.

Every IPCW metric of a test set now reads one :class:`CensoringKM`; each must still be
scikit-survival's number (and its refusal), on small samples with heavy ties of times (events and
censorings together), of risks (exact and within the 1e-8 tolerance), and with times beyond the
training follow-up: G to the bit, the td-AUC and the IBS to 1e-12.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sksurv.metrics import cumulative_dynamic_auc as sksurv_auc
from sksurv.nonparametric import CensoringDistributionEstimator

from riskmodel.metrics import EvaluationWindow, censoring_of, integrated_brier, survival_metrics, td_auc, uno_c
from riskmodel.stats import survival_array
from tests.test_metrics import graf_brier


def outcome(fn):  # type: ignore[no-untyped-def]
    """(value, None) or (None, "ValueError")."""
    try:
        return fn(), None
    except ValueError:
        return None, "ValueError"


@st.composite
def train_test(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A training and a test target with tied integer times, and the test set's tied risks."""
    n_train = draw(st.integers(1, 25))
    n_test = draw(st.integers(1, 25))
    y_train = survival_array(
        draw(st.lists(st.booleans(), min_size=n_train, max_size=n_train)),
        np.array(draw(st.lists(st.integers(1, 8), min_size=n_train, max_size=n_train)), dtype=float),
    )
    y_test = survival_array(
        draw(st.lists(st.booleans(), min_size=n_test, max_size=n_test)),
        np.array(draw(st.lists(st.integers(0, 10), min_size=n_test, max_size=n_test)), dtype=float),
    )
    risk = np.array(draw(st.lists(st.integers(-2, 2), min_size=n_test, max_size=n_test)), dtype=float)
    if draw(st.booleans()):  # risks apart by less than, and by more than, the tie tolerance
        nudge = draw(st.lists(st.sampled_from([0.0, 5e-9, 2e-8]), min_size=n_test, max_size=n_test))
        risk = risk * 0.3 + np.array(nudge)
    return y_train, y_test, risk


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")  # theirs, no case
@settings(max_examples=400, deadline=None)
@given(sample=train_test(), horizon=st.sampled_from([0.5, 1.0, 2.5, 4.0, 6.0, 9.0]))
def test_td_auc_is_scikit_survival_s_to_1e_12_refusals_included(
    sample: tuple[np.ndarray, np.ndarray, np.ndarray], horizon: float
) -> None:
    y_train, y_test, risk = sample
    theirs, their_error = outcome(lambda: float(sksurv_auc(y_train, y_test, risk, [horizon])[0][0]))
    ours, our_error = outcome(lambda: td_auc(y_train, y_test, risk, horizon))
    assert our_error == their_error
    if theirs is not None and math.isfinite(theirs):
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    elif theirs is not None:  # no case or no control: NaN both
        assert ours is not None
        assert not math.isfinite(ours)


@settings(max_examples=300, deadline=None)
@given(train=st.lists(st.tuples(st.booleans(), st.integers(1, 8)), min_size=1, max_size=30))
def test_g_is_scikit_survival_s_bit_for_bit(train: list[tuple[bool, int]]) -> None:
    y_train = survival_array([e for e, _ in train], [float(t) for _, t in train])
    times = np.arange(0.0, 10.0, 0.5)
    theirs, their_error = outcome(lambda: CensoringDistributionEstimator().fit(y_train).predict_proba(times))
    ours, our_error = outcome(lambda: censoring_of(y_train).proba(times))
    assert our_error == their_error
    if theirs is not None:
        assert np.array_equal(ours, theirs)


@settings(max_examples=200, deadline=None)
@given(sample=train_test(), seed=st.integers(0, 1000))
def test_integrated_brier_with_one_g_is_graf_s_with_scikit_survival_s_g(
    sample: tuple[np.ndarray, np.ndarray, np.ndarray], seed: int
) -> None:
    y_train, y_test, _ = sample
    t_max = float(min(y_test["time"].max(), y_train["time"].max()))
    if t_max <= 1.0 or not y_train["event"].any():
        return
    grid = np.linspace(0.5, t_max - 0.25, 4)
    surv = np.random.default_rng(seed).uniform(size=(len(y_test), grid.size))
    theirs, their_error = outcome(lambda: graf_brier(y_train, y_test, surv, grid))
    ours, our_error = outcome(lambda: integrated_brier(y_train, y_test, surv, grid, censoring=censoring_of(y_train)))
    if not (y_test["time"] <= grid[-1]).any():
        # every test patient a control throughout: scikit-survival's lookup of G at no time refused
        # this (ValueError), so the IBS was NaN; kept so that no metric changes
        assert our_error == "ValueError"
    elif their_error is None and math.isfinite(theirs):  # (G = 0 at a control: Graf's is 1/0, ours a refusal)
        assert our_error is None
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)


def test_survival_metrics_share_one_g_and_give_each_metric_s_own_number() -> None:
    """One G for Uno's C, every td-AUC and both IBS: each equal to the metric computed alone with
    scikit-survival's estimators (Uno's C: ``concordance_index_ipcw``), on tied, censored data."""
    from sksurv.metrics import concordance_index_ipcw

    rng = np.random.default_rng(3)
    n = 300
    x = rng.normal(size=n)
    time = np.ceil(rng.exponential(np.exp(-0.6 * x) * 12))
    event = rng.random(n) < 0.6
    y = survival_array(event, time)
    train, test = y[: n // 2], y[n // 2 :]
    test = test[test["time"] < train["time"].max()]
    risk = 0.6 * x[n // 2 :][: len(test)]
    risk[::7] = risk[1::7][: len(risk[::7])]  # tied risks
    window = EvaluationWindow.from_data(y, [6.0, 12.0, 24.0])

    def curve(times: np.ndarray) -> np.ndarray:
        return np.exp(-np.outer(np.exp(risk), np.asarray(times)) / 12)

    got = survival_metrics(train, test, risk, curve, window)
    assert got["uno_c"] == pytest.approx(concordance_index_ipcw(train, test, risk, tau=window.tau)[0], rel=1e-12)
    for h in window.horizons:
        ref = sksurv_auc(train, test, risk, [h])[0][0]
        assert got[f"td_auc_{h:g}"] == pytest.approx(ref, rel=1e-12)
    grid = np.asarray(window.grid)
    assert got["ibs"] == pytest.approx(graf_brier(train, test, curve(grid), grid), rel=1e-12)
    assert uno_c(train, test, risk, window.tau) == got["uno_c"]
