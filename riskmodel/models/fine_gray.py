"""The Fine-Gray family: one proportional subdistribution-hazards model per cause.

Fine & Gray (JASA 1999;94:496-509) model the cumulative incidence of one cause directly:

    F_k(t | x) = 1 − exp(−exp((x − m)·β_k) · Λ_k(t)),

with Λ_k the baseline cumulative subdistribution hazard at the training mean m of the features.
The fits are :func:`riskmodel.stats.competing.fine_gray` (the censoring-weighted Cox model on
counting-process data, Geskus, Biometrics 2011;67:39-49; the coefficients and SEs of
``cmprsk::crr``).

**The contract, and where it binds.** Each F_k alone is non-decreasing and in [0, 1]. Two
separately fitted Fine-Gray models are not coherent (Austin, Steyerberg & Putter, Stat Med
2021;40:1541): nothing keeps F_1 + F_2 ≤ 1. The event of interest's CIF is its own model's, never
changed. The competing CIF is capped so that the pair is a valid pair of cumulative incidences at
every time: F_2*(t | x) = min(F_2(t | x), 1 − F_1(τ | x)), with τ the training follow-up. Since
1 − F_1 decreases, this is the largest non-decreasing F_2* with F_2*(t) ≤ 1 − F_1(t) at every
t ≤ τ, and it does not depend on which times are asked. The event-free probability is
1 − F_1 − F_2*. ``fit`` counts the training patients whose F_2 is capped at some time
(``n_capped_``: by τ; common, since separate Fine-Gray fits overshoot late in follow-up) and
warns when the cap binds by the risk horizon (``n_capped_by_risk_horizon_``), where a prediction
is read.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import FiniteFloat, model_validator
from sklearn.utils.validation import check_is_fitted

from riskmodel.errors import ModelFileError, RiskModelWarning, UserInputError
from riskmodel.models.base import StateFile, check_baseline, read_json, write_json
from riskmodel.models.competing import CAUSES, CompetingRiskEstimator
from riskmodel.stats.competing import fine_gray

__all__ = ["FineGray", "FineGrayCauseFile"]


class FineGrayCauseFile(StateFile):
    """``cause_<k>/fine_gray.json``: one cause's coefficients, feature means and baseline, and the
    robust (sandwich) covariance of the coefficients (absent from folders saved before it was kept)."""

    coef: list[FiniteFloat]
    mean: list[FiniteFloat]
    event_times: list[FiniteFloat]
    baseline_cumhaz: list[FiniteFloat]
    cov: list[list[FiniteFloat]] | None = None

    @model_validator(mode="after")
    def _shapes(self) -> FineGrayCauseFile:
        check_baseline(self.event_times, self.baseline_cumhaz)
        p = self.n_features_in
        if len(self.coef) != p or len(self.mean) != p:
            raise ValueError("coef and mean must have one value per feature")
        if self.cov is not None:
            cov = np.asarray(self.cov, dtype=float) if all(len(r) == p for r in self.cov) else None
            if cov is None or cov.shape != (p, p):
                raise ValueError("cov must be a features × features matrix")
            if not np.allclose(cov, cov.T, rtol=1e-9, atol=0.0) or (np.diag(cov) < 0).any():
                raise ValueError("cov must be symmetric with a non-negative diagonal")
        return self


class _CauseModel:
    """One cause's Fine-Gray model as predictions need it (plain arrays)."""

    def __init__(self, coef: Any, mean: Any, event_times: Any, cumhaz: Any, cov: Any = None) -> None:
        self.coef = np.asarray(coef, dtype=float)
        self.mean = np.asarray(mean, dtype=float)
        self.event_times = np.asarray(event_times, dtype=float)
        self.cumhaz = np.asarray(cumhaz, dtype=float)
        self.cov = None if cov is None else np.asarray(cov, dtype=float)  # robust variance of coef (crr$var)

    def cif(self, X: np.ndarray, times: np.ndarray) -> np.ndarray:
        """F_k(t | x), patients × times."""
        idx = np.searchsorted(self.event_times, times, side="right") - 1
        base = np.where(idx >= 0, self.cumhaz[np.clip(idx, 0, None)] if self.cumhaz.size else 0.0, 0.0)
        with np.errstate(over="ignore"):
            scale = np.exp((X - self.mean) @ self.coef)
        return -np.expm1(-np.outer(scale, base))


class FineGray(CompetingRiskEstimator):
    """Fine-Gray models of both causes (module docstring): ``predict_cif(X, t, cause=1)`` is the
    event of interest's own Fine-Gray CIF; ``cause=2`` is cause 2's, capped so that F_1 + F_2 ≤ 1.

    Unpenalised (as ``cmprsk::crr``); ``risk_horizon`` as every competing family. Model folder:
    ``competing.json`` and ``cause_<k>/fine_gray.json`` (JSON only, checked when read), which keeps
    each cause's robust covariance of the coefficients for the calculator's band.
    """

    risk_is_log_hazard = False
    FILES = frozenset({"competing.json", *(f"cause_{k}/fine_gray.json" for k in CAUSES)})

    def __init__(self, risk_horizon: float | None = None) -> None:
        self.risk_horizon = risk_horizon

    @property
    def handles_missing(self) -> bool:
        """A Fine-Gray fit needs complete features."""
        return False

    @classmethod
    def ignored_params(cls, params: Any) -> dict[str, str]:
        """No setting is ignored."""
        return {}

    def fit(self, X: Any, y: Any) -> FineGray:
        """Fit a Fine-Gray model for each cause with an event (the other cause competing); returns ``self``.

        A design the fitter cannot estimate in these patients (singular information, a column
        constant among them) is a numerical failure (``LinAlgError``): a cross-validation fold or a
        bootstrap resample counts it as failed, as a non-converging fit of any family."""
        Xa, cause, time, horizon = self._begin_cif_fit(X, y)
        self.cause_models_: list[_CauseModel | None] = []
        for k in CAUSES:
            if not (cause == k).any():
                self.cause_models_.append(None)
                continue
            try:
                fit = fine_gray(Xa, time, cause, event=k)
            except UserInputError as exc:  # singular information, a constant column in this sample
                raise np.linalg.LinAlgError(f"cause {k}: {exc}") from None
            self.cause_models_.append(
                _CauseModel(fit.coef, fit.x_mean, fit.event_times, fit.centred_cumulative_hazard, fit.cov)
            )
        self.models_ = list(self.cause_models_)  # per cause, None without events (as every competing family)
        self.risk_horizon_ = horizon
        self.n_capped_ = int(self._capped(Xa, self.max_time_).sum())
        self.n_capped_by_risk_horizon_ = int(self._capped(Xa, horizon).sum())
        if self.n_capped_by_risk_horizon_:
            warnings.warn(
                f"Fine-Gray: for {self.n_capped_by_risk_horizon_} of {len(Xa)} training patients the two separately "
                f"fitted models give CIF1 + CIF2 > 1 by the risk horizon ({horizon:g} months); their competing CIF "
                "is capped at 1 − CIF1(end of follow-up)",
                RiskModelWarning,
                stacklevel=2,
            )
        return self

    def _capped(self, Xa: np.ndarray, by: float) -> np.ndarray:
        """Patients whose F_2 at ``by`` exceeds 1 − F_1 at the end of follow-up (the cap binds by then)."""
        first, second = self.cause_models_
        f1 = first.cif(Xa, np.array([self.max_time_]))[:, 0] if first is not None else np.zeros(len(Xa))
        f2 = second.cif(Xa, np.array([by]))[:, 0] if second is not None else np.zeros(len(Xa))
        return f2 > 1 - f1

    def _incidence(self, X: Any, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self, "models_")
        Xa = self._check_features(X)
        f1, f2 = (m.cif(Xa, times) if m is not None else np.zeros((len(Xa), times.size)) for m in self.cause_models_)
        first = self.cause_models_[0]
        f1_end = first.cif(Xa, np.array([self.max_time_])) if first is not None else np.zeros((len(Xa), 1))
        f2 = np.minimum(f2, 1.0 - f1_end)
        cif = np.stack([f1, f2])
        return cif, np.clip(1.0 - f1 - f2, 0.0, 1.0)

    def subdistribution_table(self, names: list[str] | None = None) -> pd.DataFrame:
        """The event of interest's coefficients as exp(coef) (the subdistribution HR); for SEs use
        :func:`riskmodel.stats.competing.fine_gray`'s ``table``."""
        check_is_fitted(self, "models_")
        first = self.cause_models_[0]
        coef = first.coef if first is not None else np.full(self.n_features_in_, np.nan)
        index = names if names is not None else [f"x{i}" for i in range(len(coef))]
        return pd.DataFrame({"coef": coef, "shr": np.exp(coef)}, index=index)

    def save_state(self, folder: Path) -> None:
        """``competing.json`` and ``cause_<k>/fine_gray.json`` (JSON only)."""
        check_is_fitted(self, "models_")
        fitted = [k for k, m in zip(CAUSES, self.cause_models_, strict=True) if m is not None]
        state = {"risk_horizon": self.risk_horizon_, "n_competing": self.n_competing_, "fitted_causes": fitted}
        write_json(folder / self.STATE_FILE, {**self._common_state(), **state})
        common = self._common_state()
        for k, m in zip(CAUSES, self.cause_models_, strict=True):
            if m is None:
                continue
            sub = folder / f"cause_{k}"
            sub.mkdir()
            payload = {
                **common,
                "coef": m.coef.tolist(),
                "mean": m.mean.tolist(),
                "event_times": m.event_times.tolist(),
                "baseline_cumhaz": m.cumhaz.tolist(),
                **({"cov": m.cov.tolist()} if m.cov is not None and np.isfinite(m.cov).all() else {}),
            }
            write_json(sub / "fine_gray.json", payload)

    @classmethod
    def _load_cause(cls, sub: Path, model: CompetingRiskEstimator, path: Path) -> _CauseModel:
        """One cause's Fine-Gray fit from ``fine_gray.json`` (schema, shapes, baseline), matched to ``model``."""
        c = read_json(sub / "fine_gray.json", FineGrayCauseFile)
        if c["n_features_in"] != model.n_features_in_ or (c["event_times"] and c["event_times"][-1] > model.max_time_):
            raise ModelFileError(f"{sub}: does not match {path.name} (features or follow-up); refusing to load")
        return _CauseModel(c["coef"], c["mean"], c["event_times"], c["baseline_cumhaz"], c.get("cov"))

    def _restore_causes(self, models: list[Any]) -> None:
        self.cause_models_ = models
        self.models_ = list(models)
