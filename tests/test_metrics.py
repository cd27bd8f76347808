"""The O(n log n) concordance and the vectorised Brier score against independent implementations.

References: scikit-survival's O(n²) ``concordance_index_censored`` / ``concordance_index_ipcw`` /
``integrated_brier_score`` (the definitions riskmodel adopts), lifelines' ``concordance_index``,
and a plain double loop over pairs written from the definition.
"""

from __future__ import annotations

import math
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines.utils import concordance_index as lifelines_c
from sksurv.metrics import concordance_index_censored, concordance_index_ipcw, integrated_brier_score
from sksurv.nonparametric import CensoringDistributionEstimator

import riskmodel.metrics as metrics_module
from riskmodel.metrics import concordance, harrell_c, integrated_brier, uno_c

# the two counts behind every C: numpy's merge count (small test sets) and the compiled walk (numba)
COUNTS = {"merge": 10**12, "compiled": 0}


def counted_by(kind: str):  # type: ignore[no-untyped-def]
    """Force the concordance through one of its two counts, whatever the sample size."""
    return patch.object(metrics_module, "COMPILED_FROM", COUNTS[kind])


def pairs_loop(event: np.ndarray, time: np.ndarray, risk: np.ndarray, tol: float = 1e-8) -> float:
    """Harrell's C straight from the definition, one pair at a time."""
    num = den = 0.0
    for i in range(len(time)):
        if not event[i]:
            continue
        for j in range(len(time)):
            if time[j] > time[i] or (time[j] == time[i] and not event[j]):
                den += 1
                if abs(risk[i] - risk[j]) <= tol:
                    num += 0.5
                elif risk[i] > risk[j]:
                    num += 1
    return num / den if den else math.nan


def target(event: np.ndarray, time: np.ndarray) -> np.ndarray:
    y = np.empty(len(time), dtype=[("event", "?"), ("time", "<f8")])
    y["event"], y["time"] = event, time
    return y


@st.composite
def tied_samples(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Small samples with heavy ties in time and in risk (the hard cases for a fast count)."""
    n = draw(st.integers(1, 25))
    time = np.array(draw(st.lists(st.integers(1, 6), min_size=n, max_size=n)), dtype=float)
    event = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    risk = np.array(draw(st.lists(st.integers(-2, 2), min_size=n, max_size=n)), dtype=float)
    if draw(st.booleans()):
        risk = risk * 0.3 + np.array(draw(st.lists(st.sampled_from([0.0, 5e-9, 2e-8]), min_size=n, max_size=n)))
    return event, time, risk


@pytest.mark.parametrize("kind", COUNTS)
@settings(max_examples=400, deadline=None)
@given(sample=tied_samples())
def test_concordance_equals_the_pairwise_definition_and_scikit_survival(
    kind: str, sample: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    event, time, risk = sample
    with counted_by(kind):
        got = concordance(event, time, risk)
    expected = pairs_loop(event, time, risk)
    if math.isnan(expected):
        assert math.isnan(got.cindex)
        return
    assert got.cindex == pytest.approx(expected, abs=1e-12)
    ref = concordance_index_censored(event, time, risk)
    assert got.cindex == pytest.approx(ref[0], abs=1e-12)
    assert got[1:] == tuple(int(v) for v in ref[1:])  # concordant, discordant, tied risk, tied time


@pytest.mark.parametrize("kind", COUNTS)
def test_concordance_on_20000_random_patients_equals_scikit_survival_to_1e_12(kind: str) -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    time = np.round(rng.exponential(10, n), 1)  # rounded, so many times are tied
    event = rng.random(n) < 0.7
    for risk in (rng.normal(size=n), np.round(rng.normal(size=n), 1)):
        ref = concordance_index_censored(event, time, risk)
        with counted_by(kind):
            got = concordance(event, time, risk)
        assert abs(got.cindex - ref[0]) <= 1e-12
        assert got[1:] == tuple(int(v) for v in ref[1:])


@settings(max_examples=200, deadline=None)
@given(sample=tied_samples(), seed=st.integers(0, 2**32 - 1))
def test_weighted_concordance_is_the_same_from_both_counts(
    sample: tuple[np.ndarray, np.ndarray, np.ndarray], seed: int
) -> None:
    """Uno's and Wolbers' C weigh each event: the compiled walk's compensated sums agree with numpy's
    to 1e-12, and its pair counts exactly."""
    event, time, risk = sample
    weights = np.random.default_rng(seed).exponential(1.0, time.size)
    with counted_by("merge"):
        merged = concordance(event, time, risk, weights)
    with counted_by("compiled"):
        compiled = concordance(event, time, risk, weights)
    assert compiled[1:] == merged[1:]
    if math.isnan(merged.cindex):
        assert math.isnan(compiled.cindex)
    else:
        assert compiled.cindex == pytest.approx(merged.cindex, abs=1e-12)


def test_the_default_count_switches_to_the_compiled_walk_for_large_test_sets() -> None:
    assert metrics_module.COMPILED_FROM == 20_000
    rng = np.random.default_rng(2)
    n = metrics_module.COMPILED_FROM
    time, event, risk = rng.exponential(10, n), rng.random(n) < 0.5, rng.normal(size=n)
    with patch("riskmodel.stats.dominance.dominance_counts", side_effect=RuntimeError("compiled")):
        with pytest.raises(RuntimeError, match="compiled"):
            concordance(event, time, risk)
        concordance(event[:-1], time[:-1], risk[:-1])  # one patient fewer: numpy's merge count


def test_harrell_c_matches_lifelines() -> None:
    rng = np.random.default_rng(3)
    time = rng.exponential(5, 500)
    event = rng.random(500) < 0.6
    risk = rng.normal(size=500) - 0.2 * time
    assert harrell_c(event, time, risk) == pytest.approx(lifelines_c(time, -risk, event), abs=1e-12)


def test_constant_risk_gives_one_half_and_perfect_order_gives_one() -> None:
    time = np.arange(1.0, 11.0)
    event = np.ones(10, dtype=bool)
    assert harrell_c(event, time, np.zeros(10)) == 0.5
    assert harrell_c(event, time, -time) == 1.0
    assert harrell_c(event, time, time) == 0.0


def test_no_comparable_pair_is_nan_not_an_error() -> None:
    assert math.isnan(harrell_c([False, False], [1.0, 2.0], [0.1, 0.2]))
    assert math.isnan(harrell_c([True], [1.0], [0.1]))


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        concordance([True], [1.0, 2.0], [0.1, 0.2])


@pytest.mark.parametrize("kind", COUNTS)
@pytest.mark.parametrize("tau", [None, 8.0, 15.0])
def test_uno_c_equals_scikit_survival(tau: float | None, kind: str) -> None:
    rng = np.random.default_rng(11)
    n = 3000
    time = np.round(rng.exponential(10, n), 1) + 0.1
    event = rng.random(n) < 0.6
    y = target(event, time)
    y_test = y[time < time.max()]
    risk = rng.normal(size=len(y_test)) - 0.05 * y_test["time"]
    ref = concordance_index_ipcw(y, y_test, risk, tau=tau)[0]
    with counted_by(kind):
        assert uno_c(y, y_test, risk, tau) == pytest.approx(ref, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(
    train=st.lists(st.tuples(st.booleans(), st.integers(1, 8)), min_size=1, max_size=30),
    test=st.lists(st.tuples(st.booleans(), st.integers(0, 10)), min_size=1, max_size=30),
    scale=st.sampled_from([1.0, 0.1]),
)
def test_censoring_weights_equal_scikit_survival_bit_for_bit_errors_included(
    train: list[tuple[bool, int]], test: list[tuple[bool, int]], scale: float
) -> None:
    """Ties of events and censorings, times beyond the follow-up, G reaching 0: the same numbers
    (exactly) or the same ValueError as ``CensoringDistributionEstimator().fit().predict_ipcw()``."""
    y_train = target(np.array([e for e, _ in train]), np.array([t for _, t in train]) * scale)
    event, time = np.array([e for e, _ in test]), np.array([t for _, t in test]) * scale

    def outcome(fn):  # type: ignore[no-untyped-def]
        try:
            return fn(), None
        except ValueError as err:
            return None, str(err)

    expected, their_error = outcome(
        lambda: CensoringDistributionEstimator().fit(y_train).predict_ipcw(target(event, time))
    )
    got, our_error = outcome(lambda: metrics_module.censoring_weights(y_train, event, time))
    assert our_error == their_error
    if expected is not None:
        assert np.array_equal(got, expected)


def test_uno_c_refuses_test_times_beyond_the_training_follow_up_like_scikit_survival() -> None:
    y_train = target(np.array([True, False, True]), np.array([1.0, 2.0, 3.0]))
    y_test = target(np.array([True, True]), np.array([1.0, 9.0]))
    with pytest.raises(ValueError, match="largest observed time"):
        concordance_index_ipcw(y_train, y_test, np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="largest observed time"):
        uno_c(y_train, y_test, np.array([1.0, 0.0]))


def test_integrated_brier_equals_scikit_survival() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    x = rng.normal(size=n)
    time = rng.exponential(np.exp(-0.5 * x) * 10)
    event = rng.random(n) < 0.7
    y = target(event, time)
    grid = np.linspace(np.quantile(time, 0.05), np.quantile(time, 0.8), 30)
    surv = np.exp(-np.outer(np.exp(0.5 * x), grid) / 10)
    ref = integrated_brier_score(y, y, surv, grid)
    assert integrated_brier(y, y, surv, grid) == pytest.approx(ref, abs=1e-12)


def test_integrated_brier_checks_the_shape() -> None:
    y = target(np.array([True, False]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        integrated_brier(y, y, np.ones((2, 3)), [0.5, 1.0])


@pytest.mark.parametrize("grid", [[2.0, 9.0], [2.0, 8.0]], ids=["beyond", "at-the-last"])
def test_integrated_brier_refuses_times_beyond_the_test_follow_up_like_scikit_survival(grid: list[float]) -> None:
    y_train = target(np.array([True, False, True, True, False]), np.array([1.0, 3.0, 4.0, 6.0, 12.0]))
    y_test = target(np.array([True, False, True]), np.array([1.0, 5.0, 8.0]))  # follow-up ends at 8
    surv = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="within follow-up time of test data"):
        integrated_brier_score(y_train, y_test, surv, grid)
    with pytest.raises(ValueError, match=r"before the end of the test follow-up \(8\)"):
        integrated_brier(y_train, y_test, surv, grid)


def test_integrated_brier_before_the_first_test_time_follows_graf_s_definition() -> None:
    """scikit-survival refuses times before the first test time; the score is defined there (every
    test patient is a control), and a whole-cohort evaluation window starts there. Checked against
    Graf et al.'s definition written out time by time."""
    y_train = target(np.array([True, False, True, True, False]), np.array([1.0, 3.0, 4.0, 6.0, 12.0]))
    y_test = target(np.array([True, False, True]), np.array([1.0, 5.0, 8.0]))
    grid = np.array([0.5, 2.0, 4.0, 6.0])
    surv = np.array([[0.9, 0.7, 0.5, 0.4], [0.95, 0.9, 0.8, 0.7], [0.97, 0.92, 0.85, 0.8]])
    assert integrated_brier(y_train, y_test, surv, grid) == pytest.approx(
        graf_brier(y_train, y_test, surv, grid), abs=1e-12
    )


def test_a_test_patient_followed_beyond_the_training_follow_up_is_a_control_not_a_refusal() -> None:
    """Before: 8 of 30 OS folds lost their IBS because one test patient outlived the training part."""
    y_train = target(np.array([True, False, True, True, False]), np.array([1.0, 3.0, 4.0, 6.0, 7.0]))
    y_test = target(np.array([True, False, True]), np.array([1.0, 5.0, 12.0]))  # 12: beyond the training 7
    grid = np.array([0.5, 2.0, 4.0])
    surv = np.array([[0.9, 0.7, 0.5], [0.95, 0.9, 0.8], [0.97, 0.92, 0.85]])
    assert integrated_brier(y_train, y_test, surv, grid) == pytest.approx(
        graf_brier(y_train, y_test, surv, grid), abs=1e-12
    )


def graf_brier(y_train: np.ndarray, y_test: np.ndarray, surv: np.ndarray, grid: np.ndarray) -> float:
    """Graf et al.'s IPCW Brier score written out time by time and patient by patient, integrated."""
    g = CensoringDistributionEstimator().fit(y_train)
    scores = []
    for k, t in enumerate(grid):
        total = 0.0
        for i, (event, time) in enumerate(zip(y_test["event"], y_test["time"], strict=True)):
            if time <= t and event:
                total += surv[i, k] ** 2 / g.predict_proba(np.array([time]))[0]
            elif time > t:
                total += (1 - surv[i, k]) ** 2 / g.predict_proba(np.array([t]))[0]
        scores.append(total / len(y_test))
    return float(np.trapezoid(scores, grid) / (grid[-1] - grid[0]))


def test_integrated_brier_refuses_a_time_where_the_censoring_survival_is_zero() -> None:
    # the last training patient is censored, so the censoring KM G(t) is 0 from 6 months on
    y_train = target(np.array([True, True, False, True, False]), np.array([1.0, 2.0, 3.0, 4.0, 6.0]))
    y_test = target(np.array([True, False, True, False]), np.array([1.0, 2.5, 7.0, 9.0]))
    grid = np.array([2.0, 4.0, 6.5])
    g = CensoringDistributionEstimator().fit(y_train).predict_proba(grid)
    assert g[-1] == 0.0  # scikit-survival's own estimate of G
    assert (g[:-1] > 0).all()
    # (scikit-survival's integrated_brier_score weights those controls by 1/inf = 0 and answers)
    with pytest.raises(ValueError, match=r"censoring survival G\(t\) is 0 at 6\.5"):
        integrated_brier(y_train, y_test, np.full((4, 3), 0.5), grid)
    assert integrated_brier(y_train, y_test, np.full((4, 2), 0.5), grid[:2]) == pytest.approx(
        integrated_brier_score(y_train, y_test, np.full((4, 2), 0.5), grid[:2]), abs=1e-12
    )
