"""Survival targets: the one structured-array layout every floor above uses, and step functions.

A target is scikit-survival's layout: a structured array with a boolean ``event`` field and a
float ``time`` field, one row per patient. Build one with :func:`survival_array`; never by hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from riskmodel.errors import UserInputError

__all__ = ["SURVIVAL_DTYPE", "check_survival_target", "step_values", "survival_array"]

SURVIVAL_DTYPE = np.dtype([("event", "?"), ("time", "<f8")])  # scikit-survival's layout


def survival_array(event: Any, time: Any) -> np.ndarray:
    """A survival target from an event indicator and a time per patient.

    >>> survival_array([1, 0], [2.0, 5.0]).tolist()
    [(True, 2.0), (False, 5.0)]
    """
    e = np.asarray(event, dtype=bool).ravel()
    t = np.asarray(time, dtype=float).ravel()
    if e.size != t.size:
        raise ValueError(f"event and time differ in length: {e.size} and {t.size}")
    y = np.empty(t.size, dtype=SURVIVAL_DTYPE)
    y["event"], y["time"] = e, t
    return y


def check_survival_target(y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (event: bool, time: float) from a scikit-survival array, checking it.

    >>> y = survival_array([True, False], [2.0, 5.0])
    >>> check_survival_target(y)[1]
    array([2., 5.])
    """
    names = getattr(getattr(y, "dtype", None), "names", None)
    if not names or len(names) != 2:
        raise UserInputError("y must be a structured array with an event (bool) field and a time field")
    event = np.asarray(y[names[0]], dtype=bool)
    time = np.asarray(y[names[1]], dtype=float)
    if len(time) == 0:
        raise UserInputError("y is empty: no patients to fit")
    if not np.isfinite(time).all() or (time < 0).any():
        raise UserInputError("survival times must be finite and non-negative")
    if not event.any():
        raise UserInputError("all samples are censored: a survival model needs at least one event")
    return event, time


def step_values(event_times: np.ndarray, values: np.ndarray, times: np.ndarray, before: float = 0.0) -> np.ndarray:
    """Evaluate a right-continuous step function (``values`` from each ``event_times``) at ``times``.

    >>> step_values(np.array([1.0, 3.0]), np.array([0.2, 0.5]), np.array([0.5, 1.0, 2.0, 4.0])).tolist()
    [0.0, 0.2, 0.2, 0.5]
    """
    idx = np.searchsorted(event_times, times, side="right") - 1
    out = np.where(idx >= 0, values[np.clip(idx, 0, None)] if len(values) else before, before)
    return np.asarray(out, dtype=float)
