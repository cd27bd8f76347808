"""Kaplan-Meier: the one implementation of the product-limit estimator.

Three views of it, each checked against lifelines and R's ``survfit`` in the tests:

* :func:`kaplan_meier`: the curve, S at every distinct event time;
* :func:`km_at`: S at one time with its 95 % log(−log) Greenwood interval (R's and lifelines'
  default form);
* :func:`km_summary`: S at a few landmark times and the median, written as one cumulative
  product over patients, because the cohort reconstruction calls it tens of thousands of times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["kaplan_meier", "km_at", "km_summary"]

_Z95 = 1.959964


def _event_table(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct event times, the deaths and the number at risk at each."""
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    event_times, deaths = np.unique(time[event], return_counts=True)
    at_risk = len(time) - np.searchsorted(np.sort(time), event_times, side="left")
    return event_times, deaths, at_risk


def kaplan_meier(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier survival at each distinct event time (the right-continuous steps).

    >>> t, s = kaplan_meier(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1, 1, 0, 1]))
    >>> t.tolist(), s.round(4).tolist()
    ([1.0, 2.0, 3.0], [0.75, 0.5, 0.0])
    """
    event_times, deaths, at_risk = _event_table(time, event)
    return event_times, np.cumprod(1 - deaths / at_risk)


def km_at(time: np.ndarray, event: np.ndarray, horizon: float) -> tuple[float, float, float]:
    """KM S(``horizon``) and its 95 % log(−log) Greenwood interval; NaN bounds where S is 0 or 1.

    Four patients, deaths at 1 and 2: S(2) = 3/4 · 2/3 = 0.5.

    >>> s, low, high = km_at(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 1, 0, 0]), 2.0)
    >>> s, round(low, 4), round(high, 4)
    (0.5, 0.0578, 0.8449)
    """
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    _, deaths, at_risk = _event_table(time, event & (time <= horizon))
    surv = float(np.prod(1 - deaths / at_risk)) if len(deaths) else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        greenwood = float(np.sum(deaths / (at_risk * (at_risk - deaths))))
    if not 0 < surv < 1 or not np.isfinite(greenwood):
        return surv, math.nan, math.nan
    se = math.sqrt(greenwood) / abs(math.log(surv))
    log_log = math.log(-math.log(surv))
    low, high = (math.exp(-math.exp(log_log + z * se)) for z in (_Z95, -_Z95))
    return surv, low, high


def km_summary(time: np.ndarray, event: np.ndarray, landmarks: Sequence[float]) -> tuple[np.ndarray, float]:
    """Kaplan-Meier S at ``landmarks`` and the median (the first time S ≤ 0.5).

    >>> rates, median = km_summary(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 1, 1, 0]), [1.5, 3.5])
    >>> rates.tolist(), median
    ([0.75, 0.25], 2.0)
    """
    order = np.lexsort((~event, time))  # events before censorings at the same time
    t, e = time[order], event[order]
    surv = np.cumprod(np.where(e, 1 - 1 / (len(t) - np.arange(len(t))), 1.0))
    idx = np.searchsorted(t, np.asarray(landmarks, float), side="right") - 1
    rates = np.where(idx >= 0, surv[np.clip(idx, 0, None)], 1.0)
    below = np.flatnonzero(surv <= 0.5 + 1e-12)
    return rates, float(t[below[0]]) if below.size else math.nan
