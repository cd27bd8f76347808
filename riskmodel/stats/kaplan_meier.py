"""Kaplan-Meier: the one implementation of the product-limit estimator.

S(t) is the product of (nᵢ − dᵢ)/nᵢ over the event times tᵢ ≤ t, multiplied in time order as R's
``survfit`` (survival 3.5) multiplies it, so that a curve R holds at exactly 0.5 is exactly 0.5 here.
Four views, each checked against R in the tests:

* :func:`kaplan_meier`: the curve, S at every distinct event time;
* :func:`km_at`: S at one time with its 95 % log(−log) Greenwood interval (``survfit(conf.type =
  "log-log")``, lifelines' default);
* :func:`km_median`: the median and its 95 % interval as ``quantile(survfit(...), 0.5)`` gives them
  for a default ``survfit`` (``conf.type = "log"``);
* :func:`km_summary`: S at a few landmark times and the median, cheaply, for tables.

The median is R's (``quantile.survfit``): the first time S ≤ 0.5, except where S equals 0.5 (to
within √ε) over an interval. There it is the midpoint between the start of that flat stretch and the
next event time, or the last follow-up time if S stays at 0.5 to the end. A curve that never reaches
0.5 has no median (NaN). The interval applies the same rule to the lower and upper confidence curves
S·exp(∓1.96·σ), σ² = Σ dᵢ/(nᵢ(nᵢ − dᵢ)) (Greenwood), the upper one capped at 1.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal

import numpy as np

__all__ = ["MedianRule", "kaplan_meier", "km_at", "km_median", "km_summary"]

MedianRule = Literal["midpoint", "first"]

_Z95 = NormalDist().inv_cdf(0.975)  # R's qnorm(0.975)
_TOL = math.sqrt(sys.float_info.epsilon)  # quantile.survfit's default tolerance


def _event_table(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct event times, the deaths and the number at risk at each."""
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    event_times, deaths = np.unique(time[event], return_counts=True)
    at_risk = len(time) - np.searchsorted(np.sort(time), event_times, side="left")
    return event_times, deaths, at_risk


def _curve(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Event times, deaths, numbers at risk, and S after each event time."""
    event_times, deaths, at_risk = _event_table(time, event)
    return event_times, deaths, at_risk, np.cumprod((at_risk - deaths) / at_risk)


def _greenwood(deaths: np.ndarray, at_risk: np.ndarray) -> np.ndarray:
    """Σ d/(n(n − d)) up to each event time, summed in time order (infinite once S reaches 0)."""
    with np.errstate(divide="ignore"):
        return np.cumsum(deaths / (at_risk * (at_risk - deaths)).astype(float))


def kaplan_meier(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier survival at each distinct event time (the right-continuous steps).

    >>> t, s = kaplan_meier(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1, 1, 0, 1]))
    >>> t.tolist(), s.round(4).tolist()
    ([1.0, 2.0, 3.0], [0.75, 0.5, 0.0])
    """
    event_times, _, _, surv = _curve(time, event)
    return event_times, surv


def km_at(time: np.ndarray, event: np.ndarray, horizon: float) -> tuple[float, float, float]:
    """KM S(``horizon``) and its 95 % log(−log) Greenwood interval; NaN bounds where S is 0 or 1.

    Four patients, deaths at 1 and 2: S(2) = 3/4 · 2/3 = 0.5.

    >>> s, low, high = km_at(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 1, 0, 0]), 2.0)
    >>> s, round(low, 4), round(high, 4)
    (0.5, 0.0578, 0.8449)
    """
    event_times, deaths, at_risk, curve = _curve(time, event)
    k = int(np.searchsorted(event_times, horizon, side="right"))
    if k == 0:
        return 1.0, math.nan, math.nan
    surv, greenwood = float(curve[k - 1]), float(_greenwood(deaths, at_risk)[k - 1])
    if not 0 < surv < 1 or not np.isfinite(greenwood):
        return surv, math.nan, math.nan
    se = math.sqrt(greenwood) / abs(math.log(surv))
    log_log = math.log(-math.log(surv))
    low, high = (math.exp(-math.exp(log_log + z * se)) for z in (_Z95, -_Z95))
    return surv, low, high


def _median_time(event_times: np.ndarray, curve: np.ndarray, last_time: float) -> float:
    """Where the step ``curve`` (its value after each event time) crosses 0.5, by R's rule.

    Written from survival 3.5's ``quantile.survfit``: 1 − curve is searched for 0.5 ± tolerance among
    its distinct values, each at the first time it is taken. The upper confidence curve need not be
    monotone, so it is sorted first; NaN values (a log interval where S = 0) drop out.
    """
    y = 1.0 - curve
    known = ~np.isnan(y)
    if not known.any() or y[known].max() < 0.5:
        return math.nan
    if known.all() and bool(np.all(y[1:] >= y[:-1])):
        times, values, final = event_times, y, y[-1]  # sorted already: a search finds each first time
    else:
        values, first = np.unique(y, return_index=True)  # NaN sorts last
        final = y[first.max()]
        distinct = ~np.isnan(values)
        times, values = event_times[first[distinct]], values[distinct]

    def reached(shift: float) -> float:
        k = int(np.searchsorted(values + shift, 0.5, side="left"))
        return float(times[k]) if k < len(values) else math.nan

    start = reached(_TOL)
    if not math.isnan(final) and abs(0.5 - final) < _TOL:  # flat at 0.5 to the end of follow-up
        return (start + last_time) / 2
    return (start + reached(-_TOL)) / 2


def km_median(time: np.ndarray, event: np.ndarray) -> tuple[float, float, float]:
    """The KM median with its 95 % interval, as R's ``quantile(survfit(Surv(time, event) ~ 1), 0.5)``.

    Six patients, deaths at 1, 2 and 3, so S = 0.5 from 3 to the end of follow-up at 6: the median is
    (3 + 6)/2. The upper limit is NaN because the upper confidence curve never falls to 0.5.

    >>> km_median(np.arange(1.0, 7.0), np.array([1, 1, 1, 0, 0, 0]))
    (4.5, 2.0, nan)
    """
    time = np.asarray(time, float)
    event_times, deaths, at_risk, surv = _curve(time, event)
    if not len(time):
        return math.nan, math.nan, math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.log(np.where(surv > 0, surv, np.nan))  # R leaves the log interval undefined at S = 0
        se = np.sqrt(_greenwood(deaths, at_risk))
        lower = np.exp(log_s - _Z95 * se)
        upper = np.minimum(np.exp(log_s + _Z95 * se), 1.0)
    last = float(time.max())
    median, low, high = (_median_time(event_times, curve, last) for curve in (surv, lower, upper))
    return median, low, high


def km_summary(
    time: np.ndarray, event: np.ndarray, landmarks: Sequence[float], *, median_rule: MedianRule = "midpoint"
) -> tuple[np.ndarray, float]:
    """Kaplan-Meier S at ``landmarks`` and the median.

    ``median_rule="midpoint"`` is R's rule (see the module). ``"first"`` takes the first time S ≤ 0.5
    (lifelines' rule) with S multiplied patient by patient. Only the cohort reconstruction uses it:
    its calibration objective was built on it, and the bundled cohort is rebuilt from that objective
    byte for byte.

    Four patients, deaths at 1, 2 and 3: S = 0.5 from 2 to 3, so the median is 2.5 by R's rule.

    >>> t, e = np.array([1.0, 2.0, 3.0, 4.0]), np.array([True, True, True, False])
    >>> rates, median = km_summary(t, e, [1.5, 3.5])
    >>> rates.tolist(), median, km_summary(t, e, [1.5], median_rule="first")[1]
    ([0.75, 0.25], 2.5, 2.0)
    """
    if median_rule == "first":
        return _summary_first(np.asarray(time, float), np.asarray(event, bool), landmarks)
    if median_rule != "midpoint":
        raise ValueError(f"median_rule must be 'midpoint' or 'first', got {median_rule!r}")
    time = np.asarray(time, float)
    event_times, _, _, surv = _curve(time, event)
    steps = np.r_[1.0, surv]
    rates = steps[np.searchsorted(event_times, np.asarray(landmarks, float), side="right")]
    median = _median_time(event_times, surv, float(time.max())) if len(event_times) else math.nan
    return rates, median


def _summary_first(time: np.ndarray, event: np.ndarray, landmarks: Sequence[float]) -> tuple[np.ndarray, float]:
    """S at ``landmarks`` and the first time S ≤ 0.5, as one cumulative product over patients."""
    order = np.lexsort((~event, time))  # events before censorings at the same time
    t, e = time[order], event[order]
    surv = np.cumprod(np.where(e, 1 - 1 / (len(t) - np.arange(len(t))), 1.0))
    idx = np.searchsorted(t, np.asarray(landmarks, float), side="right") - 1
    rates = np.where(idx >= 0, surv[np.clip(idx, 0, None)], 1.0)
    below = np.flatnonzero(surv <= 0.5 + 1e-12)
    return rates, float(t[below[0]]) if below.size else math.nan
