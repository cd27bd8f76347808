"""The compiled radix sorts and pair count behind the C on large test sets, against numpy's sorts
and scikit-survival's O(n²) ``concordance_index_censored`` / ``concordance_index_ipcw``.

Tolerances: orders and integer pair counts exactly; the C to 1e-12 (scikit-survival sums in a
different order); censoring weights bit for bit.
"""

from __future__ import annotations

import math
import subprocess
import sys
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sksurv.metrics import concordance_index_censored, concordance_index_ipcw
from sksurv.nonparametric import CensoringDistributionEstimator

import riskmodel.metrics as metrics_module
import riskmodel.stats.dominance as dominance_module
from riskmodel.metrics import concordance, uno_c
from riskmodel.stats.dominance import argsort_floats, sort_with_flags

# finite floats of every magnitude and sign, with −0.0, subnormals and repeated values
FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1.0, -1.0, 2.5, 1e308, -1e308]),
)


def target(event: np.ndarray, time: np.ndarray) -> np.ndarray:
    y = np.empty(len(time), dtype=[("event", "?"), ("time", "<f8")])
    y["event"], y["time"] = event, time
    return y


@settings(max_examples=300, deadline=None)
@given(values=st.lists(FLOATS, min_size=0, max_size=60))
def test_the_radix_argsort_is_numpy_s_stable_argsort(values: list[float]) -> None:
    x = np.array(values, dtype=float)
    assert np.array_equal(argsort_floats(x), np.argsort(x, kind="stable"))


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(FLOATS, st.booleans()), min_size=0, max_size=60))
def test_sort_with_flags_keeps_each_value_with_its_flag(pairs: list[tuple[float, bool]]) -> None:
    x = np.array([v for v, _ in pairs], dtype=float)
    flags = np.array([f for _, f in pairs], dtype=bool)
    values, carried = sort_with_flags(x, flags)
    order = np.argsort(x, kind="stable")
    assert np.array_equal(values, x[order])  # −0.0 == 0.0: the values, not their sign bits
    assert np.array_equal(carried, flags[order])


def test_the_radix_argsort_at_scale_equals_numpy_s_on_tied_and_signed_values() -> None:
    rng = np.random.default_rng(5)
    for x in (rng.normal(size=200_000), np.round(rng.normal(size=200_000), 2), rng.exponential(1, 200_000) * 1e-300):
        assert np.array_equal(argsort_floats(x), np.argsort(x, kind="stable"))


@st.composite
def signed_samples(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Risks of any sign and scale (the radix sort's key map), heavy ties in time and risk, weights."""
    n = draw(st.integers(2, 30))
    time = np.array(draw(st.lists(st.integers(1, 5), min_size=n, max_size=n)), dtype=float)
    event = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    scale = draw(st.sampled_from([1.0, 1e-9, 1e6, -3.0]))
    levels = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, -2.0, 3e-9])
    risk = np.array(draw(st.lists(levels, min_size=n, max_size=n))) * scale
    weights = np.array(draw(st.lists(st.floats(0.0, 10.0), min_size=n, max_size=n)))
    return event, time, risk, weights


@settings(max_examples=300, deadline=None)
@given(sample=signed_samples())
def test_the_compiled_count_equals_scikit_survival_and_the_merge_count_with_ties_and_weights(
    sample: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    event, time, risk, weights = sample
    kept = weights.copy()
    with patch.object(metrics_module, "COMPILED_FROM", 0):
        got = concordance(event, time, risk)
        weighted = concordance(event, time, risk, weights)
    assert np.array_equal(weights, kept)  # the sort's buffers are its own
    if not event.any() or math.isnan(got.cindex):
        assert math.isnan(got.cindex)
        return
    ref = concordance_index_censored(event, time, risk)
    assert got.cindex == pytest.approx(ref[0], abs=1e-12)
    assert got[1:] == tuple(int(v) for v in ref[1:])
    with patch.object(metrics_module, "COMPILED_FROM", 10**12):
        merged = concordance(event, time, risk, weights)
    assert weighted[1:] == merged[1:]
    if math.isnan(merged.cindex):
        assert math.isnan(weighted.cindex)
    else:
        assert weighted.cindex == pytest.approx(merged.cindex, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(
    train=st.lists(st.tuples(st.booleans(), st.integers(1, 6)), min_size=2, max_size=40),
    risk_levels=st.lists(st.integers(-2, 2), min_size=40, max_size=40),
    tau=st.sampled_from([None, 3.0, 5.0]),
)
def test_uno_c_through_the_compiled_sorts_equals_scikit_survival_with_heavy_ties(
    train: list[tuple[bool, int]], risk_levels: list[int], tau: float | None
) -> None:
    """Uno's C with the training times sorted by the radix sort and the walk compiled, against
    ``concordance_index_ipcw`` (to 1e-12, or the same ValueError)."""
    y = target(np.array([e for e, _ in train]), np.array([t for _, t in train], dtype=float))
    risk = np.array(risk_levels[: len(y)], dtype=float) * 0.7

    def outcome(fn):  # type: ignore[no-untyped-def]
        try:
            return fn(), None
        except (ValueError, ZeroDivisionError) as err:
            return None, type(err)

    expected, their_error = outcome(lambda: concordance_index_ipcw(y, y, risk, tau=tau)[0])
    with patch.object(metrics_module, "COMPILED_FROM", 0):
        got, our_error = outcome(lambda: uno_c(y, y, risk, tau))
    if their_error is not None or expected is None or math.isnan(expected):
        return  # scikit-survival's own refusals are held by test_metrics.py
    assert our_error is None
    assert got == pytest.approx(expected, abs=1e-12)


def sksurv_or_error(fn):  # type: ignore[no-untyped-def]
    """The value, or the error's type and message (scikit-survival's refusals are part of the contract)."""
    try:
        return fn()
    except ValueError as err:
        return type(err).__name__, str(err)


@st.composite
def uno_samples(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, float | None]:
    """A training and a different test set: ties in time and risk, all-censored sets, test times
    beyond the training follow-up, G reaching 0, and a tau before every test time."""
    train = draw(st.lists(st.tuples(st.booleans(), st.integers(1, 8)), min_size=1, max_size=30))
    test = draw(st.lists(st.tuples(st.booleans(), st.integers(1, 10)), min_size=1, max_size=30))
    y_train = target(np.array([e for e, _ in train]), np.array([t for _, t in train], dtype=float))
    y_test = target(np.array([e for e, _ in test]), np.array([t for _, t in test], dtype=float))
    levels = st.sampled_from([-1.0, 0.0, 0.5, 0.5 + 5e-9, 2.0])  # exact ties and ties within tied_tol
    risk = np.array(draw(st.lists(levels, min_size=len(test), max_size=len(test))))
    tau = draw(st.sampled_from([None, 0.5, 3.0, 5.5, 9.0]))
    return y_train, y_test, risk, tau


@settings(max_examples=400, deadline=None)
@given(sample=uno_samples())
def test_the_compiled_uno_c_equals_scikit_survival_or_refuses_with_its_message(
    sample: tuple[np.ndarray, np.ndarray, np.ndarray, float | None],
) -> None:
    """Uno's C with the censoring KM and weights inside the compiled count, on a test set that is
    not the training set: ``concordance_index_ipcw``'s value to 1e-12, or its ValueError word for
    word. Two documented departures: NaN where no pair is comparable (scikit-survival raises
    NoComparablePairException) or no test time lies before tau (it fails on an empty set)."""
    y_train, y_test, risk, tau = sample
    with patch.object(metrics_module, "COMPILED_FROM", 0):
        got = sksurv_or_error(lambda: uno_c(y_train, y_test, risk, tau))
    expected = sksurv_or_error(lambda: concordance_index_ipcw(y_train, y_test, risk, tau=tau)[0])
    nothing_before_tau = tau is not None and not (y_test["time"] < tau).any()
    if nothing_before_tau or (isinstance(expected, tuple) and expected[0] == "NoComparablePairException"):
        expected = math.nan
    if isinstance(expected, tuple):
        assert got == expected
    elif math.isnan(expected):
        assert isinstance(got, float)
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, abs=1e-12)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(600, 3000), seed=st.integers(0, 2**32 - 1), decimals=st.sampled_from([0, 1, 3]))
def test_the_compiled_counts_across_many_fenwick_leaves_equal_scikit_survival(n: int, seed: int, decimals: int) -> None:
    """Thousands of patients: the Fenwick tree over 512-position leaves, the popcount inside a leaf,
    crowded and lone risks. Harrell's counts exactly (C to 1e-12), Uno's C to 1e-12, the training
    set both the test set itself (its sort reused) and a different one."""
    rng = np.random.default_rng(seed)
    time = np.round(rng.exponential(5, n), 1) + 0.1
    event = rng.random(n) < 0.6
    risk = np.round(rng.normal(size=n), decimals) + np.where(rng.random(n) < 0.1, 5e-9, 0.0)
    y = target(event, time)
    test = y[time < np.quantile(time, 0.9)]
    with patch.object(metrics_module, "COMPILED_FROM", 0):
        got = concordance(event, time, risk)
        uno_same = uno_c(y, y, risk, 4.0)
        uno_other = uno_c(y, test, risk[: len(test)], 4.0)
    ref = concordance_index_censored(event, time, risk)
    assert got.cindex == pytest.approx(ref[0], abs=1e-12)
    assert got[1:] == tuple(int(v) for v in ref[1:])
    assert uno_same == pytest.approx(concordance_index_ipcw(y, y, risk, tau=4.0)[0], abs=1e-12)
    assert uno_other == pytest.approx(concordance_index_ipcw(y, test, risk[: len(test)], tau=4.0)[0], abs=1e-12)


def test_the_compiled_uno_c_looks_g_up_within_machine_eps_like_scikit_survival() -> None:
    """An event time a hair (< eps) below a training time where G drops takes G there, as
    scikit-survival's ``predict_proba`` does; exact equality alone would take the step before."""
    y_train = target(np.array([True, False, True, False, True]), np.array([1.0, 2.0, 3.0, 4.0, 5.0]) * 1e-3)
    time = np.array([1e-3, 2e-3 - 5e-18, 3e-3, 4.5e-3])
    assert time[1] != 2e-3
    y_test = target(np.array([True, True, True, False]), time)
    risk = np.array([0.1, 0.9, 0.5, 0.3])
    with patch.object(metrics_module, "COMPILED_FROM", 0):
        got = uno_c(y_train, y_test, risk)
    assert got == pytest.approx(concordance_index_ipcw(y_train, y_test, risk)[0], abs=1e-12)


@pytest.mark.slow  # compiles the kernels a second time, for 64-bit positions
def test_the_64_bit_positions_of_very_large_sets_count_the_same() -> None:
    """From ``NARROW_BELOW`` patients (2²⁹) the sorts carry 64-bit positions; forced here on a
    small set with ties, the counts and C equal scikit-survival's (C to 1e-12)."""
    rng = np.random.default_rng(3)
    n = 2000
    time, event = np.round(rng.exponential(5, n)) + 1.0, rng.random(n) < 0.6
    risk = np.round(rng.normal(size=n), 1)
    y = target(event, time)
    with patch.object(metrics_module, "COMPILED_FROM", 0), patch.object(dominance_module, "NARROW_BELOW", 0):
        got = concordance(event, time, risk)
        uno = uno_c(y, y[:1500], risk[:1500], 6.0)
    ref = concordance_index_censored(event, time, risk)
    assert got.cindex == pytest.approx(ref[0], abs=1e-12)
    assert got[1:] == tuple(int(v) for v in ref[1:])
    assert uno == pytest.approx(concordance_index_ipcw(y, y[:1500], risk[:1500], tau=6.0)[0], abs=1e-12)


def test_censoring_weights_from_the_compiled_sort_equal_scikit_survival_bit_for_bit() -> None:
    rng = np.random.default_rng(9)
    n = 30_000  # above COMPILED_FROM: the training times go through the radix sort
    time = np.round(rng.exponential(10, n), 1) + 0.1
    y = target(rng.random(n) < 0.6, time)
    test = y[time < np.quantile(time, 0.9)]
    expected = CensoringDistributionEstimator().fit(y).predict_ipcw(test)
    got = metrics_module.censoring_weights(y, test["event"], test["time"])
    assert np.array_equal(got[test["event"]], expected[test["event"]])


@pytest.mark.slow
def test_an_unwritable_cache_folder_falls_back_to_compiling_in_memory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With no folder numba may cache in, the module still imports and counts (compiled afresh)."""
    code = (
        "import numba.core.caching as c\n"
        "def refuse(*a, **k): raise RuntimeError('cannot cache function: no locator available')\n"
        "c.FunctionCache.__init__ = refuse\n"
        "import numpy as np\n"
        "from riskmodel.stats.dominance import dominance_counts\n"
        "print(dominance_counts(np.array([True, False]), np.array([1.0, 2.0]), np.array([2.0, 1.0]), None, 1e-8))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "comparable=1, lower=1" in done.stdout
