"""Survival targets: the one structured-array layout every floor above uses, and step functions.

A target is scikit-survival's layout: a structured array with a boolean ``event`` field and a
float ``time`` field, one row per patient. Build one with :func:`survival_array`; never by hand.

A competing-risks target (:func:`competing_array`) adds a third field, ``cause``: 0 censored, 1 the
event of interest, 2 a competing event. Its ``event`` field is ``cause == 1``, so code that reads
only ``event`` and ``time`` sees the cause-specific view (competing events censored); code that
models cumulative incidence reads ``cause`` through :func:`check_competing_target`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from riskmodel.errors import UserInputError

__all__ = [
    "COMPETING_DTYPE",
    "SURVIVAL_DTYPE",
    "check_competing_target",
    "check_survival_target",
    "competing_array",
    "is_competing",
    "step_values",
    "survival_array",
]

SURVIVAL_DTYPE = np.dtype([("event", "?"), ("time", "<f8")])  # scikit-survival's layout
COMPETING_DTYPE = np.dtype([("event", "?"), ("time", "<f8"), ("cause", "i1")])  # event == (cause == 1)


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


def competing_array(cause: Any, time: Any) -> np.ndarray:
    """A competing-risks target from a cause (0 censored, 1 event of interest, 2 competing) and a time.

    >>> competing_array([1, 2, 0], [2.0, 3.0, 5.0]).tolist()
    [(True, 2.0, 1), (False, 3.0, 2), (False, 5.0, 0)]
    """
    c = np.asarray(cause).ravel()
    t = np.asarray(time, dtype=float).ravel()
    if c.size != t.size:
        raise ValueError(f"cause and time differ in length: {c.size} and {t.size}")
    if not np.isin(c, (0, 1, 2)).all():
        raise ValueError("cause must be 0 (censored), 1 (event of interest) or 2 (competing event)")
    y = np.empty(t.size, dtype=COMPETING_DTYPE)
    y["event"], y["time"], y["cause"] = c == 1, t, c
    return y


def is_competing(y: Any) -> bool:
    """True for a competing-risks target (it has a ``cause`` field)."""
    names = getattr(getattr(y, "dtype", None), "names", None)
    return names is not None and "cause" in names


def check_competing_target(y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (cause: int 0/1/2, time: float) from a competing-risks target, checking it.

    >>> check_competing_target(competing_array([1, 2, 0], [2.0, 3.0, 5.0]))[0].tolist()
    [1, 2, 0]
    """
    if not is_competing(y):
        raise UserInputError("y must be a competing-risks target with event, time and cause fields")
    cause = np.asarray(y["cause"], dtype=int)
    time = np.asarray(y["time"], dtype=float)
    if len(time) == 0:
        raise UserInputError("y is empty: no patients to fit")
    if not np.isin(cause, (0, 1, 2)).all():
        raise UserInputError("cause must be 0 (censored), 1 (event of interest) or 2 (competing event)")
    if not np.isfinite(time).all() or (time < 0).any():
        raise UserInputError("survival times must be finite and non-negative")
    if not (cause == 1).any():
        raise UserInputError("no event of interest: a competing-risks model needs at least one")
    return cause, time


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
