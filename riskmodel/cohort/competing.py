"""The competing-event rule: which event competes with an endpoint, and where a patient stands.

An endpoint declares its competing events in one of two ways (see
:class:`~riskmodel.cohort.declaration.EndpointDeclaration`): codes of its own status column
(``competing_codes``), or another endpoint whose event competes with it (``competing_endpoint``,
the usual layout of a clinical export where local failure and death are separate columns). The
bundled study's local control (LC) has death (the OS endpoint) as its competing event.

With a competing endpoint, a patient censored for the endpoint whose competing event comes later
(died after the last local assessment) needs a rule, ``competing_after_censoring``:

* ``competing``: a competing event at the time of the competing event. This assumes that no event
  of interest went unseen between the last assessment and that time (the bundled study's rule);
* ``censored``: censored at the endpoint's own time, the conservative reading.

A patient whose endpoint time is *after* the competing event's time has follow-up after death,
which is a data error (:func:`after_competing_event`). The competing-risks view is the state
(0 censored, 1 event, 2 competing) and its time, as in the cumulative incidence of Kalbfleisch &
Prentice (The Statistical Analysis of Failure Time Data, 2nd ed., 2002, ch. 8) and the
subdistribution of Fine & Gray (JASA 1999); the cause-specific view (``<name>_event``,
``<name>_months``) is left as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "AFTER_CENSORING_RULES",
    "CENSORED",
    "COMPETING",
    "EVENT",
    "AfterCensoring",
    "CompetingRule",
    "after_competing_event",
    "competing_view",
]

AfterCensoring = Literal["competing", "censored"]
AFTER_CENSORING_RULES: tuple[AfterCensoring, ...] = ("competing", "censored")
CENSORED, EVENT, COMPETING = 0, 1, 2
# times compared in months after a unit conversion: equal within rounding
_TOLERANCE_MONTHS = 1e-9


@dataclass(frozen=True)
class CompetingRule:
    """How an endpoint's competing endpoint was applied to a cohort, and the patients it moved.

    ``affected``: patients censored for ``endpoint`` whose competing event came after that
    censoring time (counts only: shareable).

    >>> print(CompetingRule("lc", "os", "competing", 9))
    LC: 9 patients had the OS event after their last LC assessment; counted as a competing event at the \
OS event time (competing_after_censoring: competing)
    """

    endpoint: str
    competing_endpoint: str
    after_censoring: AfterCensoring
    affected: int

    def __str__(self) -> str:
        ep, other = self.endpoint.upper(), self.competing_endpoint.upper()
        who = "1 patient" if self.affected == 1 else f"{self.affected} patients"
        head = f"{ep}: {who} had the {other} event after their last {ep} assessment; "
        if self.after_censoring == "competing":
            return (
                head + f"counted as a competing event at the {other} event time (competing_after_censoring: competing)"
            )
        return head + f"censored at their last {ep} assessment (competing_after_censoring: censored)"


def after_competing_event(time: np.ndarray, competing_time: np.ndarray, competing_event: np.ndarray) -> np.ndarray:
    """Rows whose endpoint time is after the competing event (follow-up after death): a data error.

    >>> after_competing_event(np.array([5.0, 7.0, 9.0]), np.array([6.0, 7.0, 8.0]), np.array([1, 1, 0])).tolist()
    [False, False, False]
    >>> after_competing_event(np.array([6.5]), np.array([6.0]), np.array([1])).tolist()
    [True]
    """
    t, ct = np.asarray(time, float), np.asarray(competing_time, float)
    after: np.ndarray = (np.asarray(competing_event) == 1) & (t > ct + _TOLERANCE_MONTHS * np.maximum(1.0, np.abs(ct)))
    return after


def competing_view(
    event_type: np.ndarray,
    time: np.ndarray,
    competing_event: np.ndarray,
    competing_time: np.ndarray,
    after_censoring: AfterCensoring = "competing",
) -> tuple[np.ndarray, np.ndarray, int]:
    """The competing-risks state and time of an endpoint whose competing event is another endpoint's.

    ``event_type``: the endpoint's own state (0 censored, 1 event, 2 a competing code of its own);
    ``competing_event``: 1 where the competing endpoint's event happened, at ``competing_time``.
    Returns (state, time, affected). An event of interest stays an event at its own time; a patient
    censored for the endpoint whose competing event is at (or, with ``competing``, after) the
    censoring time becomes a competing event at the competing event's time; ``affected`` counts the
    patients whose competing event came after their censoring time, under either rule.

    By hand: censored at 6 and died at 6 is competing at 6; censored at 5 and died at 8 is competing
    at 8 (or censored at 5); an event at 4 is an event at 4; censored at 9 and alive stays censored.

    >>> state, t, n = competing_view([0, 0, 1, 0], [6.0, 5.0, 4.0, 9.0], [1, 1, 1, 0], [6.0, 8.0, 10.0, 12.0])
    >>> state.tolist(), t.tolist(), n
    ([2, 2, 1, 0], [6.0, 8.0, 4.0, 9.0], 1)
    >>> state, t, n = competing_view([0, 0, 1, 0], [6.0, 5.0, 4.0, 9.0], [1, 1, 1, 0], [6.0, 8.0, 10.0, 12.0],
    ...                              after_censoring="censored")
    >>> state.tolist(), t.tolist(), n
    ([2, 0, 1, 0], [6.0, 5.0, 4.0, 9.0], 1)
    """
    if after_censoring not in AFTER_CENSORING_RULES:
        raise ValueError(f"competing_after_censoring must be competing or censored, not {after_censoring!r}")
    state = np.asarray(event_type, dtype=int).copy()
    t = np.asarray(time, dtype=float).copy()
    died = np.asarray(competing_event) == 1
    ct = np.asarray(competing_time, dtype=float)
    censored = (state == CENSORED) & died
    later = censored & (ct > t + _TOLERANCE_MONTHS * np.maximum(1.0, np.abs(t)))
    at_censoring = censored & ~later
    state[at_censoring] = COMPETING
    if after_censoring == "competing":
        state[later] = COMPETING
        t[later] = ct[later]
    return state, t, int(later.sum())
