"""Survival metrics: Harrell's and Uno's C in O(n log n), a vectorised integrated Brier score,
time-dependent AUC, and :func:`survival_metrics`, all of them for one test set at once.

scikit-survival's ``concordance_index_censored`` and ``concordance_index_ipcw`` build one boolean
mask of length n per event, so they take O(n²) time and memory (a million patients would need
terabytes). Here the same quantities come from a dominance count: for each event i, how many
patients still at risk after t_i have a lower (or tied) predicted risk. The count runs bottom-up over
the time order, merging sorted blocks as a merge sort does, with every block of one level
answered by a single vectorised ``searchsorted``: O(n log n) work in numpy, no Python loop over
patients. From ``COMPILED_FROM`` patients on, the same counts come from a compiled walk
(``riskmodel.stats.dominance``, numba: radix sorts and a Fenwick walk), several times faster at a
million patients.

The definitions are scikit-survival's, so the results agree with it exactly (tested to 1e-12):

* a pair (i, j) is comparable when i had an event and t_j > t_i, or t_j = t_i and j was censored;
* it is concordant when risk_i > risk_j, and a risk tie (|risk_i − risk_j| ≤ ``tied_tol``)
  counts one half;
* Uno's C weights each comparable pair by 1/G(t_i)², with G the Kaplan-Meier estimate of the
  censoring distribution on the training data, and drops events at or after ``tau``.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any, NamedTuple

import numpy as np

from riskmodel.errors import UserInputError
from riskmodel.stats import check_survival_target, kaplan_meier, step_values
from riskmodel.stats.censoring import CensoringKM, cumulative_dynamic_auc

__all__ = [
    "IBS_POINTS",
    "MIN_AT_RISK",
    "Concordance",
    "EvaluationWindow",
    "as_window",
    "censoring_of",
    "censoring_weights",
    "concordance",
    "defined_or_nan",
    "harrell_c",
    "integrated_brier",
    "metric_names",
    "survival_metrics",
    "td_auc",
    "uno_c",
]


COMPILED_FROM = 20_000
"""Test sets of at least this many patients take the compiled count (numba); smaller ones the numpy
merge count, which needs no compiler (cross-validation folds, bootstrap resamples)."""


class Concordance(NamedTuple):
    """A concordance index with its pair counts (unweighted), as scikit-survival reports them."""

    cindex: float
    concordant: int
    discordant: int
    tied_risk: int
    tied_time: int


def _prefix_counts(rank: np.ndarray, ends: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each query q: #{p < ends[q] : rank[p] < thresholds[q]}.

    The prefix [0, e) is the union of one dyadic block per set bit of e. Level by level (block
    size s = 1, 2, 4, ...), ``keys`` holds every point as ``block·M + rank`` sorted, so the count
    inside a block is the difference of two binary searches. Sorting for the next level merges
    neighbouring sorted runs, which a stable sort does in near-linear time.
    """
    n = rank.size
    out = np.zeros(ends.size, dtype=np.int64)
    if n == 0 or ends.size == 0:
        return out
    big = np.int64(n + 1)
    rank = rank.astype(np.int64, copy=False)
    ends = ends.astype(np.int64, copy=False)
    thresholds = thresholds.astype(np.int64, copy=False)
    order = np.arange(n, dtype=np.int64)
    keys = order * big + rank  # level s = 1: every block holds one point
    top = int(ends.max())
    s = 1
    while True:
        has = (ends & s) != 0
        if has.any():
            # block b covers keys[b·s : (b+1)·s], so only the upper bound needs a search
            block = 2 * (ends[has] // (2 * s))
            out[has] += np.searchsorted(keys, block * big + thresholds[has]) - block * s
        s *= 2
        if s > top:
            return out
        keys = (order // s) * big + rank[order]
        merge = np.argsort(keys, kind="stable")
        order = order[merge]
        keys = keys[merge]


def concordance(event: Any, time: Any, risk: Any, weights: Any = None, *, tied_tol: float = 1e-8) -> Concordance:
    """Concordance index of ``risk`` (higher = earlier event), optionally weighted per event.

    NaN when no pair is comparable (every patient censored, or every event at the last time).

    >>> concordance([True, True, False], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]).cindex
    1.0
    >>> concordance([True, False], [1.0, 1.0], [1.0, 1.0])  # tied risk: one half
    Concordance(cindex=0.5, concordant=0, discordant=0, tied_risk=1, tied_time=1)
    """
    e = np.asarray(event, dtype=bool).ravel()
    t = np.asarray(time, dtype=float).ravel()
    r = np.asarray(risk, dtype=float).ravel()
    if not (e.size == t.size == r.size):
        raise ValueError(f"event, time and risk differ in length: {e.size}, {t.size}, {r.size}")
    if not (np.isfinite(t).all() and np.isfinite(r).all()):
        raise ValueError("time and risk must be finite")
    w = None if weights is None else np.asarray(weights, dtype=float).ravel()
    if e.size >= COMPILED_FROM and _numba_installed():
        from riskmodel.stats.dominance import dominance_counts  # imports numba: only for large test sets

        c = dominance_counts(e, t, r, w, tied_tol)
        cindex = c.numerator / c.denominator if c.denominator > 0 else float("nan")
        return Concordance(cindex, c.lower, c.comparable - c.lower - c.tied, c.tied, c.censored_tied)
    comparable, lower, ties, tied_time, event_index = _merge_counts(e, t, r, tied_tol)
    w_ev = np.ones(event_index.size) if w is None else w[event_index]
    denominator = float(np.sum(w_ev * comparable))
    numerator = float(np.sum(w_ev * (lower + 0.5 * ties)))
    cindex = numerator / denominator if denominator > 0 else float("nan")
    return Concordance(
        cindex,
        int(lower.sum()),
        int(comparable.sum() - lower.sum() - ties.sum()),
        int(ties.sum()),
        tied_time,
    )


@cache
def _numba_installed() -> bool:
    return importlib.util.find_spec("numba") is not None


def _risk_bounds(r: np.ndarray, tied_tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each patient's risk rank (the number of strictly lower risks, so equal risks share one) and
    the rank bounds of the risks tied with it: ``lo`` (first risk within ``tied_tol`` below) and
    ``hi`` (past the last within ``tied_tol`` above); ``hi == lo`` when nothing lies within tol.

    A pair is tied when |r_i − r_j| ≤ tol. Only patients with another risk within tol of their own
    need the exact tolerance bounds; for the rest, "lower by more than tol" is just "lower".
    """
    n = r.size
    by_risk = np.argsort(r)
    values = r[by_risk]
    first = np.ones(n, dtype=bool)
    first[1:] = values[1:] != values[:-1]
    rank = np.empty(n, dtype=np.int64)
    rank[by_risk] = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    gap = np.diff(values) <= tied_tol
    crowded = np.zeros(n, dtype=bool)
    crowded[by_risk] = np.r_[False, gap] | np.r_[gap, False]
    near = np.flatnonzero(crowded)
    lo = rank.copy()
    hi = rank.copy()
    lo[near] = np.searchsorted(values, r[near] - tied_tol)
    hi[near] = np.searchsorted(values, r[near] + tied_tol, side="right")
    return rank, lo, hi


def _merge_counts(
    e: np.ndarray, t: np.ndarray, r: np.ndarray, tied_tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """The same counts from the numpy merge count, per event in time order, with the events' indices."""
    # position order: time descending, and at a tied time the censored first, so the prefix before
    # an event's tie group is exactly its comparable set
    order = np.lexsort((e, -t))
    t_o, e_o = t[order], e[order]
    n = t.size
    starts = np.ones(n, dtype=bool)
    starts[1:] = (t_o[1:] != t_o[:-1]) | (e_o[1:] != e_o[:-1])
    group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    events = np.flatnonzero(e_o)
    ends = group_start[events]
    rank, lo, hi = (a[order] for a in _risk_bounds(r, tied_tol))
    near = np.flatnonzero(hi[events] != lo[events])
    counts = _prefix_counts(rank, np.r_[ends, ends[near]], np.r_[lo[events], hi[events][near]])
    lower = counts[: events.size]
    ties = np.zeros_like(lower)
    ties[near] = counts[events.size :] - lower[near]
    tied_time = int(np.sum(_censored_in_tie(t_o, e_o, events)))
    return ends, lower, ties, tied_time, order[events]


def _censored_in_tie(t_o: np.ndarray, e_o: np.ndarray, events: np.ndarray) -> np.ndarray:
    """For each event, the number of censored patients at exactly its time."""
    censored_times = np.sort(t_o[~e_o])
    te = t_o[events]
    upper = np.searchsorted(censored_times, te, side="right")
    return np.asarray(upper - np.searchsorted(censored_times, te), dtype=np.int64)


def harrell_c(event: Any, time: Any, risk: Any) -> float:
    """Harrell's C (risk ties count one half), equal to scikit-survival's to rounding.

    >>> harrell_c([True, True, True], [1.0, 2.0, 3.0], [0.9, 0.1, 0.5])
    0.6666666666666666
    """
    return concordance(event, time, risk).cindex


def uno_c(
    y_train: np.ndarray,
    y_test: np.ndarray,
    risk: Any,
    tau: float | None = None,
    *,
    censoring: CensoringKM | None = None,
) -> float:
    """Uno's IPCW C, truncated at ``tau``, equal to scikit-survival's ``concordance_index_ipcw``.

    The censoring weights are scikit-survival's (``CensoringDistributionEstimator``: the reverse
    Kaplan-Meier on the training data, with its tie rule and its lookups), by :func:`censoring_weights`
    or, from ``COMPILED_FROM`` test patients, inside the compiled count, so all agree on every edge
    case, including the error when a test time lies beyond the training follow-up. ``censoring``:
    G of ``y_train`` (:func:`censoring_of`) when the caller has it already.
    """
    event = np.asarray(y_test["event"], dtype=bool)
    time = np.asarray(y_test["time"], dtype=float)
    if time.size >= COMPILED_FROM and _numba_installed():
        compiled = _compiled_uno(y_train, event, time, risk, tau)
        if compiled is not None:
            return compiled
    keep = np.ones(time.size, dtype=bool) if tau is None else time < tau
    weights = np.zeros(time.size)
    if keep.any():
        weights[keep] = (censoring or censoring_of(y_train)).ipcw(event[keep], time[keep])
    return concordance(event, time, risk, np.square(weights)).cindex


def _compiled_uno(
    y_train: np.ndarray, event: np.ndarray, time: np.ndarray, risk: Any, tau: float | None
) -> float | None:
    """Uno's C in one compiled call (:func:`riskmodel.stats.dominance.ipcw_sums`), refusing as the
    numpy route does; None (take that route) for a non-finite or mismatched input."""
    names: Any = y_train.dtype.names
    e_tr = np.asarray(y_train[names[0]]).astype(bool)
    t_tr = np.asarray(y_train[names[1]]).astype(float)
    r = np.asarray(risk, dtype=float).ravel()
    if not (r.size == time.size and np.isfinite(time).all() and np.isfinite(r).all() and np.isfinite(t_tr).all()):
        return None
    from riskmodel.stats.dominance import ipcw_sums  # imports numba: only for large test sets

    s = ipcw_sums(event, time, r, e_tr, t_tr, math.inf if tau is None else float(tau), 1e-8)
    if s.kept == 0:
        return float("nan")
    if not s.any_training_event or s.kept_events == 0:
        raise ValueError("all samples are censored")
    if s.beyond and s.last_survival > 0:
        raise ValueError(f"time must be smaller than largest observed time point: {s.last_time}")
    if s.beyond or s.zero:
        raise ValueError("censoring survival function is zero at one or more time points")
    return s.numerator / s.denominator if s.denominator > 0 else float("nan")


def censoring_weights(y_train: np.ndarray, event: np.ndarray, time: np.ndarray) -> np.ndarray:
    """1/G(t_i) for each event and 0 for each censored patient, with G the Kaplan-Meier estimate of
    the censoring distribution on ``y_train`` (Uno et al. 2011, Stat Med 30:1105).

    The same numbers as scikit-survival's ``CensoringDistributionEstimator().fit(y_train)
    .predict_ipcw``: at a time with both, events leave the risk set before censorings are counted;
    G is looked up at the last training time at or before t (an exact match within machine eps);
    a time beyond the training follow-up, an all-censored training set, and G = 0 at an event are
    ValueErrors (beyond the follow-up only while G > 0 there). Its fit counts times in a Python
    loop (0.6 s at 10⁶ patients); this is numpy (:class:`riskmodel.stats.censoring.CensoringKM`),
    after one sort of the training times with their events (:func:`censoring_of`).
    """
    return censoring_of(y_train).ipcw(event, time)


def censoring_of(y_train: np.ndarray) -> CensoringKM:
    """G of ``y_train`` (:class:`~riskmodel.stats.censoring.CensoringKM`), fitted once for every metric
    of a test set; the times sorted compiled (:func:`riskmodel.stats.dominance.sort_with_flags`) for a
    large training set. ValueError without a training event."""
    names: Any = y_train.dtype.names
    e_tr = np.asarray(y_train[names[0]]).astype(bool)
    t_tr = np.asarray(y_train[names[1]]).astype(float)
    if not e_tr.any():
        raise ValueError("all samples are censored")
    return CensoringKM(*_sorted_times(t_tr, e_tr))


def _sorted_times(t: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The times sorted, each with its event flag (ties in any order: only counts are used)."""
    if t.size >= COMPILED_FROM and _numba_installed() and np.isfinite(t).all():
        from riskmodel.stats.dominance import sort_with_flags  # imports numba: only for large sets

        return sort_with_flags(t, e)
    order = np.argsort(t)
    return t[order], e[order]


def integrated_brier(
    y_train: np.ndarray, y_test: np.ndarray, survival: np.ndarray, grid: Any, *, censoring: CensoringKM | None = None
) -> float:
    """Integrated Brier score of S(t) (rows: patients, columns: ``grid``), IPCW-weighted.

    One matrix expression instead of a loop over times; the definition (Graf et al. 1999) and the
    trapezoidal integration over the grid's span are scikit-survival's ``integrated_brier_score``.
    Like it, refuses (ValueError) times at or beyond the test follow-up's end, where the test set
    says nothing, and also (unlike it) a time where the censoring survival G(t) is 0, whose
    controls would get weight 1/0. Unlike it, it accepts times before the first test time: every
    test patient is then a control, and the score is well defined. An evaluation window fixed
    for a whole cohort starts at the cohort's first time, before most test folds' first. G is
    scikit-survival's (:class:`riskmodel.stats.censoring.CensoringKM`; ``censoring``: G of
    ``y_train`` when the caller has it), so the score is its number, bit for bit.
    """
    times = np.asarray(grid, dtype=float)
    if times.size < 2:
        raise ValueError("the integrated Brier score needs at least 2 time points")
    est = np.asarray(survival, dtype=float)
    event = np.asarray(y_test["event"], dtype=bool)
    time = np.asarray(y_test["time"], dtype=float)
    if est.shape != (time.size, times.size):
        raise ValueError(f"survival has shape {est.shape}, expected {(time.size, times.size)}")
    if times.min() < 0 or times.max() >= time.max():
        raise ValueError(f"time points must lie before the end of the test follow-up ({time.max():g}), and not below 0")
    cens = censoring or censoring_of(y_train)
    g_t = cens.proba(times)
    if (g_t == 0).any():
        raise ValueError(f"the censoring survival G(t) is 0 at {times[g_t == 0][0]:g}: the IBS is undefined there")
    # G at a patient's own time weighs them only as a case (time ≤ t), so only up to the last grid
    # point: a test time beyond the training follow-up is then no reason to refuse the score
    g_y = np.full(time.size, np.inf)
    weighed = time <= times.max()
    g_y[weighed] = cens.proba(time[weighed])
    g_y[g_y == 0] = np.inf
    case = (time[:, None] <= times[None, :]) & event[:, None]
    control = time[:, None] > times[None, :]
    scores = np.mean(np.square(est) * case / g_y[:, None] + np.square(1.0 - est) * control / g_t[None, :], axis=0)
    return float(np.trapezoid(scores, times) / (times[-1] - times[0]))


MIN_AT_RISK = 10  # a horizon with fewer patients still followed shows no metric and no unflagged prediction
IBS_POINTS = 25


@dataclass(frozen=True)
class EvaluationWindow:
    """Where one endpoint is evaluated, fixed once from the whole development data.

    ``horizons``: the clinical horizons with at least ``min_at_risk`` patients still followed
    (time ≥ h); td-AUC, calibration and decision curves are computed there, and nowhere else.
    ``tau``: the largest of them, where Uno's C is truncated. ``grid``: the time points of the
    integrated Brier score, from the first observed time to ``tau``. Every cross-validation fold,
    bootstrap resample and tuning trial uses this same window, so their figures measure the same
    thing; a test set that cannot reach ``tau`` gives NaN for the IBS, never a shorter window.
    ``left_out``: the other horizons, with the number of patients followed to each.
    ``reliable_until``: the time up to which at least ``min_at_risk`` patients were followed;
    a prediction beyond it is flagged.
    """

    horizons: tuple[float, ...]
    tau: float
    grid: tuple[float, ...]
    min_at_risk: int = MIN_AT_RISK
    left_out: dict[float, int] = field(default_factory=dict)
    reliable_until: float = math.inf

    @classmethod
    def from_data(
        cls, y: Any, horizons: Sequence[float], *, min_at_risk: int = MIN_AT_RISK, points: int = IBS_POINTS
    ) -> EvaluationWindow:
        """The window of development data ``y`` for the clinical ``horizons`` (months).

        When no horizon has ``min_at_risk`` patients followed, there is no horizon metric at all,
        and τ is the longest time that many patients are followed.

        >>> from riskmodel.stats import survival_array
        >>> y = survival_array([1, 0, 1, 0], [2.0, 5.0, 7.0, 9.0])
        >>> w = EvaluationWindow.from_data(y, [3.0, 6.0, 12.0], min_at_risk=2, points=3)
        >>> w.horizons, w.tau, w.grid, w.left_out, w.reliable_until
        ((3.0, 6.0), 6.0, (2.0, 4.0, 6.0), {12.0: 0}, 7.0)
        >>> EvaluationWindow.from_data(y, [12.0], min_at_risk=2, points=3).tau
        7.0
        """
        time = np.sort(np.asarray(y["time"], dtype=float))
        if min_at_risk < 1:
            raise UserInputError(f"evaluation.min_at_risk must be at least 1, got {min_at_risk}")
        if time.size < min_at_risk:
            raise UserInputError(
                f"{time.size} patients: fewer than evaluation.min_at_risk = {min_at_risk}, so no time point has "
                "enough patients followed to evaluate a model"
            )
        at_risk = {float(h): int(time.size - np.searchsorted(time, h, side="left")) for h in horizons}
        kept = tuple(h for h, n in at_risk.items() if n >= min_at_risk)
        reliable = float(time[-min_at_risk])
        tau = max(kept) if kept else reliable
        lower = float(time[0]) if time[0] < tau else tau / points
        grid = tuple(float(t) for t in np.linspace(lower, tau, points))
        return cls(kept, tau, grid, min_at_risk, {h: n for h, n in at_risk.items() if h not in kept}, reliable)

    def describe(self) -> str:
        """One line for notes and reports (counts and times only)."""
        where = ", ".join(f"{h:g}" for h in self.horizons)
        text = (
            f"Uno's C truncated at τ = {self.tau:.3g} months; IBS over {self.grid[0]:.3g} to {self.tau:.3g} months "
            f"({len(self.grid)} points); "
            + (f"td-AUC and calibration at {where} months" if where else "no horizon for td-AUC or calibration")
        )
        if self.left_out:
            gone = ", ".join(f"{h:g} ({n} followed)" for h, n in self.left_out.items())
            text += f"; left out (fewer than {self.min_at_risk} patients followed): {gone} months"
        return text

    def params(self) -> dict[str, str]:
        """The window as MLflow params."""
        return {
            "evaluation.tau": f"{self.tau:.6g}",
            "evaluation.ibs_grid": f"{self.grid[0]:.6g}:{self.tau:.6g}:{len(self.grid)}",
            "evaluation.horizons_used": ",".join(f"{h:g}" for h in self.horizons),
            "evaluation.min_at_risk": str(self.min_at_risk),
        }


def as_window(window: EvaluationWindow | Sequence[float], y: Any) -> EvaluationWindow:
    """``window`` itself, or the window of ``y`` for a plain list of horizons."""
    return window if isinstance(window, EvaluationWindow) else EvaluationWindow.from_data(y, window)


def td_auc(
    y_train: np.ndarray, y_test: np.ndarray, risk: np.ndarray, horizon: float, *, censoring: CensoringKM | None = None
) -> float:
    """Cumulative/dynamic AUC at ``horizon`` (scikit-survival's ``cumulative_dynamic_auc``, IPCW from
    ``y_train``; :func:`riskmodel.stats.censoring.cumulative_dynamic_auc`, equal to it to 1e-12)."""
    event, time = np.asarray(y_test["event"], dtype=bool), np.asarray(y_test["time"], dtype=float)
    return cumulative_dynamic_auc(censoring or censoring_of(y_train), event, time, risk, float(horizon))


def defined_or_nan(fn: Callable[[], float]) -> float:
    """``fn()``, or NaN where the metric is undefined on this data (it raises, or is not finite)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = fn()
    except (ValueError, ZeroDivisionError, IndexError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def metric_names(horizons: Sequence[float]) -> list[str]:
    """The keys :func:`survival_metrics` returns for ``horizons``, in order."""
    return ["harrell_c", "uno_c", *[f"td_auc_{h:g}" for h in horizons], "ibs", "ibs_km"]


def survival_metrics(
    y_train: np.ndarray,
    y_test: np.ndarray,
    risk: np.ndarray,
    survival: Callable[[np.ndarray], np.ndarray],
    window: EvaluationWindow | Sequence[float],
) -> dict[str, float]:
    """All metrics for one test set, in the evaluation ``window`` (or its horizons' window on
    ``y_train``). ``survival(times)`` returns S(t) for the test patients.

    Keys: ``harrell_c``, ``uno_c`` (truncated at τ), ``td_auc_<h>`` per horizon, ``ibs`` and
    ``ibs_km`` (the Kaplan-Meier null model) over the window's grid. A metric this test set cannot
    give (no event before a horizon; follow-up or censoring weights not reaching τ) is NaN.
    """
    w = as_window(window, y_train)
    event_tr, time_tr = check_survival_target(y_train)
    event_te, time_te = np.asarray(y_test["event"], bool), np.asarray(y_test["time"], float)
    try:  # G of the training target, fitted once for Uno's C, the td-AUCs and both IBS
        g: Any = censoring_of(y_train)
    except ValueError:
        g = None  # each IPCW metric then refuses (NaN), as it would alone
    out: dict[str, float] = {"harrell_c": defined_or_nan(lambda: harrell_c(event_te, time_te, risk))}
    uno = partial(uno_c, y_train, y_test, risk, w.tau, censoring=g)
    out["uno_c"] = defined_or_nan(uno) if w.tau <= time_tr.max() else math.nan
    for h in w.horizons:
        ok = h < time_te.max() and ((time_te <= h) & event_te).any() and (time_te > h).any()
        auc = partial(td_auc, y_train, y_test, risk, float(h), censoring=g)
        out[f"td_auc_{h:g}"] = defined_or_nan(auc) if ok else math.nan
    out["ibs"] = out["ibs_km"] = math.nan
    grid = np.asarray(w.grid)
    if grid[-1] < time_te.max() and grid[-1] <= time_tr.max():
        km_t, km_s = kaplan_meier(time_tr, event_tr)
        null = np.tile(step_values(km_t, km_s, grid, before=1.0), (len(time_te), 1))
        out["ibs"] = defined_or_nan(partial(integrated_brier, y_train, y_test, survival(grid), grid, censoring=g))
        out["ibs_km"] = defined_or_nan(partial(integrated_brier, y_train, y_test, null, grid, censoring=g))
    return out
