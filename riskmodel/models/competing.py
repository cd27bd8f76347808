"""Competing-risk models: cumulative incidence (CIF) from one survival model per cause.

Each family here fits its survival family once per cause (cause k's events as events, the other
cause's events and censoring as censored: the cause-specific hazards) and combines the two
cumulative hazards by the Aalen-Johansen (product-limit) formula (Aalen & Johansen 1978; Putter,
Fiocco & Geskus 2007, *Stat Med* 26:2389, eq. 7; Ozenne et al. 2017, *R J* 9:2, riskRegression):

    CIF_k(t | x) = Σ_{s ≤ t} S(s− | x) · ΔH_k(s | x),   S(s | x) = Π_{u ≤ s} (1 − ΔH_1(u | x) − ΔH_2(u | x)),

with S the all-cause event-free probability and the sum over the jump times of either hazard.
This is riskRegression's default (``predictRisk`` of a ``CSC`` fit, ``product.limit = TRUE``).

**The contract by construction.** Cause-specific increments ΔH_k are ≥ 0 (a Breslow baseline
times exp(η), or a Nelson-Aalen estimate per leaf). Where the all-cause jump q = ΔH_1 + ΔH_2 at a
time exceeds 1 (possible with an extreme linear predictor or a tiny risk set, where a plain
product-limit would make S negative and riskRegression warns), the jump is capped at 1 and shared
between the causes in proportion (ΔH_k / q): S drops to 0 and the CIFs reach 1 − S exactly. Every
other jump is used as it is, so the result equals riskRegression's wherever riskRegression's is a
valid CIF. Then each CIF increment S(s−)·ΔH_k is ≥ 0 (CIF non-decreasing), S is a product of
factors in [0, 1] (non-increasing, in [0, 1]), and CIF_1 + CIF_2 = 1 − S ≤ 1 telescopically
(S(s−) − S(s) = S(s−)·q): nothing is clipped afterwards.

The concept's home is :class:`CompetingRiskEstimator`; the tree families are in
:mod:`riskmodel.models.competing_trees`; each survival family's counterpart is registered in
:mod:`riskmodel.models.registry` (``FamilySpec.competing``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, FiniteFloat
from sklearn.utils.validation import check_is_fitted

from riskmodel.errors import ModelFileError, UserInputError
from riskmodel.metrics import harrell_c
from riskmodel.models.base import (
    StateFile,
    SurvivalEstimator,
    check_horizons,
    efron_cumulative_hazard,
    estimator_params,
    read_json,
    write_json,
)
from riskmodel.models.cox import CoxPH
from riskmodel.stats import check_competing_target, is_competing, survival_array

__all__ = [
    "CAUSES",
    "BreslowCauses",
    "CauseSpecificCox",
    "CompetingFile",
    "CompetingRiskEstimator",
    "aalen_johansen_cif",
    "cause_files",
    "efron_cumulative_hazard",
]

CAUSES = (1, 2)  # 1 the event of interest, 2 the competing event (riskmodel.stats.competing_array)
_CELLS = 4_000_000  # patients × jump times per block of a prediction (about 32 MB an array)


def cause_files(component: type[SurvivalEstimator], state_file: str = "competing.json") -> frozenset[str]:
    """A competing family's model-folder files: its state file and ``cause_<k>/<file>`` for each
    file the component family may write.

    >>> sorted(cause_files(CoxPH))
    ['cause_1/cox.json', 'cause_2/cox.json', 'competing.json']
    """
    return frozenset({state_file} | {f"cause_{k}/{name}" for k in CAUSES for name in component.FILES})


def aalen_johansen_cif(
    jump_times: Sequence[np.ndarray], jumps: Sequence[np.ndarray], horizons: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(CIF of each cause: causes × patients × horizons, event-free S: patients × horizons).

    ``jump_times[k]`` are the increasing times at which cause k's cumulative hazard may jump and
    ``jumps[k]`` its increments there (patients × times, ≥ 0, +inf allowed). The product-limit
    Aalen-Johansen combination of the module docstring, with an all-cause jump above 1 capped.

    Two patients, one cause each at t = 1 with ΔH = 0.5 and a competing ΔH = 0.25 at t = 2:
    CIF_1(2) = 0.5, S(2) = 0.5·0.75, CIF_2(2) = 0.5·0.25.

    >>> cif, s = aalen_johansen_cif([np.array([1.0]), np.array([2.0])], [np.full((1, 1), 0.5), np.full((1, 1), 0.25)],
    ...                             np.array([0.5, 2.0]))
    >>> cif[:, 0].tolist(), s[0].tolist()
    ([[0.0, 0.5], [0.0, 0.125]], [1.0, 0.375])
    """
    n = jumps[0].shape[0]
    until = float(np.max(horizons))
    grid = np.unique(np.concatenate([t[t <= until] for t in jump_times]))
    dh = np.zeros((len(jumps), n, grid.size))
    for k, (t, d) in enumerate(zip(jump_times, jumps, strict=True)):
        keep = t <= until
        dh[k][:, np.searchsorted(grid, t[keep])] = d[:, keep]
    q = dh.sum(axis=0)
    over = q > 1
    if over.any() or np.isinf(dh).any():
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(over, dh / q, dh)
        infinite = np.isinf(dh)
        if infinite.any():  # an infinite hazard takes the whole jump, shared among the infinite ones
            share = np.where(np.isinf(q), infinite / np.maximum(infinite.sum(axis=0), 1), share)
        after = np.cumprod(np.where(over, 0.0, 1.0 - q), axis=1)
    else:  # the usual case, without a capped jump: the same values without the temporaries
        share = dh
        after = np.cumprod(1.0 - q, axis=1)
    before = np.concatenate([np.ones((n, 1)), after[:, :-1]], axis=1)
    cif = np.cumsum(before[None] * share, axis=2)
    idx = np.searchsorted(grid, horizons, side="right") - 1
    seen = idx >= 0
    cols = np.clip(idx, 0, None)
    cif_at = np.where(seen[None, None, :], cif[:, :, cols] if grid.size else 0.0, 0.0)
    surv_at = np.where(seen[None, :], after[:, cols] if grid.size else 1.0, 1.0)
    return cif_at, surv_at


class CompetingFile(StateFile):
    """``competing.json``: the shared fitted state, the risk horizon and which causes have a model."""

    risk_horizon: FiniteFloat = Field(ge=0)
    n_competing: int = Field(ge=0)
    fitted_causes: list[Literal[1, 2]]


class CompetingRiskEstimator(SurvivalEstimator):
    """A competing-risk model: the CIF of cause 1 (the event of interest) and cause 2 (competing).

    Subclasses name their survival family (:attr:`component`) and take its parameters plus
    ``risk_horizon`` (months; None: the median time of the training events of cause 1, kept as
    ``risk_horizon_``). ``fit`` takes a competing-risks target
    (:func:`riskmodel.stats.competing_array`) and fits one component per cause (``models_``: None
    for a cause with no event in training, whose hazard is then 0).

    * :meth:`cif_matrix` and :meth:`predict_cif`: CIF_1 and CIF_2 (module docstring);
    * :meth:`predict_survival`: the **all-cause event-free** probability 1 − CIF_1 − CIF_2 (free of
      either event), not the cause-specific "survival" exp(−H_k) that ignores the other cause;
    * :meth:`predict_risk`: CIF_1 at ``risk_horizon_`` (higher = worse, as in every family).

    Model folder: ``competing.json`` and each component's own files in ``cause_1/`` and
    ``cause_2/``, read back by the component's ``load_state`` (so its checks of untrusted files
    run as for the survival family).
    """

    component: ClassVar[type[SurvivalEstimator]] = SurvivalEstimator  # the survival family per cause
    STATE_FILE: ClassVar[str] = "competing.json"

    def _component_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.get_params().items() if k != "risk_horizon"}

    def make_component(self) -> SurvivalEstimator:
        """A fresh, unfitted survival model with this model's settings (one is fitted per cause)."""
        return self.component(**self._component_params())

    @property
    def handles_missing(self) -> bool:
        """As the component family (with its settings)."""
        return bool(self.make_component().handles_missing)

    @classmethod
    def ignored_params(cls, params: Any) -> dict[str, str]:
        """As the component family."""
        return cls.component.ignored_params({k: v for k, v in params.items() if k != "risk_horizon"})

    def _fit_target(self, y: Any) -> tuple[np.ndarray, np.ndarray]:
        if not is_competing(y):
            raise UserInputError(
                f"{type(self).__name__} needs a competing-risks target (cause 0/1/2: censored, event of "
                "interest, competing event; riskmodel.stats.competing_array), got a survival target (event, time)"
            )
        cause, time = check_competing_target(y)
        self.max_time_ = float(time.max())
        self.n_events_ = int((cause == 1).sum())
        self.n_competing_ = int((cause == 2).sum())
        return cause, time  # _begin_fit passes the cause through in the event's place

    def _begin_cif_fit(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """:meth:`_begin_fit` of a CIF model, after checking ``risk_horizon``; returns ``(X as a
        float matrix, cause, time, the risk horizon)``: ``risk_horizon``, or else the median time of
        the events of interest, within the training follow-up."""
        rh: Any = self.risk_horizon
        number = isinstance(rh, numbers.Real) and not isinstance(rh, bool)
        if rh is not None and not (number and math.isfinite(float(rh)) and float(rh) > 0):
            raise UserInputError(f"risk_horizon must be a number of months > 0 or None, got {rh!r}")
        Xa, cause, time = self._begin_fit(X, y)
        horizon = float(np.median(time[cause == 1])) if rh is None else float(rh)
        if horizon > self.max_time_:
            raise UserInputError(
                f"risk_horizon {horizon:g} months is beyond the training follow-up ({self.max_time_:.1f} months)"
            )
        return Xa, cause, time, horizon

    def fit(self, X: Any, y: Any) -> CompetingRiskEstimator:
        """Fit the component family once per cause (the other cause censored); returns ``self``."""
        Xa, cause, time, horizon = self._begin_cif_fit(X, y)
        data = X if isinstance(X, pd.DataFrame) else Xa
        self.models_ = [
            self.make_component().fit(data, survival_array(cause == k, time)) if (cause == k).any() else None
            for k in CAUSES
        ]
        self.risk_horizon_ = horizon
        return self

    def _jump_times(self, model: SurvivalEstimator) -> np.ndarray:  # pragma: no cover - every family overrides
        """The times at which the component's cumulative hazard may jump."""
        raise NotImplementedError

    def _jumps(self, model: SurvivalEstimator, X: Any, count: int) -> np.ndarray:  # pragma: no cover
        """The component's cumulative-hazard increments at the first ``count`` of :meth:`_jump_times`
        (patients × count, ≥ 0): the later ones cannot change a CIF up to the last horizon asked."""
        raise NotImplementedError

    def _jump_count(self, model: SurvivalEstimator, until: float) -> int:
        """How many of the component's jump times are ≤ ``until``."""
        return int(np.searchsorted(self._jump_times(model), until, side="right"))

    def _incidence(self, X: Any, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(CIFs: 2 × n × times, event-free: n × times), in blocks of patients that keep memory bounded."""
        check_is_fitted(self, "models_")
        Xa = self._check_features(X)
        until = float(times.max()) if times.size else -math.inf
        # each cause's jump times up to the last horizon (increasing: a prefix)
        jt = [self._jump_times(m)[: self._jump_count(m, until)] if m is not None else np.empty(0) for m in self.models_]
        block = max(1, _CELLS // max(sum(t.size for t in jt), 1))
        cifs, survs = [], []
        for start in range(0, len(Xa), block):
            part = X.iloc[start : start + block] if isinstance(X, pd.DataFrame) else Xa[start : start + block]
            rows = len(part)
            dh = [
                self._jumps(m, part, t.size) if m is not None else np.empty((rows, 0))
                for m, t in zip(self.models_, jt, strict=True)
            ]
            cif, surv = aalen_johansen_cif(jt, dh, times)
            cifs.append(cif)
            survs.append(surv)
        if not cifs:
            return np.zeros((len(CAUSES), 0, times.size)), np.zeros((0, times.size))
        return np.concatenate(cifs, axis=1), np.concatenate(survs, axis=0)

    def cif_matrix(self, X: Any, times: Iterable[float] | float) -> np.ndarray:
        """CIF of cause 1 and cause 2 at each horizon in months: an array of shape (2, patients, horizons)."""
        check_is_fitted(self, "models_")
        return self._incidence(X, check_horizons(times, self.max_time_))[0]

    def predict_cif(self, X: Any, times: Iterable[float] | float, cause: int = 1) -> pd.DataFrame:
        """CIF of ``cause`` (1 or 2) for each patient (rows) at each horizon in months (columns)."""
        if cause not in CAUSES:
            raise UserInputError(f"cause must be 1 (event of interest) or 2 (competing event), got {cause!r}")
        check_is_fitted(self, "models_")
        t = check_horizons(times, self.max_time_)
        cif = self._incidence(X, t)[0][cause - 1]
        index = X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(len(cif))
        return pd.DataFrame(cif, index=index, columns=[float(v) for v in t])

    def _survival_matrix(self, X: Any, times: np.ndarray) -> np.ndarray:
        """All-cause event-free probability S = 1 − CIF_1 − CIF_2 (the product-limit S itself)."""
        return self._incidence(X, times)[1]

    def predict_risk(self, X: Any) -> np.ndarray:
        """CIF of cause 1 at ``risk_horizon_`` (higher = worse)."""
        check_is_fitted(self, "risk_horizon_")
        return self._incidence(X, np.array([self.risk_horizon_]))[0][0, :, 0]

    def score(self, X: Any, y: Any) -> float:
        """Harrell's C of ``predict_risk`` on the cause-specific view (competing events censored).

        Wolbers' competing-risks C lives with the metrics (:mod:`riskmodel.metrics`)."""
        cause, time = check_competing_target(y)
        return harrell_c(cause == 1, time, self.predict_risk(X))

    def save_state(self, folder: Path) -> None:
        """``competing.json``, and each fitted component's files in ``cause_<k>/`` (data formats only)."""
        check_is_fitted(self, "models_")
        fitted = [k for k, m in zip(CAUSES, self.models_, strict=True) if m is not None]
        state = {"risk_horizon": self.risk_horizon_, "n_competing": self.n_competing_, "fitted_causes": fitted}
        write_json(folder / self.STATE_FILE, {**self._common_state(), **state})
        for k, model in zip(CAUSES, self.models_, strict=True):
            if model is not None:
                sub = folder / f"cause_{k}"
                sub.mkdir()
                model.save_state(sub)

    @classmethod
    def _load_cause(cls, sub: Path, model: CompetingRiskEstimator, path: Path) -> Any:
        """One cause's fitted component from its folder (the family's own checks), matched to ``model``."""
        part = cls.component.load_state(sub)
        if part.n_features_in_ != model.n_features_in_ or part.max_time_ > model.max_time_:
            raise ModelFileError(f"{sub}: does not match {path.name} (features or follow-up); refusing to load")
        return part

    def _restore_causes(self, models: list[Any]) -> None:
        """Set the per-cause components read by :meth:`load_state` (None for a cause without one)."""
        self.models_ = models

    @classmethod
    def load_state(cls, folder: Path) -> CompetingRiskEstimator:
        """The fitted model from ``competing.json`` and the components' own files (each checked by
        its family's ``load_state``, as a survival model's would be)."""
        path = folder / cls.STATE_FILE
        d = read_json(path, CompetingFile)
        model = cls(**estimator_params(cls, d["params"], path))
        model._restore_common(d)
        models: list[Any] = []
        for k in CAUSES:
            sub = folder / f"cause_{k}"
            if k not in d["fitted_causes"]:
                if sub.exists():
                    raise ModelFileError(f"{sub}: a model for cause {k}, which {path.name} says has none")
                models.append(None)
                continue
            if sub.is_symlink() or not sub.is_dir():
                raise ModelFileError(f"{sub}: missing or not a plain folder; refusing to load")
            models.append(cls._load_cause(sub, model, path))
        if d["risk_horizon"] > model.max_time_ or 1 not in d["fitted_causes"]:
            raise ModelFileError(f"{path}: no cause-1 model, or a risk horizon beyond follow-up; refusing to load")
        model._restore_causes(models)
        model.risk_horizon_ = float(d["risk_horizon"])
        model.n_competing_ = int(d["n_competing"])
        return model


class BreslowCauses(CompetingRiskEstimator):
    """A CIF model whose component is a proportional-hazards model with a Breslow baseline (Cox,
    boosted Cox): cause k's cumulative hazard jumps at its ``event_times_`` by exp(r(x)) times the
    baseline's increments, r(x) its ``predict_risk`` (a log hazard ratio)."""

    def _jump_times(self, model: SurvivalEstimator) -> np.ndarray:
        return np.asarray(model.event_times_, dtype=float)

    def _jumps(self, model: SurvivalEstimator, X: Any, count: int) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.outer(np.exp(model.predict_risk(X)), np.diff(model.baseline_cumhaz_[:count], prepend=0.0))


class CauseSpecificCox(BreslowCauses):
    """Cause-specific Cox models combined into CIFs (Putter et al. 2007; riskRegression's ``CSC``).

    One :class:`~riskmodel.models.cox.CoxPH` per cause, with its parameters (``penalty``,
    ``l1_ratio``, ``ties``, ``max_iter``, ``tol``) and its baseline, which follows the ties
    (:class:`~riskmodel.models.cox.CoxPH`): with Breslow's,
    ΔH_k(s | x) = exp(η_k(x)) · d_k(s) / Σ_{at risk} exp(η_k).

    **The baseline goes with the ties.** With ``ties="breslow"`` it is Breslow's; with Efron's
    ties (the default, as R's ``coxph``) it is Efron's (:func:`efron_cumulative_hazard`), as R's
    ``survfit.coxph`` and riskRegression's ``predictCox`` pair them, and as the Efron partial
    likelihood implies. Without tied event times the two are the same. The difference is not
    small where many events tie: the bundled cohort's ten local failures at the 3-month scan move
    CIF_1 by up to 0.11 between an Efron fit with a Breslow baseline and one with Efron's. Each
    cause's :class:`CoxPH` computes and holds that baseline (``baseline_cumhaz_``, in its ``cox.json``).

    Against R: with ``penalty=0`` the CIFs are those of
    ``riskRegression::CSC(Hist(time, cause) ~ …, ties = ties)`` with ``predictRisk(…, times,
    cause)`` (product-limit S(s−), riskRegression's default ``product.limit = TRUE``), for either
    ``ties``; the coefficients and standard errors are ``survival::coxph``'s per cause.
    """

    component = CoxPH
    risk_is_log_hazard = False  # predict_risk is a probability (CIF), not a log hazard ratio
    FILES = cause_files(CoxPH)

    def __init__(
        self,
        penalty: float = 0.1,
        l1_ratio: float = 0.0,
        max_iter: int = 100,
        tol: float = 1e-10,
        ties: Literal["efron", "breslow"] = "efron",
        risk_horizon: float | None = None,
    ) -> None:
        self.penalty = penalty
        self.l1_ratio = l1_ratio
        self.max_iter = max_iter
        self.tol = tol
        self.ties = ties
        self.risk_horizon = risk_horizon

    def hazard_ratio_tables(self, names: Sequence[str] | None = None) -> dict[int, pd.DataFrame]:
        """Per cause (1, 2): term, coef, se, hr, lower, upper (95% CI), p, from each component's
        :class:`CoxPH` table (SE, CI and p only when ``penalty == 0``). ``names`` relabel the terms."""
        check_is_fitted(self, "models_")
        out = {}
        for k, model in zip(CAUSES, self.models_, strict=True):
            if model is None:
                continue
            table = model.hazard_ratios_
            terms = list(table.index) if names is None else list(names)
            if len(terms) != len(table):
                raise UserInputError(f"names: {len(terms)} given for {len(table)} terms")
            out[k] = pd.DataFrame(
                {
                    "term": terms,
                    "coef": table["coef"].to_numpy(float),
                    "se": table["se"].to_numpy(float),
                    "hr": table["hr"].to_numpy(float),
                    "lower": table["hr_lower_95"].to_numpy(float),
                    "upper": table["hr_upper_95"].to_numpy(float),
                    "p": table["p"].to_numpy(float),
                }
            )
        return out
