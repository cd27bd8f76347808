"""Classical survival statistics: Kaplan-Meier, the k-group log-rank test, Aalen-Johansen.

Each is checked against lifelines (and the log-rank test against R's survival) in the tests.
Kaplan-Meier comes in two forms: :func:`kaplan_meier`, the curve at every distinct event time,
and :func:`km_summary`, just the study's landmark rates and median, written as one cumulative
product over samples because the cohort calibration calls it tens of thousands of times.
"""

from __future__ import annotations

import math

import numpy as np

from riskmodel.cohort.study import LANDMARKS

__all__ = ["aalen_johansen", "kaplan_meier", "km_summary", "logrank_chi2"]


def kaplan_meier(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier survival at each distinct event time (the right-continuous steps).

    >>> import numpy as np
    >>> t, s = kaplan_meier(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1, 1, 0, 1]))
    >>> t.tolist(), s.round(4).tolist()
    ([1.0, 2.0, 3.0], [0.75, 0.5, 0.0])
    """
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    event_times, deaths = np.unique(time[event], return_counts=True)
    at_risk = len(time) - np.searchsorted(np.sort(time), event_times, side="left")
    return event_times, np.cumprod(1 - deaths / at_risk)


def aalen_johansen(time: np.ndarray, event_type: np.ndarray, cause: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative incidence of ``cause`` with competing events, exact with tied times.

    CIF(t) = sum over event times t_j <= t of S(t_j-) · d_cause(t_j) / n(t_j), with S the all-cause
    Kaplan-Meier. (lifelines jitters tied times instead.) Two deaths of cause 1 at t=1 among 4,
    then a competing death at t=2: CIF(1) = 2/4; S(1) = 1/2; CIF(2) stays 1/2.

    >>> import numpy as np
    >>> t, c = aalen_johansen(np.array([1.0, 1.0, 2.0, 3.0]), np.array([1, 1, 2, 0]))
    >>> t.tolist(), c.tolist()
    ([1.0, 2.0], [0.5, 0.5])
    """
    time = np.asarray(time, float)
    kind = np.asarray(event_type, int)
    event_times = np.unique(time[kind > 0])
    at_risk = len(time) - np.searchsorted(np.sort(time), event_times, side="left")
    d_all = np.array([np.sum((time == t) & (kind > 0)) for t in event_times])
    d_cause = np.array([np.sum((time == t) & (kind == cause)) for t in event_times])
    surv_before = np.concatenate([[1.0], np.cumprod(1 - d_all / at_risk)[:-1]])
    return event_times, np.cumsum(surv_before * d_cause / at_risk)


def km_summary(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, float]:
    """Kaplan-Meier S at the study's landmarks (6, 12, 18, 24) and the median (first S ≤ 0.5)."""
    order = np.lexsort((~event, time))  # events before censorings at the same time
    t, e = time[order], event[order]
    surv = np.cumprod(np.where(e, 1 - 1 / (len(t) - np.arange(len(t))), 1.0))
    idx = np.searchsorted(t, LANDMARKS, side="right") - 1
    rates = np.where(idx >= 0, surv[np.clip(idx, 0, None)], 1.0)
    below = np.flatnonzero(surv <= 0.5 + 1e-12)
    return rates, float(t[below[0]]) if below.size else math.nan


def logrank_chi2(time: np.ndarray, event: np.ndarray, codes: np.ndarray, k: int) -> float:
    """The k-group log-rank χ² (Mantel-Haenszel variance), as lifelines' multivariate test."""
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
