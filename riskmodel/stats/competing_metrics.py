"""Performance of cumulative-incidence predictions with competing risks, on arrays.

The target is :func:`riskmodel.stats.competing_array` (cause 0 censored, 1 the event of interest,
2 a competing event). Every IPCW weight comes from the reverse Kaplan-Meier G of the censoring on
``y_train``, with riskRegression's convention (``prodlim(..., reverse = TRUE)``, used by
``Score``): at a time shared by events and censorings the events come first, so the number at risk
of being censored at c is #{T > c} + #{censored at c}. A patient with the event of interest or a
competing event at T ≤ t weighs 1/G(T−); a patient still event-free at t weighs 1/G(t); a patient
censored at or before t weighs 0 (Graf et al. 1999; Blanche et al. 2013). With ``y_train`` equal
to the test set, :func:`cif_auc` and :func:`cif_brier` are ``riskRegression::Score(...,
cens.model = "marginal", cause = 1)`` exactly (the tests check 1e-10).

* :func:`wolbers_c`: Wolbers et al.'s concordance (Epidemiology 2009;20:555-61): a pair is
  comparable when i has the event of interest at T_i and j either is still followed after T_i
  (T_j > T_i) or had a competing event (at any time, so also T_j ≤ T_i: j will never have the
  event of interest). Risk ties count one half. O(n log n) through :func:`riskmodel.metrics.concordance`.
* :func:`wolbers_c_ipcw`: its censoring-adjusted form (Wolbers, Blanche, Koller, Witteman, Gerds,
  Biostatistics 2014;15:526-39; pec's ``cindex`` for competing risks): a pair of the first kind
  weighs 1/(G(T_i−)·G(T_i)), of the second 1/(G(T_i−)·G(T_j−)); truncated at ``tau``.
* :func:`cif_auc`: the time-dependent AUC of Blanche, Dartigues & Jacqmin-Gadda (Stat Med
  2013;32:5381-97), definition 2: cases had the event of interest by t, controls are everyone else
  (event-free at t, or a competing event by t).
* :func:`cif_brier`, :func:`cif_brier_null`, :func:`cif_integrated_brier`: the IPCW Brier score of
  the predicted CIF at t, of the Aalen-Johansen CIF without covariates (riskRegression's "Null
  model"), and integrated over a grid.

:func:`competing_metrics` returns the keys of :func:`riskmodel.metrics.survival_metrics`, so
cross-validation, the bootstrap and tuning read both alike. The name mapping:

==================  ==========================================================================
key                 competing-risk meaning
==================  ==========================================================================
``harrell_c``       Wolbers C (2009), every comparable pair, no weights (Harrell's C's analogue)
``uno_c``           Wolbers C with IPCW (2014), events of interest at T_i ≤ τ (Uno's analogue)
``td_auc_<h>``      Blanche's AUC (definition 2) of the predicted CIF at h
``brier_<h>``       IPCW Brier score of the predicted CIF at h (survival_metrics has no such key)
``ibs``             the integrated CIF Brier score over the window's grid
``ibs_km``          the same for the null model, the Aalen-Johansen CIF of ``y_train`` (the name is
                    kept so that code reading the survival null model reads this one)
==================  ==========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from riskmodel.metrics import EvaluationWindow, as_window, concordance, defined_or_nan
from riskmodel.stats.competing import aalen_johansen
from riskmodel.stats.kaplan_meier import kaplan_meier
from riskmodel.stats.target import check_competing_target, step_values

__all__ = [
    "censoring_survival",
    "cif_auc",
    "cif_brier",
    "cif_brier_null",
    "cif_integrated_brier",
    "cif_scaled_brier",
    "competing_metric_names",
    "competing_metrics",
    "wolbers_c",
    "wolbers_c_ipcw",
]


def _arrays(y: Any) -> tuple[np.ndarray, np.ndarray]:
    """(cause, time) of a competing-risks target, without requiring an event of interest."""
    return np.asarray(y["cause"], dtype=int), np.asarray(y["time"], dtype=float)


def censoring_survival(time: Any, cause: Any) -> tuple[np.ndarray, np.ndarray]:
    """Reverse Kaplan-Meier G of the censoring (cause 0), events before censorings at tied times.

    Returns the distinct censoring times and G just after each. This is ``prodlim(Hist(time,
    status) ~ 1, reverse = TRUE)``, the censoring model of riskRegression's ``Score``. Times are
    mapped to ranks in which every censoring at t sorts after the events at t, so the one
    Kaplan-Meier of :mod:`riskmodel.stats.kaplan_meier` gives the at-risk count #{T > t} +
    #{censored at t}. Four patients, an event and a censoring at 1, a censoring at 2, one at 3:
    G(1) = 1 − 1/3, G(2) = G(1)·(1 − 1/2).

    >>> censoring_survival([1.0, 1.0, 2.0, 3.0], [1, 0, 0, 0])[1].round(4).tolist()
    [0.6667, 0.3333, 0.0]
    """
    t = np.asarray(time, dtype=float).ravel()
    censored = np.asarray(cause, dtype=int).ravel() == 0
    distinct, position = np.unique(t, return_inverse=True)
    ranked = 2.0 * position + censored  # events at t → 2k, censorings at t → 2k + 1
    steps, surv = kaplan_meier(ranked, censored)
    return distinct[(steps // 2).astype(int)], surv


class _Censoring:
    """G from ``y_train``, read right-continuous (G(t)) or left-continuous (G(T−))."""

    def __init__(self, y_train: Any) -> None:
        cause, time = _arrays(y_train)
        if time.size == 0:
            raise ValueError("y_train is empty: no censoring distribution")
        self.times, self.surv = censoring_survival(time, cause)

    def at(self, t: np.ndarray) -> np.ndarray:
        return step_values(self.times, self.surv, np.asarray(t, dtype=float), before=1.0)

    def before(self, t: np.ndarray) -> np.ndarray:
        k = np.searchsorted(self.times, np.asarray(t, dtype=float), side="left")
        return np.asarray(np.r_[1.0, self.surv][k], dtype=float)


GRID_BLOCK = 1_000_000  # IPCW weights held at once by the integrated Brier score (times × patients)


def _horizon_weights(g: _Censoring, cause: np.ndarray, time: np.ndarray, horizon: float) -> np.ndarray:
    """IPCW weight of each test patient at ``horizon`` (0 for a patient censored by then)."""
    before = (time <= horizon) & (cause != 0)
    after = time > horizon
    g_own = g.before(time[before])
    g_h = float(g.at(np.array([horizon]))[0])
    if (g_own <= 0).any() or (after.any() and g_h <= 0):
        raise ValueError(f"the censoring survival G reaches 0 before {horizon:g}: IPCW weights are undefined")
    w = np.zeros(time.size)
    w[before] = 1.0 / g_own
    w[after] = 1.0 / g_h
    return w


def wolbers_c(time: Any, cause: Any, risk: Any, *, tau: float | None = None, event: int = 1) -> float:
    """Wolbers et al.'s (2009) concordance index of ``risk`` for the cause ``event``, unweighted.

    Comparable: i had cause ``event`` at T_i (T_i ≤ ``tau`` if given) and j has T_j > T_i, or j had
    another cause (any time). Patients censored at exactly T_i are not comparable (it is unknown
    whether they outlived T_i), nor two events of interest at the same time. Risk ties (within
    1e-8) count one half. NaN without a comparable pair.

    Competing events are moved past every observed time as censorings, and censorings at a time
    shared with events sort before them; Harrell's count of :func:`riskmodel.metrics.concordance`
    on those times is then exactly the count above, in O(n log n).

    >>> wolbers_c([1.0, 2.0, 3.0], [1, 2, 0], [0.2, 0.9, 0.1])  # pairs (1,2) discordant, (1,3) concordant
    0.5
    """
    t = np.asarray(time, dtype=float).ravel()
    c = np.asarray(cause, dtype=int).ravel()
    r = np.asarray(risk, dtype=float).ravel()
    if not (t.size == c.size == r.size):
        raise ValueError(f"time, cause and risk differ in length: {t.size}, {c.size}, {r.size}")
    is_event = c == event
    if tau is not None:
        is_event &= t <= tau
    distinct, position = np.unique(t, return_inverse=True)
    # censored (and events beyond tau, which only act as followed patients) at t → 2k, events → 2k + 1
    order_time = 2.0 * position + is_event
    order_time[(c != event) & (c != 0)] = 2.0 * distinct.size + 2.0
    return concordance(is_event, order_time, r).cindex


def _weighted_prefix(rank: np.ndarray, weight: np.ndarray, ends: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each query q: Σ weight[p] over p < ends[q] with rank[p] < thresholds[q].

    The prefix [0, e) is the union of one dyadic block per set bit of e. At block size s, every
    point is keyed ``block·M + rank`` and sorted, so the weight of a block below a threshold is a
    difference of cumulative sums at two binary searches: O(n log² n) in numpy, no loop over points.
    """
    n = rank.size
    out = np.zeros(ends.size)
    if n == 0 or ends.size == 0:
        return out
    rank = rank.astype(np.int64)
    ends = ends.astype(np.int64)
    thresholds = thresholds.astype(np.int64)
    big = np.int64(max(int(rank.max()), int(thresholds.max()), 0) + 1)  # keys of two blocks never interleave
    index = np.arange(n, dtype=np.int64)
    s = 1
    while s <= int(ends.max()):
        keys = (index // s) * big + rank
        order = np.argsort(keys, kind="stable")
        cum = np.r_[0.0, np.cumsum(weight[order])]
        has = (ends & s) != 0
        block = 2 * (ends[has] // (2 * s))
        stop = np.searchsorted(keys[order], block * big + thresholds[has])
        out[has] += cum[stop] - cum[block * s]
        s *= 2
    return out


def wolbers_c_ipcw(
    y_train: Any, y_test: Any, risk: Any, tau: float | None = None, *, censoring: _Censoring | None = None
) -> float:
    """Wolbers et al.'s (2014) IPCW concordance for cause 1, truncated at ``tau`` (T_i ≤ tau).

    Σ_ij (A_ij·W_i + B_ij·W_ij)·Q_ij / Σ_ij (A_ij·W_i + B_ij·W_ij), with A_ij = 1{T_i < T_j},
    W_i = 1/(G(T_i−)·G(T_i)); B_ij = 1{T_j ≤ T_i, j a competing event}, W_ij = 1/(G(T_i−)·G(T_j−));
    Q_ij = 1{risk_i > risk_j} (one half for a tie within 1e-8); i ranges over the events of
    interest. G is the censoring distribution of ``y_train`` (see the module). Raises ValueError
    where a weight is 1/0; NaN without a comparable pair. ``censoring``: G of ``y_train``, when the
    caller has it (every metric of :func:`competing_metrics` reads one).
    """
    cause, time = _arrays(y_test)
    r = np.asarray(risk, dtype=float).ravel()
    if r.size != time.size:
        raise ValueError(f"risk has {r.size} values for {time.size} patients")
    g = censoring or _Censoring(y_train)
    case = (cause == 1) & (time <= (math.inf if tau is None else tau))
    comp = (cause == 2) & (time <= (time[case].max() if case.any() else -math.inf))  # B pairs need T_j ≤ T_i
    g_minus = np.ones(time.size)
    g_minus[case | comp] = g.before(time[case | comp])
    g_at = np.ones(time.size)
    g_at[case] = g.at(time[case])
    if (g_minus[case | comp] <= 0).any() or (g_at[case] <= 0).any():
        raise ValueError("the censoring survival G is 0 at an event time: IPCW weights are undefined")
    w_a = np.where(case, 1.0 / (g_minus * g_at), 0.0)
    # pairs of the first kind: Harrell's count on strict time order, weighted per event
    sorted_time = np.sort(time)
    beyond = time.size - np.searchsorted(sorted_time, time[case], side="right")
    den_a = float(np.sum(w_a[case] * beyond))
    position = np.unique(time, return_inverse=True)[1]
    num_a = 0.0
    if den_a > 0:
        num_a = den_a * concordance(case, 2.0 * position + case, r, w_a).cindex
    # pairs of the second kind: competing events at or before T_i, weighted 1/G(T_j−) each
    values = np.sort(r)
    comp_idx = np.flatnonzero(comp)
    by_time = comp_idx[np.argsort(time[comp_idx], kind="stable")]
    v = 1.0 / g_minus[by_time]
    ends = np.searchsorted(time[by_time], time[case], side="right")
    rank = np.searchsorted(values, r[by_time], side="left")
    below = _weighted_prefix(rank, v, ends, np.searchsorted(values, r[case] - 1e-8, side="left"))
    upto = _weighted_prefix(rank, v, ends, np.searchsorted(values, r[case] + 1e-8, side="right"))
    w_b = 1.0 / g_minus[case]
    den_b = float(np.sum(w_b * np.r_[0.0, np.cumsum(v)][ends]))
    num_b = float(np.sum(w_b * (below + 0.5 * (upto - below))))
    total = den_a + den_b
    return (num_a + num_b) / total if total > 0 else math.nan


def _test_target(y_test: Any, values: Any, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cause, time = _arrays(y_test)
    x = np.asarray(values, dtype=float).ravel()
    if x.size != time.size:
        raise ValueError(f"{what} has {x.size} values for {time.size} patients")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} must be finite")
    return cause, time, x


def cif_auc(y_train: Any, y_test: Any, risk: Any, horizon: float, *, censoring: _Censoring | None = None) -> float:
    """Blanche et al.'s (2013) time-dependent AUC at ``horizon`` for cause 1, definition 2, IPCW.

    Cases: cause 1 at T ≤ t, weight 1/G(T−). Controls: event-free at t (weight 1/G(t)) or a
    competing event at T ≤ t (weight 1/G(T−)). AUC = Σ w_i·w_j·(1{r_i > r_j} + ½·1{r_i = r_j}) /
    (Σ w_i · Σ w_j) over cases i and controls j: ``riskRegression::Score(..., metrics = "auc")``
    (exact risk ties, as there). ValueError without cases or controls.
    """
    cause, time, r = _test_target(y_test, risk, "risk")
    w = _horizon_weights(censoring or _Censoring(y_train), cause, time, horizon)
    case = (time <= horizon) & (cause == 1)
    control = (time > horizon) | ((time <= horizon) & (cause == 2))
    if not case.any() or not control.any():
        raise ValueError(f"no cases or no controls at {horizon:g}: the AUC is undefined")
    order = np.argsort(r[control], kind="stable")
    ctrl_r = r[control][order]
    cum = np.r_[0.0, np.cumsum(w[control][order])]
    lower = cum[np.searchsorted(ctrl_r, r[case], side="left")]
    equal = cum[np.searchsorted(ctrl_r, r[case], side="right")] - lower
    numerator = float(np.sum(w[case] * (lower + 0.5 * equal)))
    return numerator / (float(np.sum(w[case])) * float(cum[-1]))


def cif_brier(
    y_train: Any, y_test: Any, cif_at_t: Any, horizon: float, *, censoring: _Censoring | None = None
) -> float:
    """IPCW Brier score of the predicted CIF of cause 1 at ``horizon`` (Graf et al. 1999's weights).

    (1{T ≤ t, cause 1} − F̂₁(t))² weighted 1/G(T−) for an event of either cause by t, 1/G(t) for
    the event-free, 0 for a patient censored by t; averaged over all n test patients, as
    ``riskRegression::Score(..., metrics = "brier", cause = 1)``.
    """
    cause, time, f = _test_target(y_test, cif_at_t, "cif_at_t")
    w = _horizon_weights(censoring or _Censoring(y_train), cause, time, horizon)
    outcome = ((time <= horizon) & (cause == 1)).astype(float)
    return float(np.mean(w * np.square(outcome - f)))


def _null_cif(y_train: Any, times: np.ndarray) -> np.ndarray:
    """The Aalen-Johansen CIF of cause 1 on ``y_train`` at ``times``."""
    cause, time = _arrays(y_train)
    steps, cif = aalen_johansen(time, cause, cause=1)
    return step_values(steps, cif, np.asarray(times, dtype=float), before=0.0)


def cif_brier_null(y_train: Any, y_test: Any, horizon: float) -> float:
    """The Brier score at ``horizon`` of the null model: the Aalen-Johansen CIF of ``y_train``,
    the same for every patient (riskRegression's "Null model" when ``y_train`` is the test set)."""
    null = float(_null_cif(y_train, np.array([horizon]))[0])
    return cif_brier(y_train, y_test, np.full(len(y_test), null), horizon)


def cif_scaled_brier(y_train: Any, y_test: Any, cif_at_t: Any, horizon: float) -> float:
    """1 − Brier/Brier(null model): riskRegression's IPA; 0 for the null model, 1 for perfection."""
    return 1.0 - cif_brier(y_train, y_test, cif_at_t, horizon) / cif_brier_null(y_train, y_test, horizon)


def cif_integrated_brier(
    y_train: Any, y_test: Any, cif: Any, grid: Any, *, censoring: _Censoring | None = None
) -> float:
    """The CIF Brier score integrated over ``grid`` (trapezoids), divided by the grid's span.

    ``cif``: rows patients, columns ``grid``. As :func:`riskmodel.metrics.integrated_brier`,
    refuses a grid of fewer than 2 points, below 0 or reaching the end of the test follow-up, and a
    time where a censoring weight is 1/0.
    """
    times = np.asarray(grid, dtype=float)
    if times.size < 2:
        raise ValueError("the integrated Brier score needs at least 2 time points")
    cause, time = _arrays(y_test)
    est = np.asarray(cif, dtype=float)
    if est.shape != (time.size, times.size):
        raise ValueError(f"cif has shape {est.shape}, expected {(time.size, times.size)}")
    if times.min() < 0 or times.max() >= time.max():
        raise ValueError(f"time points must lie before the end of the test follow-up ({time.max():g}), and not below 0")
    scores = _brier_over_grid(censoring or _Censoring(y_train), cause, time, est, times)
    return float(np.trapezoid(scores, times) / (times[-1] - times[0]))


def _brier_over_grid(
    g: _Censoring, cause: np.ndarray, time: np.ndarray, est: np.ndarray, times: np.ndarray
) -> list[float]:
    """:func:`cif_brier` at every time of ``times`` (``est``: patients × times), a block of times at
    a time (at most :data:`GRID_BLOCK` weights in memory): the weights of :func:`_horizon_weights`
    for a block at once, each time's mean over patients taken over a contiguous row, as the
    one-time score takes it, so every score is the same to the bit."""
    g_own = g.before(time)  # G(T_i−), whatever the time
    step = max(1, GRID_BLOCK // max(time.size, 1))
    scores: list[float] = []
    for start in range(0, times.size, step):
        block = times[start : start + step]
        before = (time[None, :] <= block[:, None]) & (cause != 0)[None, :]  # times × patients
        after = time[None, :] > block[:, None]
        g_h = g.at(block)
        bad = (before & (g_own <= 0)[None, :]).any(axis=1) | (after.any(axis=1) & (g_h <= 0))
        if bad.any():
            t = float(block[int(np.argmax(bad))])
            raise ValueError(f"the censoring survival G reaches 0 before {t:g}: IPCW weights are undefined")
        with np.errstate(divide="ignore"):
            w = np.where(before, 1.0 / g_own[None, :], np.where(after, 1.0 / g_h[:, None], 0.0))
        outcome = before & (cause == 1)[None, :]
        squared = np.ascontiguousarray(w * np.square(outcome - est[:, start : start + step].T))
        scores += [float(np.mean(row)) for row in squared]
    return scores


def competing_metric_names(horizons: Sequence[float]) -> list[str]:
    """The keys :func:`competing_metrics` returns for ``horizons``, in order."""
    return [
        "harrell_c",
        "uno_c",
        *[f"td_auc_{h:g}" for h in horizons],
        *[f"brier_{h:g}" for h in horizons],
        "ibs",
        "ibs_km",
    ]


def competing_metrics(
    y_train: Any,
    y_test: Any,
    cif: Callable[[np.ndarray], np.ndarray],
    risk: Any,
    window: EvaluationWindow | Sequence[float],
) -> dict[str, float]:
    """All competing-risk metrics for one test set, in the evaluation ``window`` (see the module's
    name mapping). ``cif(times)`` returns the predicted CIF of cause 1 for the test patients
    (rows) at ``times`` (columns); ``risk`` (higher = earlier event of interest) feeds the C indices.
    td-AUC and Brier at a horizon use the predicted CIF there. A metric this test set cannot give
    is NaN, as in :func:`riskmodel.metrics.survival_metrics`.
    """
    w = as_window(window, y_train)
    check_competing_target(y_train)
    time_tr = _arrays(y_train)[1]
    cause_te, time_te = _arrays(y_test)
    try:  # G of y_train, estimated once for every IPCW metric below
        g: Any = _Censoring(y_train)
    except ValueError:
        g = None  # each metric then refuses (NaN), as it would alone
    out: dict[str, float] = {"harrell_c": defined_or_nan(partial(wolbers_c, time_te, cause_te, risk))}
    uno = partial(wolbers_c_ipcw, y_train, y_test, risk, w.tau, censoring=g)
    out["uno_c"] = defined_or_nan(uno) if w.tau <= time_tr.max() else math.nan
    horizons = np.asarray(w.horizons, dtype=float)
    at_h = np.asarray(cif(horizons), dtype=float) if horizons.size else np.empty((time_te.size, 0))
    for k, h in enumerate(w.horizons):
        ok = h < time_te.max() and ((time_te <= h) & (cause_te == 1)).any()
        out[f"td_auc_{h:g}"] = (
            defined_or_nan(partial(cif_auc, y_train, y_test, at_h[:, k], h, censoring=g)) if ok else math.nan
        )
    for k, h in enumerate(w.horizons):
        ok = h < time_te.max()
        out[f"brier_{h:g}"] = (
            defined_or_nan(partial(cif_brier, y_train, y_test, at_h[:, k], h, censoring=g)) if ok else math.nan
        )
    out["ibs"] = out["ibs_km"] = math.nan
    grid = np.asarray(w.grid)
    if grid[-1] < time_te.max() and grid[-1] <= time_tr.max():
        null = np.tile(_null_cif(y_train, grid), (time_te.size, 1))
        out["ibs"] = defined_or_nan(partial(cif_integrated_brier, y_train, y_test, cif(grid), grid, censoring=g))
        out["ibs_km"] = defined_or_nan(partial(cif_integrated_brier, y_train, y_test, null, grid, censoring=g))
    return out
