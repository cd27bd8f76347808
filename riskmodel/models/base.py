"""The interface every model family shares, and helpers for survival targets.

A family is a scikit-learn estimator (constructor stores parameters; ``fit`` validates and returns
``self``; fitted attributes end in ``_``) that also offers ``predict_risk`` (higher = worse) and
``predict_survival(X, times)``, a DataFrame of S(t) with one row per patient and one column per
horizon. Horizons beyond the training follow-up are refused, never extrapolated.

A family whose ``handles_missing`` is True takes NaN in X as a missing value, in ``fit`` and in
every prediction; the others refuse it, naming the family, rather than impute it silently.

A family whose ``all_levels`` is True (the tree families) gets a declared categorical covariate
of three or more levels as one 0/1 column per level, its reference level too: a tree can then
split any one level from the others in one split, where a dropped reference level must be
isolated through all the other columns. A linear predictor (Cox) needs the reference dropped, or
its columns sum to 1.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from riskmodel.core.yamlio import validation_lines
from riskmodel.errors import ModelFileError, UserInputError
from riskmodel.metrics import harrell_c
from riskmodel.stats import check_survival_target, step_values

__all__ = [
    "MAX_STATE_BYTES",
    "StateFile",
    "SurvivalEstimator",
    "breslow_cumulative_hazard",
    "breslow_risk_and_survival",
    "check_baseline",
    "check_horizons",
    "efron_cumulative_hazard",
    "estimator_params",
    "proportional_survival",
    "read_json",
    "write_json",
]


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


def efron_cumulative_hazard(
    time: np.ndarray, event: np.ndarray, log_hazard: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Efron's baseline cumulative hazard at each distinct event time: the baseline that goes with
    an Efron-ties Cox fit (Efron 1977, *JASA* 72:557; R's ``survfit.coxph`` and riskRegression's
    ``predictCox`` for ``ties = "efron"``). With d tied events at t, risk-set weight sum S0 and the
    tied events' weight sum S_d (weights exp(η)):

        ΔH0(t) = Σ_{l=0}^{d−1} 1 / (S0 − (l/d)·S_d),

    which is Breslow's d / S0 without ties.

    >>> import numpy as np
    >>> t, H = efron_cumulative_hazard(np.array([1.0, 1.0, 2.0]), np.array([1, 1, 1]), np.zeros(3))
    >>> t.tolist(), [round(float(h), 6) for h in H]  # 1/3 + 1/(3 - 1), then + 1/1
    ([1.0, 2.0], [0.833333, 1.833333])
    """
    order = np.argsort(time, kind="stable")
    ts, es = np.asarray(time, float)[order], np.asarray(event, dtype=bool)[order]
    shift = float(np.max(log_hazard)) if len(log_hazard) else 0.0
    w = np.exp(np.asarray(log_hazard, float)[order] - shift)
    at_risk = np.cumsum(w[::-1])[::-1]
    event_times, counts = np.unique(ts[es], return_counts=True)
    s0 = at_risk[np.searchsorted(ts, event_times, side="left")]
    group = np.repeat(np.arange(event_times.size), counts)
    tied = np.bincount(group, w[es], event_times.size)  # events sorted by time: es picks them in order
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    frac = (np.arange(group.size) - first[group]) / counts[group]
    terms = 1.0 / (s0[group] - frac * tied[group])
    increments = np.bincount(group, terms, event_times.size) * np.exp(-shift)
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


def breslow_risk_and_survival(estimator: Any, X: Any, times: Iterable[float] | float) -> tuple[np.ndarray, np.ndarray]:
    """A proportional-hazards family's ``predict_risk(X)`` computed once, and S(t) from it and its
    Breslow baseline (``event_times_``, ``baseline_cumhaz_``) by :func:`proportional_survival`: the
    numbers its ``predict_risk`` and ``predict_survival`` give, one linear predictor for both."""
    check_is_fitted(estimator, "max_time_")
    t = check_horizons(times, estimator.max_time_)
    risk = np.asarray(estimator.predict_risk(X), dtype=float)
    cumhaz = step_values(estimator.event_times_, estimator.baseline_cumhaz_, t)
    return risk, proportional_survival(risk, cumhaz)


def _feature_names(X: Any) -> np.ndarray | None:
    """A DataFrame's column names when all are strings (scikit-learn's rule), else None."""
    columns = getattr(X, "columns", None)
    if columns is None or not all(isinstance(c, str) for c in columns):
        return None
    return np.asarray(columns, dtype=object)


def _where(bad: np.ndarray, names: Iterable[str] | None) -> str:
    """'3 patient(s), in age_years, d90_gy': who holds the values ``bad`` marks, for a message."""
    labels = [str(n) for n in names] if names is not None else [f"column {j}" for j in range(bad.shape[1])]
    columns = [labels[j] for j in np.flatnonzero(bad.any(axis=0))]
    shown = ", ".join(columns[:5]) + (f" and {len(columns) - 5} more" if len(columns) > 5 else "")
    return f"{int(bad.any(axis=1).sum())} patient(s), in {shown}"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """A model file's JSON: numpy arrays as lists."""

    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    path.write_text(json.dumps(payload, indent=1, default=plain, allow_nan=True), encoding="utf-8")


MAX_STATE_BYTES = 256 << 20  # a model's JSON files are kB to a few MB; a forest's bin edges the most


class StateFile(BaseModel):
    """The schema of a family's JSON file: strict types, no unknown key, finite numbers.

    What every family writes (:meth:`SurvivalEstimator._common_state`); each family's file adds its
    own fields. ``feature_means`` may hold NaN: a feature never observed in training has no mean.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    params: dict[str, str | bool | int | FiniteFloat | list[str] | None]
    max_time: FiniteFloat = Field(gt=0)
    n_events: int = Field(ge=0)
    n_features_in: int = Field(ge=1, le=1_000_000)
    feature_names_in: list[str] | None = None
    feature_means: list[float | None] | None = None


def check_baseline(event_times: list[float], cumhaz: list[float]) -> None:
    """A Breslow baseline as a model file holds it: matching lengths, times increasing, hazard
    non-negative and non-decreasing (a pydantic validator's ``ValueError`` otherwise)."""
    if len(event_times) != len(cumhaz):
        raise ValueError("event_times and baseline_cumhaz must be of the same length")
    if any(b <= a for a, b in itertools.pairwise(event_times)):
        raise ValueError("event_times must increase")
    if any(h < 0 for h in cumhaz) or any(b < a for a, b in itertools.pairwise(cumhaz)):
        raise ValueError("baseline_cumhaz must be non-negative and non-decreasing")


def _finite_problem(value: Any, where: str, skip: frozenset[str]) -> str | None:
    """The first non-finite number inside ``value`` (walked without recursion), or None."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"{at}: {item} is not a finite number"
        if isinstance(item, dict):
            stack.extend((v, f"{at}.{k}" if at else str(k)) for k, v in item.items() if not (at == "" and k in skip))
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(item))
    return None


def read_json(
    path: Path, schema: type[BaseModel] | None = None, *, may_be_nan: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """A model file's JSON object, refused (:class:`ModelFileError`, one line) when it
    is unreadable, breaks ``schema``, or holds NaN or an infinity outside the top-level keys
    ``may_be_nan`` (descriptive tables: a penalised Cox model has no standard errors)."""
    if path.is_symlink() or not path.is_file():
        raise ModelFileError(f"{path}: missing or not a regular file")
    if path.stat().st_size > MAX_STATE_BYTES:
        raise ModelFileError(f"{path}: over {MAX_STATE_BYTES >> 20} MB, far more than riskmodel writes")
    data = path.read_bytes()
    if schema is not None:
        try:
            out = schema.model_validate_json(data).model_dump()
        except ValidationError as exc:
            # one line: a rewritten file can break a rule in every element of an array
            lines = validation_lines(path, exc)
            more = f" (and {len(lines) - 1} more problem{'s' if len(lines) > 2 else ''})" if len(lines) > 1 else ""
            raise ModelFileError(f"{lines[0][:300]}{more}; refusing to load") from None
    else:
        try:
            out = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ModelFileError(f"{path}: not readable JSON ({type(exc).__name__})") from None
        if not isinstance(out, dict):
            raise ModelFileError(f"{path}: must be a JSON object, not a {type(out).__name__}")
    problem = _finite_problem(out, "", may_be_nan | {"feature_means"})
    if problem is not None:
        raise ModelFileError(f"{path}: {problem}; refusing to load")
    return dict(out)


def estimator_params(cls: type[SurvivalEstimator], params: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """A model file's estimator parameters, refused when it names one the family does not have."""
    unknown = sorted(set(params) - set(cls().get_params()))
    if unknown:
        raise ModelFileError(f"{path}: params {', '.join(unknown)}: not parameters of {cls.__name__}")
    return dict(params)


# each family's parameter names, by class (SurvivalEstimator._get_param_names)
_PARAM_NAMES: dict[type, tuple[str, ...]] = {}


class SurvivalEstimator(BaseEstimator):  # type: ignore[misc]
    """Shared behaviour: horizon checks, the DataFrame of S(t), Harrell's C as ``score``, and the
    family's files in a pickle-free model folder (:meth:`save_state`, :meth:`load_state`).

    Every family's ``fit`` starts with :meth:`_begin_fit`, which forgets the previous fit and sets
    what all families share: ``max_time_``, ``n_events_``, ``n_features_in_``,
    ``feature_names_in_`` (DataFrame input only, as in scikit-learn) and ``feature_means_`` (the
    training mean of each feature: the reference patient of :func:`riskmodel.explain.explain`).
    """

    risk_is_log_hazard = False  # True where predict_risk is a log hazard ratio (Cox, boosted Cox)
    all_levels: ClassVar[bool] = False  # True: a 0/1 column for every categorical level (module docstring)
    FILES: ClassVar[frozenset[str]] = frozenset()  # the file names this family writes into a model folder
    # private attributes derived from a fit; forgotten with the fitted ones when fit starts again
    _CACHES: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """scikit-learn's parameter names (read from ``__init__``'s signature), read once per class:
        ``get_params`` runs on every fit, clone and component, hundreds of times a bootstrap."""
        names = _PARAM_NAMES.get(cls)
        if names is None:
            names = _PARAM_NAMES[cls] = tuple(super()._get_param_names())
        return list(names)

    @classmethod
    def ignored_params(cls, params: Mapping[str, Any]) -> dict[str, str]:
        """The parameters that ``params`` (e.g. a backend) leave unused, each with the reason.

        ``fit`` refuses a non-default value of one of them, and tuning does not search them.
        """
        return {}

    def _begin_fit(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Forget any earlier fit, check the target, and record the shared fitted attributes.

        Returns ``(X as a float matrix, event, time)``.
        """
        fitted = [k for k in vars(self) if (k.endswith("_") and not k.startswith("__")) or k in self._CACHES]
        for name in fitted:
            delattr(self, name)
        defaults = type(self)().get_params()
        for name, why in self.ignored_params(self.get_params()).items():
            value = getattr(self, name)
            if value != defaults[name]:
                raise UserInputError(f"{name}={value!r} {why}; leave it at its default ({defaults[name]!r})")
        event, time = self._fit_target(y)
        names = _feature_names(X)
        if names is not None:
            self.feature_names_in_ = names
        Xa = np.asarray(X, dtype=float)
        if Xa.ndim != 2 or len(Xa) != len(time):
            raise UserInputError(f"X must be a 2-D matrix with one row per patient ({len(time)}), got {Xa.shape}")
        self.check_values(Xa, names)
        self.n_features_in_ = Xa.shape[1]
        with warnings.catch_warnings():  # a column with no observed value has no mean: NaN, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            self.feature_means_ = np.nanmean(Xa, axis=0)
        return Xa, event, time

    @property
    def handles_missing(self) -> bool:
        """True where ``fit`` and every prediction take NaN in X as a missing value; the others
        refuse NaN. A property, because it may depend on a parameter (boosting's backend)."""
        return False

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags, with ``allow_nan`` read from :attr:`handles_missing`."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.handles_missing
        return tags

    def check_values(self, X: Any, names: Iterable[str] | None = None) -> np.ndarray:
        """``X`` as a float matrix; refused when it holds ±inf, or NaN in a family that does not
        handle missing values (:attr:`handles_missing`). ``names`` label the columns in the message."""
        Xa = np.asarray(X, dtype=float)
        backend = getattr(self, "backend", None)
        family = type(self).__name__ + (f" (backend {backend!r})" if backend else "")
        if np.isinf(Xa).any():
            raise UserInputError(f"{family} needs finite features, but X has ±inf for {_where(np.isinf(Xa), names)}")
        if not self.handles_missing and np.isnan(Xa).any():
            raise UserInputError(
                f"{family} does not handle missing values, but X has NaN for {_where(np.isnan(Xa), names)}; "
                "impute them or drop those patients first, or use a family that handles missing values"
            )
        return Xa

    def _check_features(self, X: Any) -> np.ndarray:
        """X as a float matrix, refused unless its features are the ones seen in fit (count, and
        names when both have them: the same columns in another order would give wrong risks)."""
        fitted = getattr(self, "feature_names_in_", None)
        names = _feature_names(X)
        if fitted is not None and names is not None and list(names) != list(fitted):
            raise UserInputError(
                f"X has feature names {list(names)}, but the model was fitted with {list(fitted)} (in that order)"
            )
        Xa = np.asarray(X, dtype=float)
        if Xa.ndim != 2 or Xa.shape[1] != self.n_features_in_:
            got = Xa.shape[1] if Xa.ndim == 2 else f"a {Xa.ndim}-D array"
            raise UserInputError(f"expected {self.n_features_in_} features, got {got}")
        return self.check_values(Xa, names if names is not None else fitted)

    def _common_state(self) -> dict[str, Any]:
        names = getattr(self, "feature_names_in_", None)
        return {
            "params": self.get_params(),
            "max_time": self.max_time_,
            "n_events": self.n_events_,
            "n_features_in": self.n_features_in_,
            "feature_names_in": None if names is None else [str(n) for n in names],
            "feature_means": self.feature_means_,
        }

    def _restore_common(self, state: dict[str, Any]) -> None:
        self.max_time_ = float(state["max_time"])
        self.n_events_ = int(state["n_events"])
        self.n_features_in_ = int(state["n_features_in"])
        if state.get("feature_names_in") is not None:
            self.feature_names_in_ = np.asarray(state["feature_names_in"], dtype=object)
        if state.get("feature_means") is not None:  # absent from older model files
            self.feature_means_ = np.asarray(state["feature_means"], dtype=float)

    def save_state(self, folder: Path) -> None:  # pragma: no cover - every family overrides
        """Write the fitted state into ``folder`` as data files named in :attr:`FILES` (no pickle)."""
        raise NotImplementedError

    @classmethod
    def load_state(cls, folder: Path) -> SurvivalEstimator:  # pragma: no cover - every family overrides
        """The fitted estimator from the files :meth:`save_state` wrote (verified by the caller)."""
        raise NotImplementedError

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

    def predict_risk_and_survival(self, X: Any, times: Iterable[float] | float) -> tuple[np.ndarray, np.ndarray]:
        """``predict_risk(X)`` and the values of ``predict_survival(X, times)`` (n × horizons) in one
        call, the same numbers: a family may share the work between them (one pass over the trees,
        one linear predictor), as batch scoring asks for both."""
        check_is_fitted(self, "max_time_")
        t = check_horizons(times, self.max_time_)
        return np.asarray(self.predict_risk(X), dtype=float), np.asarray(self._survival_matrix(X, t), dtype=float)

    def score(self, X: Any, y: Any) -> float:
        """Harrell's C-index of ``predict_risk`` (so scikit-learn model selection can use it)."""
        event, time = check_survival_target(y)
        return harrell_c(event, time, self.predict_risk(X))
