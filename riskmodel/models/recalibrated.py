"""A fitted model recalibrated to a new setting: a new baseline hazard, optionally a calibration slope.

The first two rungs of the updating ladder (van Houwelingen, Stat Med 2000;19:3401-15;
Steyerberg, Clinical Prediction Models, 2009, ch. 20; Vergouwe et al., Stat Med
2017;36:4529-39). The parent model is kept as it is; its risk score r(x) enters a Cox model
fitted on the new patients,

    S_new(t | x) = S0_new(t) ^ exp(γ · r(x)),

* ``baseline``: γ fixed at 1 (r as an offset), only the baseline re-estimated;
* ``slope``: γ estimated too (a Cox model with r as its one covariate, Efron's ties as R's
  ``coxph``; its Wald standard error in ``factor_se_``, not saved), which shrinks or stretches
  every log hazard ratio alike.

The new baseline cumulative hazard is Breslow's on the fixed γ·r (Breslow 1972, as
:func:`riskmodel.models.base.breslow_cumulative_hazard`): without tied event times it equals R's
``basehaz(coxph(Surv(t, e) ~ offset(γ·r)), centered = FALSE)``.

**What r(x) is.** For a family whose risk score is a log hazard ratio (Cox, boosted Cox, the
mean of Cox models over imputations), r is that linear predictor. For the others (survival
forests), r = log(−log Ŝ(τ | x)), the parent's complementary log-log survival at a reference
horizon τ (the scale of :func:`riskmodel.validation.calibration.calibration_slope_at`): a patient
at whom the parent predicts S(τ) then gets S_new(τ) = S0_new(τ)^(−log S(τ)), which equals the
parent's prediction when S0_new(τ) = e^−1. S(τ) is clipped to [1e-12, 1 − 1e-12] first.

A recalibrated model recalibrated again keeps one layer: its parent's base model, with the
slopes multiplied (``baseline`` keeps the earlier slope; ``slope`` estimates a new factor on it).

Model folder: ``recalibration.json`` (method, slope, reference horizon, the new baseline) and the
base model's own files in ``parent/``, read back by its family's own checks (the loader of
:mod:`riskmodel.scoring.files` passes them in); never pickle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import FiniteFloat, model_validator
from sklearn.utils.validation import check_is_fitted

from riskmodel.errors import ModelFileError, UserInputError
from riskmodel.models.base import (
    StateFile,
    SurvivalEstimator,
    breslow_cumulative_hazard,
    check_baseline,
    proportional_survival,
    read_json,
    write_json,
)
from riskmodel.models.cif import is_competing_model
from riskmodel.models.cox import newton_fit
from riskmodel.stats import step_values

__all__ = [
    "PARENT_DIR",
    "RECALIBRATION_FILE",
    "RECALIBRATION_METHODS",
    "Recalibrated",
    "RecalibrationFile",
    "parent_handles_missing",
    "read_with_parent",
    "restore_with_parent",
    "save_with_parent",
]

RECALIBRATION_FILE = "recalibration.json"
PARENT_DIR = "parent"
RECALIBRATION_METHODS = ("baseline", "slope")
_CLIP = 1e-12
_Wrapper = TypeVar("_Wrapper")


class RecalibrationFile(StateFile):
    """``recalibration.json``: the method, the total slope on r, τ and the new Breslow baseline."""

    method: Literal["baseline", "slope"]
    slope: FiniteFloat
    factor: FiniteFloat
    reference_horizon: FiniteFloat | None = None
    event_times: list[FiniteFloat]
    baseline_cumhaz: list[FiniteFloat]

    @model_validator(mode="after")
    def _consistent(self) -> RecalibrationFile:
        check_baseline(self.event_times, self.baseline_cumhaz)
        if self.slope <= 0 or self.factor <= 0:
            raise ValueError("slope and factor must be positive")
        if self.method == "baseline" and self.factor != 1.0:
            raise ValueError("a baseline update keeps the slope: its factor must be 1")
        if self.reference_horizon is not None and self.reference_horizon <= 0:
            raise ValueError("reference_horizon must be positive")
        return self


class Recalibrated(SurvivalEstimator):
    """A fitted ``parent`` with a new baseline (``method="baseline"``) and a slope (``"slope"``).

    Parameters
    ----------
    parent
        A *fitted* survival estimator (the features it reads are those of this model). Cloning
        this wrapper gives an unfitted parent, which ``fit`` refuses: build a new wrapper instead.
    method
        ``"baseline"`` or ``"slope"`` (module docstring).
    reference_horizon
        τ (months) of the complementary log-log risk score, for a parent whose risk score is not a
        log hazard ratio; ignored otherwise.
    """

    risk_is_log_hazard = True  # γ·r is the linear predictor of the recalibration Cox model
    FILES = frozenset({RECALIBRATION_FILE})

    def __init__(self, parent: Any = None, method: str = "baseline", reference_horizon: float | None = None) -> None:
        self.parent = parent
        self.method = method
        self.reference_horizon = reference_horizon

    @property
    def handles_missing(self) -> bool:
        """As the parent."""
        return parent_handles_missing(self)

    def _base(self) -> tuple[SurvivalEstimator, float, float | None]:
        """The model under any earlier recalibration, its slope, and τ (checked)."""
        parent = self.parent
        if parent is None or not hasattr(parent, "max_time_"):
            raise UserInputError("Recalibrated needs a fitted parent model (a clone has none: build a new one)")
        if is_competing_model(parent):
            raise UserInputError(
                "a competing-risks model (CIF) cannot be recalibrated yet as a survival model; "
                "its CIF is recalibrated by riskmodel.models.recalibrated_cif.RecalibratedCif"
            )
        if isinstance(parent, Recalibrated):
            return parent.parent_, parent.slope_, parent.reference_horizon_
        if getattr(parent, "risk_is_log_hazard", False):
            return parent, 1.0, None
        tau = self.reference_horizon
        if tau is None or not math.isfinite(tau) or not 0 < tau <= parent.max_time_:
            raise UserInputError(
                f"reference_horizon must be a time within the parent's follow-up ({parent.max_time_:.3g} months) "
                f"for a {type(parent).__name__}, whose risk score is not a log hazard ratio; got {tau!r}"
            )
        return parent, 1.0, float(tau)

    def fit(self, X: Any, y: Any) -> Recalibrated:
        """Estimate the new baseline (and slope) on the new patients ``X``, ``y``; returns ``self``."""
        if self.method not in RECALIBRATION_METHODS:
            raise UserInputError(f"method must be one of {', '.join(RECALIBRATION_METHODS)}, got {self.method!r}")
        base, prior, tau = self._base()
        _, event, time = self._begin_fit(X, y)
        self.parent_, self.reference_horizon_ = base, tau
        r = self._score(X)
        factor, self.factor_se_ = 1.0, 0.0
        if self.method == "slope":
            beta, info, converged = newton_fit((prior * r)[:, None], time, event)
            factor = float(beta[0])
            self.factor_se_ = float(1.0 / np.sqrt(info[0, 0])) if info[0, 0] > 0 else math.inf
            if not converged or not math.isfinite(factor):
                raise UserInputError("the calibration slope did not converge on these patients (too few events?)")
            if factor <= 0:
                raise UserInputError(
                    f"the calibration slope is {factor:.3g} (≤ 0): the model does not rank these patients; "
                    "refit it instead (--method refit)"
                )
        self.factor_ = factor
        self.slope_ = prior * factor
        self.event_times_, self.baseline_cumhaz_ = breslow_cumulative_hazard(time, event, self.slope_ * r)
        return self

    def _score(self, X: Any) -> np.ndarray:
        """r(x): the base model's log hazard ratio, or its cloglog S(τ) (module docstring)."""
        base, tau = self.parent_, self.reference_horizon_
        if tau is None:
            return np.asarray(base.predict_risk(X), dtype=float)
        s = np.asarray(base.predict_survival(X, [tau]).to_numpy()[:, 0], dtype=float)
        clipped = np.clip(s, _CLIP, 1.0 - _CLIP)
        return np.asarray(np.log(-np.log(clipped)), dtype=float)

    def predict_risk(self, X: Any) -> np.ndarray:
        """The recalibrated linear predictor γ·r(x) (higher = worse)."""
        check_is_fitted(self, "slope_")
        return self.slope_ * self._score(X)

    def _survival_matrix(self, X: Any, times: np.ndarray) -> np.ndarray:
        cumhaz = step_values(self.event_times_, self.baseline_cumhaz_, times)
        return proportional_survival(self.predict_risk(X), cumhaz)

    # ------------------------------------------------------------------ model folder
    def save_state(self, folder: Path) -> None:
        """``recalibration.json`` and the base model's own files in ``parent/``."""
        check_is_fitted(self, "slope_")
        fitted = {
            "method": self.method,
            "slope": self.slope_,
            "factor": self.factor_,
            "reference_horizon": self.reference_horizon_,
            "event_times": self.event_times_,
            "baseline_cumhaz": self.baseline_cumhaz_,
        }
        save_with_parent(self, folder, RECALIBRATION_FILE, fitted)

    @classmethod
    def load_state(cls, folder: Path) -> Recalibrated:  # pragma: no cover - the folder loader passes the parent's
        """Refused: the parent's family is needed (:meth:`load_with`)."""
        raise ModelFileError(f"{folder}: a recalibrated model is read with its parent's family")

    @classmethod
    def load_with(cls, folder: Path, load_parent: Callable[[Path], SurvivalEstimator]) -> Recalibrated:
        """The fitted model from ``recalibration.json``; ``load_parent`` reads ``parent/`` with the
        family's own checks (skops allow-lists, tree arrays) as a top-level model would be."""
        path, d, sub, parent = read_with_parent(folder, RECALIBRATION_FILE, RecalibrationFile, load_parent)
        if isinstance(parent, Recalibrated) or is_competing_model(parent):
            raise ModelFileError(f"{sub}: not a survival model riskmodel recalibrates; refusing to load")
        tau = d["reference_horizon"]
        linear = bool(getattr(parent, "risk_is_log_hazard", False))
        if parent.n_features_in_ != d["n_features_in"] or linear != (tau is None):
            raise ModelFileError(f"{sub}: does not match {path.name} (features or risk scale); refusing to load")
        if tau is not None and tau > parent.max_time_:
            raise ModelFileError(f"{path}: reference_horizon beyond the parent's follow-up; refusing to load")
        model = restore_with_parent(cls, parent, path, d)
        model.reference_horizon_ = None if tau is None else float(tau)
        model.slope_, model.factor_ = float(d["slope"]), float(d["factor"])
        model.event_times_ = np.asarray(d["event_times"], float)
        model.baseline_cumhaz_ = np.asarray(d["baseline_cumhaz"], float)
        return model


# ---------------------------------------------------------------------- a model wrapping a fitted parent
# Recalibrated and RecalibratedCif (models/recalibrated_cif.py) share these: the parameters
# (parent, method, reference_horizon), missing values as the parent takes them, and the model
# folder: one JSON state file beside the parent's own files in parent/.


def parent_handles_missing(model: Any) -> bool:
    """Whether the fitted parent (or, before fit, the given one) of ``model`` takes NaN."""
    base = getattr(model, "parent_", None)
    base = model.parent if base is None else base
    return bool(getattr(base, "handles_missing", False))


def save_with_parent(model: Any, folder: Path, name: str, fitted: dict[str, Any]) -> None:
    """Write ``name`` (the shared state, the parameters and ``fitted``) and the parent's files in ``parent/``."""
    state = model._common_state()
    state["params"] = {"method": model.method, "reference_horizon": model.reference_horizon}
    state.update(fitted)
    write_json(folder / name, state)
    sub = folder / PARENT_DIR
    sub.mkdir()
    model.parent_.save_state(sub)


def read_with_parent(
    folder: Path, name: str, schema: type[StateFile], load_parent: Callable[[Path], Any]
) -> tuple[Path, dict[str, Any], Path, Any]:
    """The state file's path and checked content, and ``parent/`` and the model ``load_parent`` reads there."""
    path = folder / name
    d = read_json(path, schema)
    sub = folder / PARENT_DIR
    if sub.is_symlink() or not sub.is_dir():
        raise ModelFileError(f"{sub}: missing or not a plain folder; refusing to load")
    return path, d, sub, load_parent(sub)


def restore_with_parent(cls: Callable[..., _Wrapper], parent: Any, path: Path, d: dict[str, Any]) -> _Wrapper:
    """A ``cls`` around ``parent`` with the saved parameters and shared state (method checked)."""
    params = d["params"]
    model: Any = cls(parent, str(params.get("method", d["method"])), params.get("reference_horizon"))
    if model.method != d["method"]:
        raise ModelFileError(f"{path}: params.method and method differ; refusing to load")
    model._restore_common(d)
    model.parent_ = parent
    out: _Wrapper = model
    return out
