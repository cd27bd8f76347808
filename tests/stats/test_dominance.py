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
