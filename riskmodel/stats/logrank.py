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
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    codes = np.asarray(codes)
    event_times = np.unique(time[event])
    if event_times.size == 0 or k < 2:
        return 0.0
    # per group, those still at risk at each event time (time ≥ t) and the events at it: counts read
    # off sorted times, O(n log n) (a patients × event-times matrix took minutes at 4,000 patients)
    at_risk = np.empty((event_times.size, k))
    deaths = np.empty((event_times.size, k))
    for g in range(k):
        mine = codes == g
        own = np.sort(time[mine])
        at_risk[:, g] = own.size - np.searchsorted(own, event_times, side="left")
        deaths[:, g] = np.bincount(np.searchsorted(event_times, time[mine & event]), minlength=event_times.size)
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
