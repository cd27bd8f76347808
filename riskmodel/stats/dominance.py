"""The compiled pair count behind Harrell's, Uno's and Wolbers' C on large test sets.

For each event i the concordance needs: how many patients are comparable with it (still at risk
after t_i: a later time, or censored at t_i), how many of those have a risk lower than r_i by more
than ``tied_tol``, and how many a risk within ``tied_tol`` of r_i. Walking the patients from the
longest time down, a Fenwick (binary indexed) tree over the sorted risks holds everyone already
passed, so each count is one O(log n) prefix sum: O(n log n) in all. This is the counting scheme
of Christensen (2005, "Fast algorithms for the calculation of Kendall's τ", Computational
Statistics 20:51-62) applied to the comparable pairs of Harrell's C (Harrell, Califf, Pryor, Lee
& Rosati 1982), with scikit-survival's pair and tie definitions (``riskmodel.metrics``).

Both orders (by time, by risk) come from a compiled radix sort, linear in n, and the walk reads
each event's tie bounds off the sorted risks as it goes: at a million patients the whole count is
one compiled call of about a third of the time numpy's two argsorts alone would take.

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

__all__ = ["DominanceCounts", "argsort_floats", "dominance_counts", "sort_with_flags"]

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


@_jit
def _radix_argsort(x: np.ndarray) -> np.ndarray:
    """A stable argsort of finite floats (:func:`_radix_sort` of their order keys)."""
    return _radix_sort(_order_keys(x), np.arange(x.size), np.empty(0))[1]


class DominanceCounts(NamedTuple):
    """The concordance's pair counts over all events, and its weighted sums."""

    comparable: int  # pairs (event i, patient j at risk after t_i: a later time, or censored at t_i)
    lower: int  # ... where r_j is below r_i by more than tied_tol
    tied: int  # ... where r_j is within tied_tol of r_i
    censored_tied: int  # pairs (event i, patient censored at exactly t_i)
    numerator: float  # Σ_i w_i (lower_i + tied_i / 2), w_i = 1 without weights
    denominator: float  # Σ_i w_i comparable_i


@_jit
def _tie_bounds(values: np.ndarray, p: int, tol: float) -> tuple[int, int]:
    """The positions [lo, hi) of the sorted risks within ``tol`` of ``values[p]``; lo = hi = p
    when no other risk lies within ``tol``."""
    v = values[p]
    if (p > 0 and v - values[p - 1] <= tol) or (p < values.size - 1 and values[p + 1] - v <= tol):
        return np.searchsorted(values, v - tol), np.searchsorted(values, v + tol, side="right")
    return p, p


@_jit
def _popcount(x: np.uint64) -> int:
    """Set bits of a 64-bit word (the SWAR count, Hacker's Delight 5-2)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@_jit
def _insert(bits: np.ndarray, tree: np.ndarray, p: int) -> None:
    """Mark position ``p``: its bit, and its word's count in the Fenwick tree over words."""
    word = p >> 6
    bits[word] |= np.uint64(1) << np.uint64(p & 63)
    j = word + 1
    while j < tree.size:
        tree[j] += 1
        j += j & -j


@_jit
def _below(bits: np.ndarray, tree: np.ndarray, p: int) -> int:
    """How many marked positions lie below ``p``: whole words from the tree, the rest by popcount."""
    word = p >> 6
    total = 0
    j = word
    while j > 0:
        total += tree[j]
        j -= j & -j
    rest = p & 63
    if rest:
        total += _popcount(bits[word] & ((np.uint64(1) << np.uint64(rest)) - np.uint64(1)))
    return total


@_jit
def _walk(
    t_o: np.ndarray, carried: np.ndarray, w_o: np.ndarray, values: np.ndarray, tol: float
) -> tuple[int, int, int, int, float, float]:
    """The walk over patients sorted by ascending time (``t_o``: their order keys; ``carried``: risk
    position × 2 + event), from the last tie group down. The patients
    passed are marked in a bitmap over risk positions, with a Fenwick tree over its 64-bit words:
    n/8 and n/16 bytes, so it stays in cache where a tree over every position would not. The
    weighted sums are compensated (Neumaier); without weights (``w_o`` empty) they are exact."""
    n = t_o.size
    words = (n >> 6) + 1
    bits = np.zeros(words, dtype=np.uint64)
    tree = np.zeros(words + 1, dtype=np.int32)
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
                _insert(bits, tree, carried[k] >> 1)
        inserted += cens
        for k in range(start, stop):
            if carried[k] & 1:
                lo, hi = _tie_bounds(values, carried[k] >> 1, tol)
                below = _below(bits, tree, lo)
                ties = _below(bits, tree, hi) - below if hi != lo else 0
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
                _insert(bits, tree, carried[k] >> 1)
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
def _counts(
    t: np.ndarray, e: np.ndarray, w: np.ndarray, r: np.ndarray, tol: float
) -> tuple[int, int, int, int, float, float]:
    """Sort by risk (radix), then by time carrying each patient's risk position and event (and
    weight), so the walk reads everything in order: one random access a patient in all."""
    n = r.size
    by_risk = _radix_argsort(r)
    values = np.empty(n)
    carried = np.empty(n, dtype=np.int64)  # risk position × 2 + event
    for k in range(n):
        j = by_risk[k]
        values[k] = r[j]
        carried[j] = 2 * k
    for j in range(n):
        carried[j] += e[j]
    t_keys, carried, w_o = _radix_sort(_order_keys(t), carried, w.copy())
    return _walk(t_keys, carried, w_o, values, tol)


def argsort_floats(x: np.ndarray) -> np.ndarray:
    """A stable argsort of finite floats (compiled radix sort; the same order as
    ``np.argsort(x, kind="stable")``, with −0.0 and +0.0 equal).

    >>> argsort_floats(np.array([2.5, -1.0, 2.5, -0.0, 0.0]))
    array([1, 3, 4, 0, 2])
    """
    return _radix_argsort(np.ascontiguousarray(x, dtype=np.float64))


@_jit
def _sorted_pairs(x: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys, carried, _ = _radix_sort(_order_keys(x), flags.astype(np.int64), np.empty(0))
    values = np.empty(x.size)
    top = np.uint64(1) << np.uint64(63)
    bits = values.view(np.uint64)
    for k in range(x.size):  # the order keys mapped back to the floats
        key = keys[k]
        bits[k] = key ^ top if key & top else ~key
    return values, carried.astype(np.bool_)


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
    )
    comparable, lower, tied, censored_tied, numerator, denominator = totals
    return DominanceCounts(int(comparable), int(lower), int(tied), int(censored_tied), numerator, denominator)
