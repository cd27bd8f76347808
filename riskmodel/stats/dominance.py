"""The compiled pair count behind Harrell's, Uno's and Wolbers' C on large test sets.

For each event i the concordance needs: how many patients are comparable with it (still at risk
after t_i: a later time, or censored at t_i), how many of those have a risk lower than r_i by more
than ``tied_tol``, and how many a risk within ``tied_tol`` of r_i. Walking the patients from the
longest time down, a Fenwick (binary indexed) tree over the sorted risks holds everyone already
passed, so each count is one O(log n) prefix sum: O(n log n) in all. This is the counting scheme
of Christensen (2005, "Fast algorithms for the calculation of Kendall's τ", Computational
Statistics 20:51-62) applied to the comparable pairs of Harrell's C (Harrell, Califf, Pryor, Lee
& Rosati 1982), with scikit-survival's pair and tie definitions (``riskmodel.metrics``).

Both orders (by time, by risk) come from a compiled radix sort, linear in n, carrying 32-bit
positions; the pass over the sorted risks marks each risk that has another within ``tied_tol``
("crowded"), so the walk looks tie bounds up for those alone. The passed patients are a bitmap
over risk positions with the Fenwick tree over 512-bit leaves: n/8 and n/128 bytes, in cache.

Uno's C (Uno, Cai, Pencina, D'Agostino & Wei 2011, Stat Med 30:1105) weighs each event before τ
by 1/G(t_i)², G the Kaplan-Meier estimate of the censoring distribution on the training data.
:func:`ipcw_sums` builds G from the training times sorted once (not at all when they are the test
times: the walk's own sort serves) and looks each event's G up while passing the sorted times, all
in the one compiled call, with scikit-survival's lookup rule (``riskmodel.metrics.censoring_weights``).

numba compiles the walk on first use (cached on disk where numba finds a writable folder). This
module is the only importer of numba, and ``riskmodel.metrics`` imports it only for a large test
set: a small one (cross-validation folds, bootstrap resamples) keeps the numpy merge count there
and never pays for the compiler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

__all__ = [
    "NARROW_BELOW",
    "DominanceCounts",
    "IpcwSums",
    "argsort_floats",
    "dominance_counts",
    "ipcw_sums",
    "sort_with_flags",
]

_DIGIT_BITS = 11  # 2,048 buckets a pass: the counters and the write heads stay in the L1 cache
_PASSES = 6  # 6 × 11 ≥ 64 bits


F = TypeVar("F", bound=Callable[..., Any])


def _compile(fn: F) -> F:
    """``fn`` compiled, cached on disk where numba finds a writable cache folder (the package's
    ``__pycache__``, else the user's cache); where none is writable, compiled afresh in each process."""
    try:
        compiled: Any = numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        compiled = numba.njit(nogil=True)(fn)
    return compiled  # type: ignore[no-any-return]  # numba's dispatcher, called as fn is


_jit = _compile


@_jit
def _order_keys(x: np.ndarray) -> np.ndarray:
    """Unsigned keys that sort as the floats ``x`` do (sign bit flipped, negatives inverted; −0.0
    as +0.0), the standard map for radix-sorting IEEE 754 numbers."""
    n = x.size
    bits = x.view(np.uint64)
    top = np.uint64(1) << np.uint64(63)
    keys = np.empty(n, dtype=np.uint64)
    for i in range(n):
        k = np.uint64(0) if x[i] == 0.0 else bits[i]
        keys[i] = ~k if k & top else k | top
    return keys


@_jit
def _radix_sort(keys: np.ndarray, ints: np.ndarray, floats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``keys`` sorted, stably, with their payloads (``floats`` may be empty): least-significant-digit
    radix sort, 11 bits a pass, the passes whose digit is the same for every key skipped (Knuth,
    TAOCP vol. 3, §5.2.5). Linear in n: at a million keys a quarter to a half of numpy's argsort.
    The passes write back and forth between two buffers, so the arguments may be overwritten; the
    caller passes arrays of its own."""
    n = keys.size
    carry = floats.size > 0
    mask = np.uint64((1 << _DIGIT_BITS) - 1)
    counts = np.zeros((_PASSES, 1 << _DIGIT_BITS), dtype=np.int64)
    for i in range(n):
        k = keys[i]
        for d in range(_PASSES):
            counts[d, (k >> np.uint64(_DIGIT_BITS * d)) & mask] += 1
    keys_out = np.empty_like(keys)
    ints_out = np.empty_like(ints)
    floats_out = np.empty_like(floats)
    heads = np.empty(1 << _DIGIT_BITS, dtype=np.int64)
    for d in range(_PASSES):
        total = 0
        single = False
        for b in range(1 << _DIGIT_BITS):
            single = single or counts[d, b] == n
            heads[b] = total
            total += counts[d, b]
        if single:
            continue
        shift = np.uint64(_DIGIT_BITS * d)
        for i in range(n):
            k = keys[i]
            b = (k >> shift) & mask
            at = heads[b]
            heads[b] = at + 1
            keys_out[at] = k
            ints_out[at] = ints[i]
            if carry:
                floats_out[at] = floats[i]
        keys, keys_out = keys_out, keys
        ints, ints_out = ints_out, ints
        floats, floats_out = floats_out, floats
    return keys, ints, floats


class DominanceCounts(NamedTuple):
    """The concordance's pair counts over all events, and its weighted sums."""

    comparable: int  # pairs (event i, patient j at risk after t_i: a later time, or censored at t_i)
    lower: int  # ... where r_j is below r_i by more than tied_tol
    tied: int  # ... where r_j is within tied_tol of r_i
    censored_tied: int  # pairs (event i, patient censored at exactly t_i)
    numerator: float  # Σ_i w_i (lower_i + tied_i / 2), w_i = 1 without weights
    denominator: float  # Σ_i w_i comparable_i


_LEAF_BITS = 9  # a Fenwick leaf counts 512 risk positions (8 words): the tree, n/512 counts, stays in L1


def _ctpop_typing(typingctx: Any, x: Any) -> Any:
    """The set bits of a 64-bit word, as the CPU's popcount instruction (LLVM's ctpop)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return types.int64(types.uint64), codegen


_ctpop: Any = intrinsic(_ctpop_typing)  # called inside compiled code only


@_jit
def _insert(bits: np.ndarray, tree: np.ndarray, p: int) -> None:
    """Mark position ``p``: its bit, and its leaf's count in the Fenwick tree over 512-bit leaves."""
    bits[p >> 6] |= np.uint64(1) << np.uint64(p & 63)
    j = (p >> _LEAF_BITS) + 1
    while j < tree.size:
        tree[j] += 1
        j += j & -j


@_jit
def _below(bits: np.ndarray, tree: np.ndarray, p: int) -> int:
    """How many marked positions lie below ``p``: whole leaves from the tree, the rest of its leaf
    (at most 8 words, one or two cache lines) by popcount."""
    leaf = p >> _LEAF_BITS
    total = 0
    j = leaf
    while j > 0:
        total += tree[j]
        j -= j & -j
    word = p >> 6
    for w in range(leaf << (_LEAF_BITS - 6), word):
        total += _ctpop(bits[w])
    rest = p & 63
    if rest:
        total += _ctpop(bits[word] & ((np.uint64(1) << np.uint64(rest)) - np.uint64(1)))
    return total


@_jit
def _event_counts(bits: np.ndarray, tree: np.ndarray, values: np.ndarray, c: int, tol: float) -> tuple[int, int]:
    """An event's (lower, tied) among the marked: ``c`` is its risk position × 4 + crowded × 2 +
    event. Only a crowded risk (another within ``tol`` of it) needs the tolerance's bounds."""
    p = c >> 2
    if not c & 2:
        return _below(bits, tree, p), 0
    v = values[p]
    lo = np.searchsorted(values, v - tol)
    hi = np.searchsorted(values, v + tol, side="right")
    below = _below(bits, tree, lo)
    return below, _below(bits, tree, hi) - below


@_jit
def _walk(
    t_o: np.ndarray, carried: np.ndarray, w_o: np.ndarray, values: np.ndarray, tol: float, weighted_only: bool
) -> tuple[int, int, int, int, float, float]:
    """The walk over patients sorted by ascending time (``t_o``: their order keys; ``carried``: risk
    position × 4 + crowded × 2 + event), from the last tie group down. The patients passed are
    marked in a bitmap over risk positions (n/8 bytes), with a Fenwick tree over its 512-bit leaves
    (n/128 bytes), so both stay in cache where a tree over every position would not. The weighted
    sums are compensated (Neumaier); without weights (``w_o`` empty) they are exact. With
    ``weighted_only``, events of weight 0 are not counted (only the weighted sums are then right)."""
    n = t_o.size
    bits = np.zeros((n >> 6) + 1, dtype=np.uint64)
    tree = np.zeros((n >> _LEAF_BITS) + 2, dtype=np.int32)
    weighted = w_o.size > 0
    comparable = lower = tied = censored_tied = inserted = 0
    num = den = num_c = den_c = 0.0
    stop = n
    while stop > 0:
        start = stop - 1
        while start > 0 and t_o[start - 1] == t_o[stop - 1]:
            start -= 1
        cens = 0
        for k in range(start, stop):  # the censored at this time are at risk after its events
            if not carried[k] & 1:
                cens += 1
                _insert(bits, tree, carried[k] >> 2)
        inserted += cens
        for k in range(start, stop):
            if carried[k] & 1 and not (weighted_only and w_o[k] == 0.0):
                below, ties = _event_counts(bits, tree, values, carried[k], tol)
                comparable += inserted
                lower += below
                tied += ties
                censored_tied += cens
                if weighted:
                    num, num_c = _add(num, num_c, w_o[k] * (below + 0.5 * ties))
                    den, den_c = _add(den, den_c, w_o[k] * inserted)
        for k in range(start, stop):
            if carried[k] & 1:
                inserted += 1
                _insert(bits, tree, carried[k] >> 2)
        stop = start
    if not weighted:
        return comparable, lower, tied, censored_tied, lower + 0.5 * tied, float(comparable)
    return comparable, lower, tied, censored_tied, num + num_c, den + den_c


@_jit
def _add(total: float, compensation: float, x: float) -> tuple[float, float]:
    """Neumaier's compensated sum: ``total`` + ``x``, the lost low bits kept in ``compensation``."""
    t = total + x
    if abs(total) >= abs(x):
        compensation += (total - t) + x
    else:
        compensation += (x - t) + total
    return t, compensation


@_jit
def _by_risk(r: np.ndarray, e: np.ndarray, tol: float, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The risks sorted (radix), and each patient's risk position × 4 + crowded × 2 + event, where
    crowded means another risk lies within ``tol`` (read off the sorted risks' neighbours).
    ``index`` is 0, 1, ..., n − 1 in the integer type the sorts carry (:func:`_index`)."""
    n = r.size
    keys, by_risk, _ = _radix_sort(_order_keys(r), index, np.empty(0))
    values = _key_floats(keys)
    carried = np.empty_like(index)
    for k in range(n):
        crowded = (k > 0 and values[k] - values[k - 1] <= tol) or (k < n - 1 and values[k + 1] - values[k] <= tol)
        carried[by_risk[k]] = 4 * k + 2 * crowded
    for j in range(n):
        carried[j] += e[j]
    return values, carried


@_jit
def _counts(
    t: np.ndarray, e: np.ndarray, w: np.ndarray, r: np.ndarray, tol: float, index: np.ndarray
) -> tuple[int, int, int, int, float, float]:
    """Sort by risk (radix), then by time carrying each patient's risk position and flags (and
    weight), so the walk reads everything in order: one random access a patient in all."""
    values, carried = _by_risk(r, e, tol, index)
    t_keys, carried, w_o = _radix_sort(_order_keys(t), carried, w.copy())
    return _walk(t_keys, carried, w_o, values, tol, False)


@_jit
def _censoring_km(t_sorted: np.ndarray, e_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """The Kaplan-Meier estimate G of the censoring distribution from sorted times and their events:
    scikit-survival's ``CensoringDistributionEstimator`` (at a time with both, events leave the risk
    set before censorings count), step for step as :func:`riskmodel.metrics.censoring_weights`
    computes it in numpy (the same divisions, the product in the same order: the same bits).
    Returns the grid, G on it, and False when every time is censored (no G is then defined)."""
    n = t_sorted.size
    unique = np.empty(n)
    totals = np.empty(n, dtype=np.int64)
    events = np.empty(n, dtype=np.int64)
    m = i = all_events = 0
    while i < n:
        j = i
        ev = 0
        while j < n and t_sorted[j] == t_sorted[i]:
            ev += e_sorted[j]
            j += 1
        unique[m], totals[m], events[m] = t_sorted[i], j - i, ev
        all_events += ev
        m += 1
        i = j
    if all_events == n:  # nobody censored: G = 1
        return unique[:m].copy(), np.ones(m), n > 0
    grid = np.empty(m + 1)
    prob = np.empty(m + 1)
    grid[0], prob[0] = -np.inf, 1.0
    before = 0
    g = 1.0
    for k in range(m):
        censored = totals[k] - events[k]
        g *= 1.0 - (censored / (n - before - events[k]) if censored != 0 else 0.0)
        grid[k + 1], prob[k + 1] = unique[k], g
        before += totals[k]
    return grid, prob, all_events > 0


@_jit
def _ipcw_weights(
    t_sorted: np.ndarray, carried: np.ndarray, grid: np.ndarray, prob: np.ndarray, tau: float
) -> tuple[np.ndarray, int, int, bool, bool]:
    """Uno's weight 1/G(t_i)² of each event before ``tau`` (0 for the rest), G looked up as
    scikit-survival's ``predict_ipcw`` does (the last grid time at or before t, an exact match
    within machine eps), with a pointer moving up the grid as the sorted times do. Also returns
    how many patients and events lie before ``tau``, and whether such an event lies beyond the
    grid, or where G = 0."""
    n = t_sorted.size
    w = np.zeros(n)
    eps = np.finfo(np.float64).eps
    m = grid.size
    g = kept = kept_events = 0
    beyond = zero = False
    for k in range(n):
        t = t_sorted[k]
        if not t < tau:
            break
        kept += 1
        if not carried[k] & 1:
            continue
        kept_events += 1
        while g < m and grid[g] < t:
            g += 1
        if g == m:
            beyond = True
            continue
        at = g if abs(grid[g] - t) < eps else g - 1
        surv = prob[at if at >= 0 else m - 1]
        if surv == 0.0:
            zero = True
            continue
        w[k] = 1.0 / surv
        w[k] *= w[k]
    return w, kept, kept_events, beyond, zero


@_jit
def _ipcw_counts(
    t: np.ndarray,
    e: np.ndarray,
    r: np.ndarray,
    tol: float,
    tau: float,
    t_tr: np.ndarray,
    e_tr: np.ndarray,
    same: bool,
    index: np.ndarray,
) -> tuple[float, float, int, int, bool, bool, bool, float, float]:
    """Uno's weighted sums, the censoring KM and the weights built inside the sorts the count makes
    anyway (the training times sorted once, or not at all when they are the test times)."""
    values, carried = _by_risk(r, e, tol, index)
    t_keys, carried, _ = _radix_sort(_order_keys(t), carried, np.empty(0))
    t_sorted = _key_floats(t_keys)
    if same:
        grid, prob, any_event = _censoring_km(t_sorted, carried & 1)
    else:
        tr_keys, tr_events, _ = _radix_sort(_order_keys(t_tr), e_tr.astype(index.dtype), np.empty(0))
        grid, prob, any_event = _censoring_km(_key_floats(tr_keys), tr_events)
    last = (grid[-1], prob[-1]) if grid.size else (-np.inf, 0.0)
    if not any_event:  # refused, unless no test time lies before tau
        return np.nan, 0.0, int(np.searchsorted(t_sorted, tau)), 0, False, False, False, last[0], last[1]
    w_o, kept, kept_events, beyond, zero = _ipcw_weights(t_sorted, carried, grid, prob, tau)
    if kept_events == 0 or beyond or zero:
        return np.nan, 0.0, kept, kept_events, beyond, zero, True, last[0], last[1]
    totals = _walk(t_keys, carried, w_o, values, tol, True)
    return totals[4], totals[5], kept, kept_events, beyond, zero, True, last[0], last[1]


class IpcwSums(NamedTuple):
    """Uno's C's weighted sums, and what decides whether its censoring weights exist."""

    numerator: float  # Σ_i w_i (lower_i + tied_i / 2), w_i = 1/G(t_i)² for events before tau, else 0
    denominator: float  # Σ_i w_i comparable_i
    kept: int  # test patients before tau
    kept_events: int  # ... with an event
    beyond: bool  # an event before tau lies beyond the training follow-up
    zero: bool  # G = 0 at an event before tau (within the follow-up)
    any_training_event: bool
    last_time: float  # the censoring KM's last grid time
    last_survival: float  # G there


def ipcw_sums(
    event: np.ndarray,
    time: np.ndarray,
    risk: np.ndarray,
    train_event: np.ndarray,
    train_time: np.ndarray,
    tau: float,
    tied_tol: float,
) -> IpcwSums:
    """Uno's C's weighted sums in one compiled call (finite times and risks; ``tau`` may be inf);
    :func:`riskmodel.metrics.uno_c` turns them into the C or scikit-survival's refusals.

    By hand: G = 1 until the censoring at 2 (1 − 1/3), so the event at 1 weighs 1 (0 of its 3 pairs
    concordant) and the event at 3 weighs (3/2)² (its one pair concordant): C = 2.25 / 5.25.

    >>> e, t = np.array([True, False, True, False]), np.array([1.0, 2.0, 3.0, 4.0])
    >>> s = ipcw_sums(e, t, np.array([1.0, 2.0, 4.0, 3.0]), e, t, np.inf, 1e-8)
    >>> round(s.numerator / s.denominator, 12) == round(2.25 / 5.25, 12), s.kept, s.kept_events
    (True, 4, 2)
    """
    time = np.ascontiguousarray(time, dtype=np.float64)
    event = np.ascontiguousarray(event, dtype=np.bool_)
    train_time = np.ascontiguousarray(train_time, dtype=np.float64)
    train_event = np.ascontiguousarray(train_event, dtype=np.bool_)
    same = train_time.size == time.size and np.array_equal(train_time, time) and np.array_equal(train_event, event)
    r = np.ascontiguousarray(risk, dtype=np.float64)
    sums = _ipcw_counts(time, event, r, float(tied_tol), float(tau), train_time, train_event, same, _index(r.size))
    return IpcwSums(*sums)


NARROW_BELOW = 2**29
"""Below this many patients the sorts carry 32-bit positions (a position × 4 + 3 still fits; a
radix pass then moves 12 bytes a patient instead of 16); from it on, 64-bit."""


def _index(n: int) -> np.ndarray:
    """0, 1, ..., n − 1 in the integer type the sorts carry (:data:`NARROW_BELOW`)."""
    return np.arange(n, dtype=np.int32 if n < NARROW_BELOW else np.int64)


def argsort_floats(x: np.ndarray) -> np.ndarray:
    """A stable argsort of finite floats (compiled radix sort; the same order as
    ``np.argsort(x, kind="stable")``, with −0.0 and +0.0 equal).

    >>> argsort_floats(np.array([2.5, -1.0, 2.5, -0.0, 0.0]))
    array([1, 3, 4, 0, 2])
    """
    keys = _order_keys(np.ascontiguousarray(x, dtype=np.float64))
    return _radix_sort(keys, np.arange(keys.size), np.empty(0))[1]


@_jit
def _key_floats(keys: np.ndarray) -> np.ndarray:
    """The floats whose order keys are ``keys`` (:func:`_order_keys` inverted; −0.0 comes back as 0.0)."""
    values = np.empty(keys.size)
    top = np.uint64(1) << np.uint64(63)
    bits = values.view(np.uint64)
    for k in range(keys.size):
        key = keys[k]
        bits[k] = key ^ top if key & top else ~key
    return values


@_jit
def _sorted_pairs(x: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys, carried, _ = _radix_sort(_order_keys(x), flags.astype(np.int64), np.empty(0))
    return _key_floats(keys), carried.astype(np.bool_)


def sort_with_flags(x: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite floats sorted (−0.0 read as 0.0), each with its flag, in one compiled radix sort.

    >>> sort_with_flags(np.array([2.0, -1.0, 2.0, 0.5]), np.array([True, False, False, True]))
    (array([-1. ,  0.5,  2. ,  2. ]), array([False,  True,  True, False]))
    """
    return _sorted_pairs(np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(flags, dtype=np.bool_))


def dominance_counts(
    event: np.ndarray, time: np.ndarray, risk: np.ndarray, weights: np.ndarray | None, tied_tol: float
) -> DominanceCounts:
    """The concordance's pair counts and sums, compiled (numba); see the module's docstring.

    >>> event, time, risk = np.array([True, True, False]), np.array([1.0, 2.0, 2.0]), np.array([3.0, 2.0, 2.0])
    >>> dominance_counts(event, time, risk, None, 1e-8)
    DominanceCounts(comparable=3, lower=2, tied=1, censored_tied=1, numerator=2.5, denominator=3.0)
    """
    totals = _counts(
        np.ascontiguousarray(time, dtype=np.float64),
        np.ascontiguousarray(event, dtype=np.bool_),
        np.empty(0) if weights is None else np.ascontiguousarray(weights, dtype=np.float64),
        np.ascontiguousarray(risk, dtype=np.float64),
        float(tied_tol),
        _index(np.size(risk)),
    )
    comparable, lower, tied, censored_tied, numerator, denominator = totals
    return DominanceCounts(int(comparable), int(lower), int(tied), int(censored_tied), numerator, denominator)
