"""Restricted (natural) cubic splines: one basis for every smoother in riskmodel."""

from __future__ import annotations

import numpy as np

__all__ = ["restricted_cubic_spline"]


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
