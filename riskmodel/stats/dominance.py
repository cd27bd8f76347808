"""The compiled pair count behind Harrell's, Uno's and Wolbers' C on large test sets.

For each event i the concordance needs: how many patients are comparable with it (still at risk
after t_i: a later time, or censored at t_i), how many of those have a risk lower than r_i by more
than ``tied_tol``, and how many a risk within ``tied_tol`` of r_i. Walking the patients from the
longest time down, a Fenwick (binary indexed) tree over the sorted risks holds everyone already
passed, so each count is one O(log n) prefix sum: O(n log n) in all. This is the counting scheme
of Christensen (2005, "Fast algorithms for the calculation of Kendall's τ", Computational
Statistics 20:51-62) applied to the comparable pairs of Harrell's C (Harrell, Califf, Pryor, Lee
& Rosati 1982), with scikit-survival's pair and tie definitions (``riskmodel.metrics``).

numba compiles the walk on first use (cached on disk where the package folder is writable). This
module is the only importer of numba, and ``riskmodel.metrics`` imports it only for a large test
set: a small one (cross-validation folds, bootstrap resamples) keeps the numpy merge count there
and never pays for the compiler.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

__all__ = ["DominanceCounts", "dominance_counts"]

_jit = numba.njit(cache=True, nogil=True)


class DominanceCounts(NamedTuple):
    """The concordance's pair counts over all events, and its weighted sums."""

    comparable: int  # pairs (event i, patient j at risk after t_i: a later time, or censored at t_i)
    lower: int  # ... where r_j is below r_i by more than tied_tol
    tied: int  # ... where r_j is within tied_tol of r_i
    censored_tied: int  # pairs (event i, patient censored at exactly t_i)
    numerator: float  # Σ_i w_i (lower_i + tied_i / 2), w_i = 1 without weights
    denominator: float  # Σ_i w_i comparable_i


@_jit
def _bounds(r_o: np.ndarray, by_risk: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each patient's position among the sorted risks, and the positions [lo, hi) of the risks
    within ``tol`` of its own; lo = hi = its position when no other risk lies within ``tol``."""
    n = r_o.size
    values = r_o[by_risk]
    pos = np.empty(n, dtype=np.int64)
    lo = np.empty(n, dtype=np.int64)
    hi = np.empty(n, dtype=np.int64)
    for k in range(n):
        p = by_risk[k]
        pos[p] = k
        crowded = (k > 0 and values[k] - values[k - 1] <= tol) or (k < n - 1 and values[k + 1] - values[k] <= tol)
        if crowded:
            lo[p] = np.searchsorted(values, values[k] - tol)
            hi[p] = np.searchsorted(values, values[k] + tol, side="right")
        else:
            lo[p] = k
            hi[p] = k
    return pos, lo, hi


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
    t_o: np.ndarray, e_o: np.ndarray, w_o: np.ndarray, pos: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[int, int, int, int, float, float]:
    """The walk over patients sorted by ascending time, from the last tie group down. The patients
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
            if not e_o[k]:
                cens += 1
                _insert(bits, tree, pos[k])
        inserted += cens
        for k in range(start, stop):
            if e_o[k]:
                below = _below(bits, tree, lo[k])
                ties = _below(bits, tree, hi[k]) - below if hi[k] != lo[k] else 0
                comparable += inserted
                lower += below
                tied += ties
                censored_tied += cens
                if weighted:
                    num, num_c = _add(num, num_c, w_o[k] * (below + 0.5 * ties))
                    den, den_c = _add(den, den_c, w_o[k] * inserted)
        for k in range(start, stop):
            if e_o[k]:
                inserted += 1
                _insert(bits, tree, pos[k])
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
    t_o: np.ndarray, e_o: np.ndarray, w_o: np.ndarray, r_o: np.ndarray, by_risk: np.ndarray, tol: float
) -> tuple[int, int, int, int, float, float]:
    pos, lo, hi = _bounds(r_o, by_risk, tol)
    return _walk(t_o, e_o, w_o, pos, lo, hi)


def dominance_counts(
    event: np.ndarray, time: np.ndarray, risk: np.ndarray, weights: np.ndarray | None, tied_tol: float
) -> DominanceCounts:
    """The concordance's pair counts and sums, compiled (numba); see the module's docstring.

    >>> event, time, risk = np.array([True, True, False]), np.array([1.0, 2.0, 2.0]), np.array([3.0, 2.0, 2.0])
    >>> dominance_counts(event, time, risk, None, 1e-8)
    DominanceCounts(comparable=3, lower=2, tied=1, censored_tied=1, numerator=2.5, denominator=3.0)
    """
    order = np.argsort(time)  # tied times in any order: the walk takes a tie group at once
    r_o = np.ascontiguousarray(risk[order], dtype=np.float64)
    w_o = np.empty(0) if weights is None else np.ascontiguousarray(weights[order], dtype=np.float64)
    totals = _counts(
        np.ascontiguousarray(time[order], dtype=np.float64),
        np.ascontiguousarray(event[order], dtype=np.bool_),
        w_o,
        r_o,
        np.argsort(r_o),
        float(tied_tol),
    )
    comparable, lower, tied, censored_tied, numerator, denominator = totals
    return DominanceCounts(int(comparable), int(lower), int(tied), int(censored_tied), numerator, denominator)
