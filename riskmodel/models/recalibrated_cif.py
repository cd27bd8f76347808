"""A fitted competing-risks model recalibrated to a new setting, on the cloglog scale of its CIF.

The CIF counterpart of :mod:`riskmodel.models.recalibrated` (the first two rungs of the updating
ladder: van Houwelingen, Stat Med 2000;19:3401-15; Steyerberg, Clinical Prediction Models, ch. 20).
The parent is kept as it is; g(t | x) = log(−log(1 − F̂_1(t | x))) is the complementary log-log of
its CIF of the event of interest, and τ a reference horizon (the parent's largest horizon within
follow-up):

* ``baseline`` (calibration-in-the-large): F_1*(t | x) = 1 − (1 − F̂_1(t | x))^exp(a), a shift a of
  g at every t, with a chosen so that the mean F_1*(τ | x) over the new patients equals their
  Aalen-Johansen CIF at τ (so O/E at τ is 1). The parent's time shape and ranking are kept.
* ``slope`` (intercept and slope): a Fine-Gray model (Fine & Gray, JASA 1999) of the new patients'
  event of interest with g(τ | x) as its only covariate, the smoother of Austin, Putter, Giardiello
  & van Klaveren (Diagn Progn Res 2022;6:2) without the spline: F_1*(t | x) = 1 − exp(−Λ_0(t) ·
  exp(b · g(τ | x))), so at τ cloglog F_1* = log Λ_0(τ) + b · g(τ | x) (intercept and slope b, its
  Fine-Gray coefficient, :func:`riskmodel.stats.competing.fine_gray`). The baseline Λ_0 is the new
  patients' Breslow-type subdistribution hazard.

**The contract.** F_1* is non-decreasing in t and in [0, 1] (a monotone map of a CIF, or a
Fine-Gray CIF). The competing CIF is the parent's, capped as the Fine-Gray family caps it:
F_2*(t | x) = min(F̂_2(t | x), 1 − F_1*(T | x)), T the model's follow-up, the largest non-decreasing
F_2* with F_1* + F_2* ≤ 1 at every t ≤ T. ``fit`` counts the new patients whose F_2 is capped
(``n_capped_``, by T). The event-free probability is 1 − F_1* − F_2*.

Model folder: ``cif_recalibration.json`` (method, τ, shift or the Fine-Gray slope and baseline,
the counts) and the parent's own files in ``parent/``, read back by its family's own checks; never
pickle. A recalibrated CIF model is not recalibrated again (update the original model).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import FiniteFloat, NonNegativeInt, model_validator
from scipy.optimize import brentq
from sklearn.utils.validation import check_is_fitted

from riskmodel.errors import ModelFileError, UserInputError
from riskmodel.models.base import StateFile, check_baseline
from riskmodel.models.cif import cif_matrix, is_competing_model, risk_horizon
from riskmodel.models.competing import CompetingRiskEstimator
from riskmodel.models.cox import CoxPH
from riskmodel.models.recalibrated import (
    parent_handles_missing,
    read_with_parent,
    restore_with_parent,
    save_with_parent,
)
from riskmodel.stats.competing import aalen_johansen, fine_gray
from riskmodel.stats.target import check_competing_target, step_values

__all__ = ["CIF_RECALIBRATION_FILE", "CIF_RECALIBRATION_METHODS", "CifRecalibrationFile", "RecalibratedCif"]

CIF_RECALIBRATION_FILE = "cif_recalibration.json"
CIF_RECALIBRATION_METHODS = ("baseline", "slope")
_CLIP = 1e-12
_SHIFT_LIMIT = 20.0  # |a| on the cloglog scale: exp(20) multiplies the cumulative subdistribution hazard by 5e8


class CifRecalibrationFile(StateFile):
    """``cif_recalibration.json``: the method, τ, the shift or the Fine-Gray slope and baseline."""

    method: Literal["baseline", "slope"]
    reference_horizon: FiniteFloat
    risk_horizon: FiniteFloat
    shift: FiniteFloat
    slope: FiniteFloat
    x_mean: FiniteFloat
    event_times: list[FiniteFloat]
    baseline_cumhaz: list[FiniteFloat]
    n_competing: NonNegativeInt
    n_capped: NonNegativeInt

    @model_validator(mode="after")
    def _consistent(self) -> CifRecalibrationFile:
        check_baseline(self.event_times, self.baseline_cumhaz)
        if self.reference_horizon <= 0 or self.risk_horizon <= 0:
            raise ValueError("reference_horizon and risk_horizon must be positive")
        if self.method == "baseline" and (self.slope != 1.0 or self.event_times):
            raise ValueError("a baseline (in-the-large) update has slope 1 and no Fine-Gray baseline")
        if self.method == "slope" and (self.shift != 0.0 or not self.event_times or self.slope <= 0):
            raise ValueError("a slope update has no shift, a positive slope and a Fine-Gray baseline")
        return self


def _cloglog(f: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(f, dtype=float), _CLIP, 1.0 - _CLIP)
    out: np.ndarray = np.log(-np.log1p(-clipped))
    return out


class RecalibratedCif(CompetingRiskEstimator):
    """A fitted competing ``parent`` whose CIF of the event is recalibrated (module docstring).

    Parameters
    ----------
    parent
        A *fitted* competing-risks estimator (the features it reads are this model's).
    method
        ``"baseline"`` (calibration-in-the-large) or ``"slope"`` (Fine-Gray intercept and slope).
    reference_horizon
        τ (months), within the parent's follow-up and the new patients'.
    """

    component = CoxPH  # unused: no model per cause is fitted here (the parent has them)
    FILES = frozenset({CIF_RECALIBRATION_FILE})
    STATE_FILE = CIF_RECALIBRATION_FILE

    def __init__(self, parent: Any = None, method: str = "baseline", reference_horizon: float | None = None) -> None:
        self.parent = parent
        self.method = method
        self.reference_horizon = reference_horizon

    @classmethod
    def ignored_params(cls, params: Any) -> dict[str, str]:
        """None: every parameter is used."""
        return {}

    @property
    def handles_missing(self) -> bool:
        """As the parent."""
        return parent_handles_missing(self)

    def _check_parent(self, time: np.ndarray) -> float:
        parent = self.parent
        if parent is None or not hasattr(parent, "max_time_") or not is_competing_model(parent):
            raise UserInputError("RecalibratedCif needs a fitted competing-risks parent (a clone has none)")
        if isinstance(parent, RecalibratedCif):
            raise UserInputError("this model's CIF was recalibrated already: update the original model instead")
        if self.method not in CIF_RECALIBRATION_METHODS:
            raise UserInputError(f"method must be one of {', '.join(CIF_RECALIBRATION_METHODS)}, got {self.method!r}")
        tau = self.reference_horizon
        limit = min(float(parent.max_time_), float(time.max()))
        if tau is None or not math.isfinite(tau) or not 0 < tau < limit:
            raise UserInputError(
                f"reference_horizon must lie within the parent's and the new patients' follow-up ({limit:.3g} "
                f"months); got {tau!r}"
            )
        return float(tau)

    def fit(self, X: Any, y: Any) -> RecalibratedCif:
        """Estimate the shift (or the Fine-Gray slope and baseline) on the new patients; returns ``self``."""
        _, time_all = check_competing_target(y)
        tau = self._check_parent(time_all)
        _, cause, time = self._begin_fit(X, y)
        self.parent_, self.reference_horizon_ = self.parent, tau
        self.shift_, self.slope_, self.x_mean_ = 0.0, 1.0, 0.0
        self.event_times_, self.baseline_cumhaz_ = np.empty(0), np.empty(0)
        f_tau = cif_matrix(self.parent_, X, [tau])[0][:, 0]
        if self.method == "baseline":
            self.max_time_ = float(self.parent_.max_time_)
            self.shift_ = _in_the_large(f_tau, time, cause, tau)
        else:
            g = _cloglog(f_tau)
            if np.ptp(g) <= 0:
                raise UserInputError("the model predicts one CIF for every new patient: no slope can be estimated")
            fit = fine_gray(g[:, None], time, cause, event=1)
            slope = float(fit.coef[0])
            if not fit.converged or not math.isfinite(slope):
                raise UserInputError("the Fine-Gray recalibration did not converge on these patients (too few events?)")
            if slope <= 0:
                raise UserInputError(
                    f"the calibration slope of the CIF is {slope:.3g} (≤ 0): the model does not rank these patients; "
                    "refit it instead (--method refit)"
                )
            self.max_time_ = min(float(self.parent_.max_time_), float(time.max()))
            self.slope_, self.x_mean_ = slope, float(fit.x_mean[0])
            self.event_times_ = np.asarray(fit.event_times, dtype=float)
            self.baseline_cumhaz_ = np.asarray(fit.centred_cumulative_hazard, dtype=float)
        self.models_ = []  # no model per cause here: the parent's are used
        self.risk_horizon_ = min(risk_horizon(self.parent_), self.max_time_)
        end = self._incidence(X, np.array([self.max_time_]))[0]
        self.n_capped_ = int(np.sum(cif_matrix(self.parent_, X, [self.max_time_])[1][:, 0] > end[1][:, 0] + 1e-15))
        return self

    def _cif1(self, X: Any, times: np.ndarray) -> np.ndarray:
        if self.method == "baseline":
            f = cif_matrix(self.parent_, X, times)[0]
            return np.asarray(-np.expm1(np.exp(self.shift_) * np.log1p(-np.clip(f, 0.0, 1.0))), dtype=float)
        g = _cloglog(cif_matrix(self.parent_, X, [self.reference_horizon_])[0][:, 0])
        h0 = step_values(self.event_times_, self.baseline_cumhaz_, times)
        with np.errstate(divide="ignore", over="ignore"):
            log_h = np.log(h0)[None, :] + (self.slope_ * (g - self.x_mean_))[:, None]
            return np.asarray(-np.expm1(-np.exp(log_h)), dtype=float)

    def _incidence(self, X: Any, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self, "slope_")
        self._check_features(X)
        t = np.asarray(times, dtype=float)
        f1 = self._cif1(X, t)
        f2 = cif_matrix(self.parent_, X, t)[1]
        f1_end = self._cif1(X, np.array([self.max_time_]))
        f2 = np.minimum(f2, 1.0 - f1_end)
        return np.stack([f1, f2]), np.clip(1.0 - f1 - f2, 0.0, 1.0)

    # ------------------------------------------------------------------ model folder
    def save_state(self, folder: Path) -> None:
        """``cif_recalibration.json`` and the parent's own files in ``parent/``."""
        check_is_fitted(self, "slope_")
        fitted = {
            "method": self.method,
            "reference_horizon": self.reference_horizon_,
            "risk_horizon": self.risk_horizon_,
            "shift": self.shift_,
            "slope": self.slope_,
            "x_mean": self.x_mean_,
            "event_times": self.event_times_,
            "baseline_cumhaz": self.baseline_cumhaz_,
            "n_competing": self.n_competing_,
            "n_capped": self.n_capped_,
        }
        save_with_parent(self, folder, CIF_RECALIBRATION_FILE, fitted)

    @classmethod
    def load_state(cls, folder: Path) -> RecalibratedCif:  # pragma: no cover - the folder loader passes the parent's
        """Refused: the parent's family is needed (:meth:`load_with`)."""
        raise ModelFileError(f"{folder}: a recalibrated CIF model is read with its parent's family")

    @classmethod
    def load_with(cls, folder: Path, load_parent: Callable[[Path], Any]) -> RecalibratedCif:
        """The fitted model from ``cif_recalibration.json``; ``load_parent`` reads ``parent/`` with
        the family's own checks, as a top-level model would be read."""
        path, d, sub, parent = read_with_parent(folder, CIF_RECALIBRATION_FILE, CifRecalibrationFile, load_parent)
        if isinstance(parent, RecalibratedCif) or not is_competing_model(parent):
            raise ModelFileError(f"{sub}: not a competing-risks model riskmodel recalibrates; refusing to load")
        tau, end = float(d["reference_horizon"]), float(d["max_time"])
        if parent.n_features_in_ != d["n_features_in"] or tau > parent.max_time_ or end > parent.max_time_:
            raise ModelFileError(f"{sub}: does not match {path.name} (features or follow-up); refusing to load")
        if d["risk_horizon"] > end:
            raise ModelFileError(f"{path}: a risk horizon beyond the model's follow-up; refusing to load")
        model = restore_with_parent(cls, parent, path, d)
        model.reference_horizon_, model.risk_horizon_ = tau, float(d["risk_horizon"])
        model.shift_, model.slope_, model.x_mean_ = float(d["shift"]), float(d["slope"]), float(d["x_mean"])
        model.event_times_ = np.asarray(d["event_times"], float)
        model.baseline_cumhaz_ = np.asarray(d["baseline_cumhaz"], float)
        model.n_competing_, model.n_capped_ = int(d["n_competing"]), int(d["n_capped"])
        model.models_ = []
        return model


def _in_the_large(f_tau: np.ndarray, time: np.ndarray, cause: np.ndarray, tau: float) -> float:
    """The cloglog shift a with mean(1 − (1 − F̂(τ))^exp(a)) equal to the Aalen-Johansen CIF at τ."""
    steps, cif = aalen_johansen(time, cause, cause=1)
    observed = float(step_values(steps, cif, np.array([tau]), before=0.0)[0])
    f = np.clip(f_tau, 0.0, 1.0)
    inside = (f > 0) & (f < 1)
    if observed <= 0 or not inside.any():
        raise UserInputError(
            f"no event of interest by {tau:g} months among the new patients, or no predicted CIF strictly between "
            "0 and 1 there: calibration-in-the-large is undefined"
        )
    log_s = np.log1p(-f)

    def gap(a: float) -> float:
        return float(np.mean(-np.expm1(np.exp(a) * log_s))) - observed

    if gap(-_SHIFT_LIMIT) > 0 or gap(_SHIFT_LIMIT) < 0:
        raise UserInputError(
            f"the observed CIF at {tau:g} months ({observed:.3g}) cannot be reached by shifting the model's cloglog "
            f"CIF by at most ±{_SHIFT_LIMIT:g}: refit the model instead (--method refit)"
        )
    return float(brentq(gap, -_SHIFT_LIMIT, _SHIFT_LIMIT, xtol=1e-14, rtol=1e-14))
