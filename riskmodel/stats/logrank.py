"""The k-group log-rank test (Mantel-Haenszel variance), checked against R's ``survdiff``."""

from __future__ import annotations

import numpy as np

__all__ = ["logrank_chi2"]


def logrank_chi2(time: np.ndarray, event: np.ndarray, codes: np.ndarray, k: int) -> float:
    """The k-group log-rank χ² (Mantel-Haenszel variance), as lifelines' multivariate test.

    ``codes`` gives each patient's group, 0 to k − 1.

    >>> t = np.array([1.0, 2.0, 3.0, 4.0])
    >>> round(logrank_chi2(t, np.array([True, True, True, True]), np.array([0, 0, 1, 1]), 2), 4)
    2.8824
    """
    event_times = np.unique(time[event])
    if event_times.size == 0 or k < 2:
        return 0.0
    onehot = np.eye(k)[codes]
    at_risk = (time[None, :] >= event_times[:, None]).astype(float) @ onehot  # J x k
    deaths = ((time[None, :] == event_times[:, None]) & event[None, :]).astype(float) @ onehot
    n, d = at_risk.sum(1), deaths.sum(1)
    expected = (at_risk * (d / n)[:, None]).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(n > 1, d * (n - d) / (n**2 * (n - 1)), 0.0)
    V = np.einsum("j,ja,jb->ab", w, at_risk, at_risk) * -1
    V[np.diag_indices(k)] += (w[:, None] * at_risk * n[:, None]).sum(0)
    diff = (deaths.sum(0) - expected)[:-1]
    try:
        return float(diff @ np.linalg.solve(V[:-1, :-1], diff))
    except np.linalg.LinAlgError:
        return 0.0
