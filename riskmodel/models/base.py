"""The interface every model family shares, and helpers for survival targets.

A family is a scikit-learn estimator (constructor stores parameters; ``fit`` validates and returns
``self``; fitted attributes end in ``_``) that also offers ``predict_risk`` (higher = worse) and
``predict_survival(X, times)``, a DataFrame of S(t) with one row per patient and one column per
horizon. Horizons beyond the training follow-up are refused, never extrapolated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from riskmodel.errors import UserInputError
from riskmodel.metrics import harrell_c
from riskmodel.stats import check_survival_target

__all__ = ["SurvivalEstimator", "breslow_cumulative_hazard", "check_horizons", "proportional_survival"]


def check_horizons(times: Iterable[float] | float, max_time: float) -> np.ndarray:
    """Horizons as a float array; refuse negative ones and ones beyond the training follow-up."""
    t = np.atleast_1d(np.asarray(times, dtype=float))
    if t.size == 0 or not np.isfinite(t).all() or (t < 0).any():
        raise UserInputError(f"horizons must be finite numbers of months ≥ 0, got {list(t)}")
    beyond = t[t > max_time]
    if beyond.size:
        raise UserInputError(
            f"horizon {beyond[0]:g} months is beyond the training follow-up ({max_time:.1f} months); "
            "survival there would be extrapolated, so it is refused"
        )
    return t


def breslow_cumulative_hazard(
    time: np.ndarray, event: np.ndarray, log_hazard: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Breslow baseline cumulative hazard at each distinct event time, in O(n log n).

    H0(t) = sum over event times s <= t of d(s) / sum over the risk set at s of exp(eta).

    >>> import numpy as np
    >>> t, H = breslow_cumulative_hazard(np.array([1.0, 2.0, 3.0]), np.array([1, 0, 1]), np.zeros(3))
    >>> t.tolist(), [round(float(h), 6) for h in H]  # 1/3 at risk 3; then + 1/1
    ([1.0, 3.0], [0.333333, 1.333333])
    """
    order = np.argsort(time, kind="stable")
    ts, es = time[order], np.asarray(event, dtype=bool)[order]
    shift = float(np.max(log_hazard)) if len(log_hazard) else 0.0
    w = np.exp(log_hazard[order] - shift)
    at_risk = np.cumsum(w[::-1])[::-1]
    event_times, counts = np.unique(ts[es], return_counts=True)
    first = np.searchsorted(ts, event_times, side="left")
    increments = counts / at_risk[first] * np.exp(-shift)
    return event_times, np.cumsum(increments)


def proportional_survival(log_hazard: np.ndarray, cumhaz: np.ndarray) -> np.ndarray:
    """S(t | x) = exp(−H0(t)·exp(η)), computed as exp(−exp(η + log H0(t))).

    The log form never multiplies an overflowed exp(η) by H0 = 0 (which gives NaN): an extreme
    η gives S = 0 where H0 > 0 and S = 1 where H0 = 0.

    >>> proportional_survival(np.array([0.0, 800.0]), np.array([0.0, 0.5])).round(3).tolist()
    [[1.0, 0.607], [1.0, 0.0]]
    """
    with np.errstate(divide="ignore", over="ignore"):
        return np.asarray(np.exp(-np.exp(np.add.outer(log_hazard, np.log(cumhaz)))), dtype=float)


class SurvivalEstimator(BaseEstimator):  # type: ignore[misc]
    """Shared behaviour: horizon checks, the DataFrame of S(t), and Harrell's C as ``score``."""

    risk_is_log_hazard = False  # True where predict_risk is a log hazard ratio (Cox, boosted Cox)

    def _fit_target(self, y: Any) -> tuple[np.ndarray, np.ndarray]:
        event, time = check_survival_target(y)
        self.max_time_ = float(time.max())
        self.n_events_ = int(event.sum())
        return event, time

    def predict_risk(self, X: Any) -> np.ndarray:  # pragma: no cover - every family overrides
        raise NotImplementedError

    def _survival_matrix(self, X: Any, times: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def predict_survival(self, X: Any, times: Iterable[float] | float) -> pd.DataFrame:
        """S(t) for each patient (rows) at each horizon in months (columns)."""
        check_is_fitted(self, "max_time_")
        t = check_horizons(times, self.max_time_)
        surv = self._survival_matrix(X, t)
        index = X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(len(surv))
        return pd.DataFrame(surv, index=index, columns=[float(v) for v in t])

    def score(self, X: Any, y: Any) -> float:
        """Harrell's C-index of ``predict_risk`` (so scikit-learn model selection can use it)."""
        event, time = check_survival_target(y)
        return harrell_c(event, time, self.predict_risk(X))
