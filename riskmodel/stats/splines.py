"""Restricted (natural) cubic splines: one basis for every smoother in riskmodel, and Harrell's
default knot placement."""

from __future__ import annotations

import numpy as np

__all__ = ["harrell_knots", "restricted_cubic_spline"]


def restricted_cubic_spline(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Harrell's restricted cubic spline basis: x and k − 2 nonlinear terms, linear beyond the knots.

    With an intercept it spans the natural cubic splines with these knots, the space of R's
    ``splines::ns`` with the same boundary and interior knots. The nonlinear terms are divided by
    (k_last − k_first)² so that they are on the scale of x (Harrell, *Regression Modeling
    Strategies*, 2nd ed., §2.4.5). Beyond the last knot every term is linear in x:

    >>> basis = restricted_cubic_spline(np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0]))
    >>> np.diff(basis[:, 1]).round(12).tolist()
    [1.5, 1.5]
    """
    k = np.asarray(knots, float)
    x = np.asarray(x, float)
    scale = (k[-1] - k[0]) ** 2
    cols = [x]
    for j in range(len(k) - 2):
        term = (
            np.maximum(x - k[j], 0) ** 3
            - np.maximum(x - k[-2], 0) ** 3 * (k[-1] - k[j]) / (k[-1] - k[-2])
            + np.maximum(x - k[-1], 0) ** 3 * (k[-2] - k[j]) / (k[-1] - k[-2])
        )
        cols.append(term / scale)
    return np.column_stack(cols)


def _outer_quantile(k: int) -> float:
    return 0.1 if k == 3 else 0.025 if k > 6 else 0.05


def harrell_knots(x: np.ndarray, k: int = 4) -> np.ndarray:
    """Harrell's default knots for a ``k``-knot restricted cubic spline, as ``Hmisc::rcspline.eval``.

    Quantiles of x at k equally spaced probabilities from ``outer`` to 1 − ``outer`` (0.10 for 3
    knots, 0.05 for 4 to 6, 0.025 for 7; Harrell, *Regression Modeling Strategies*, 2nd ed.,
    Table 2.3). With fewer than 100 values the outer knots move to the 5th smallest and 5th
    largest value. As Hmisc, when the smallest (largest) value holds at least 5 % of x and no
    interior value does, that end gets its own knot at the next distinct value and the quantiles
    are taken of the values strictly inside. With k + 2 or fewer distinct values the knots are the
    interior distinct values. Missing values (NaN) are ignored.

    >>> harrell_knots(np.arange(1.0, 21.0), 3).tolist()
    [5.0, 10.5, 16.0]
    """
    xx = np.asarray(x, float)
    xx = xx[~np.isnan(xx)]
    if xx.size < 6:
        raise ValueError(f"a spline's knots need at least 6 values, got {xx.size}")
    if not 3 <= k <= 7:
        raise ValueError(f"a restricted cubic spline takes 3 to 7 knots, got {k}")
    levels, counts = np.unique(xx, return_counts=True)
    if levels.size - 2 <= k:
        knots = levels[1:-1]
    else:
        outer = _outer_quantile(k)
        share = counts / xx.size
        first: list[float] = []
        last: list[float] = []
        n_inner = k
        if share[1:-1].max() < 0.05:
            if share[0] >= 0.05:
                first = [float(xx[xx > levels[0]].min())]
                xx, n_inner = xx[xx > first[0]], n_inner - 1
            if share[-1] >= 0.05:
                last = [float(xx[xx < levels[-1]].max())]
                xx, n_inner = xx[xx < last[0]], n_inner - 1
        if n_inner == 1:
            inner = np.array([np.median(xx)])
        else:  # Hmisc: two knots left between tied ends go at the median and the upper quantile
            inner = np.quantile(xx, np.linspace(0.5 if n_inner == 2 else outer, 1 - outer, n_inner))
        if xx.size < 100 and n_inner > 1:
            ordered = np.sort(xx)
            if not first:
                inner[0] = ordered[4]
            if not last:
                inner[-1] = ordered[-5]
        knots = np.concatenate([first, inner, last])
    knots = np.unique(knots)
    if knots.size < 3:
        raise ValueError(f"a spline needs at least 3 distinct knots; x has {levels.size} distinct values")
    return knots
