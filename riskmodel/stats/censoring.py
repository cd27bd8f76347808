"""The censoring distribution of a survival target, estimated once and read by every IPCW metric.

Uno's C, the cumulative/dynamic AUC and the integrated Brier score of one test set all weigh
patients by 1/G, with G the Kaplan-Meier estimate of the censoring distribution on the training
target (Uno et al. 2007, JASA 102:527; Graf et al. 1999, Stat Med 18:2529). :class:`CensoringKM`
is that estimate, fitted once (one sort of the training times) and looked up by each metric:

* the estimate and its lookups follow scikit-survival's ``CensoringDistributionEstimator``
  (``fit``, ``predict_proba``, ``predict_ipcw``) rule for rule, so every weight is the same
  number, and every refusal the same ValueError: at a time with both, events leave the risk set
  before censorings are counted; G is read at the last training time at or before t (an exact
  match within machine eps); a time beyond the training follow-up is refused while G > 0 there,
  and is 0 once G has reached 0; a training target without an event is refused;
* :func:`cumulative_dynamic_auc` is the cumulative/dynamic AUC at one time (Uno et al. 2007;
  Hung & Chiang 2010): cases had the event by t, weighted 1/G(T); controls are still followed
  after t. Risks within ``tied_tol`` of their neighbour in risk order form one tied group, which
  counts one half, as the ROC curve through the last point of each tied run gives it (the
  trapezoidal area of scikit-survival's ``cumulative_dynamic_auc``, written here as a sum over
  cases: the same number to rounding, about 1e-16).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CensoringKM", "cumulative_dynamic_auc"]


class CensoringKM:
    """G(t), the reverse Kaplan-Meier estimate of a training target's censoring distribution.

    ``t_sorted`` and ``e_sorted``: the training times in ascending order, each with its event flag
    (the order among tied times does not matter: only counts are used). Raises ValueError without
    an event, as scikit-survival's fit does.

    >>> g = CensoringKM(np.array([1.0, 2.0, 2.0, 3.0]), np.array([True, False, True, False]))
    >>> g.proba(np.array([0.5, 2.0, 2.5])).tolist()
    [1.0, 0.5, 0.5]
    >>> g.ipcw(np.array([True, False]), np.array([2.0, 3.0])).tolist()
    [2.0, 0.0]
    """

    def __init__(self, t_sorted: np.ndarray, e_sorted: np.ndarray) -> None:
        if not e_sorted.any():
            raise ValueError("all samples are censored")
        starts = np.flatnonzero(np.r_[True, t_sorted[1:] != t_sorted[:-1]])
        unique_time = t_sorted[starts]
        if e_sorted.all():
            self.grid, self.prob = unique_time, np.ones(unique_time.size)
            return
        ends = np.r_[starts[1:], t_sorted.size]
        total = ends - starts
        events_before = np.r_[0, np.cumsum(e_sorted)]
        n_events = events_before[ends] - events_before[starts]
        censored = total - n_events
        at_risk = t_sorted.size - np.r_[0, np.cumsum(total)][:-1] - n_events
        ratio = np.divide(censored, at_risk, out=np.zeros(unique_time.size), where=censored != 0)
        self.grid, self.prob = np.r_[-np.inf, unique_time], np.r_[1.0, np.cumprod(1.0 - ratio)]

    def proba(self, times: np.ndarray) -> np.ndarray:
        """G at each of ``times`` (``predict_proba``'s rule, refusals and the refusal of no time included)."""
        times = np.asarray(times, dtype=float)
        if times.size == 0:
            raise ValueError("Found array with 0 sample(s) (shape=(0,)) while a minimum of 1 is required.")
        beyond = times > self.grid[-1]
        if self.prob[-1] > 0 and beyond.any():
            raise ValueError(f"time must be smaller than largest observed time point: {self.grid[-1]}")
        out = np.zeros(times.size)  # beyond the last time, where G reached 0: 0
        inside = times[~beyond]
        idx = np.searchsorted(self.grid, inside)
        exact = np.absolute(self.grid[idx] - inside) < np.finfo(float).eps
        idx[~exact] -= 1
        out[~beyond] = self.prob[idx]
        return out

    def ipcw(self, event: Any, time: Any) -> np.ndarray:
        """1/G(t_i) for each event and 0 for each censored patient (``predict_ipcw``'s rule)."""
        is_event = np.asarray(event, dtype=bool)
        if not is_event.any():
            raise ValueError("all samples are censored")
        g_hat = self.proba(np.asarray(time, dtype=float)[is_event])
        if (g_hat == 0.0).any():
            raise ValueError("censoring survival function is zero at one or more time points")
        weights = np.zeros(is_event.size)
        weights[is_event] = 1.0 / g_hat
        return weights


def cumulative_dynamic_auc(
    censoring: CensoringKM, event: Any, time: Any, risk: Any, horizon: float, tied_tol: float = 1e-8
) -> float:
    """The cumulative/dynamic AUC of ``risk`` at ``horizon`` on one test set (see the module).

    AUC(t) = Σ_{cases i} w_i · (#controls in lower tied groups + ½ #controls in i's group) /
    (Σ w_i · #controls), with w_i = 1/G(T_i) from ``censoring`` (the training target's). Refuses,
    as scikit-survival does, a ``horizon`` outside [first, last) test time, a non-finite risk, a
    test set without an event, and any test event whose weight is undefined (beyond the training
    follow-up, or G = 0), even one after the horizon.
    """
    e = np.asarray(event, dtype=bool).ravel()
    t = np.asarray(time, dtype=float).ravel()
    r = np.asarray(risk, dtype=float).ravel()
    if not e.any():
        raise ValueError("all samples are censored")
    if not np.isfinite(r).all():
        raise ValueError("Input estimate contains NaN or infinity.")
    if r.size != t.size:
        raise ValueError(f"risk has {r.size} values for {t.size} patients")
    if horizon >= t.max() or horizon < t.min():
        raise ValueError(f"all times must be within follow-up time of test data: [{t.min()}; {t.max()}[")
    w = censoring.ipcw(e, t)
    case = (t <= horizon) & e
    control = t > horizon
    order = np.argsort(r, kind="stable")
    group = np.empty(r.size, dtype=np.int64)
    group[order] = np.r_[0, np.cumsum(np.absolute(np.diff(r[order])) > tied_tol)]
    per_group = np.bincount(group[control], minlength=int(group.max()) + 1).astype(float)
    lower = np.r_[0.0, np.cumsum(per_group)[:-1]]
    score = lower[group[case]] + 0.5 * per_group[group[case]]
    n_controls = float(control.sum())
    total = float(np.sum(w[case]))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(w[case] * score) / (total * n_controls))
