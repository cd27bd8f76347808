"""The dose-response of one continuous covariate in a Cox model, without a cut-off.

:func:`dose_response` fits ``Surv(time, event) ~ rcs(dose, k) + adjust`` (unpenalised Cox, Efron
ties, as ``rms::cph``) with Harrell's restricted cubic spline and default knots
(:func:`riskmodel.stats.harrell_knots`; Harrell, *Regression Modeling Strategies*, 2nd ed., §2.4.5),
and gives:

* the partial effect of the dose on the log hazard over a grid, relative to a reference dose (the
  median, as ``rms::datadist``'s adjust-to value and ``Predict(…, ref.zero = TRUE)``), with a
  pointwise 95% band from the coefficients' covariance (the inverse observed information):
  se(x) = √((B(x) − B(ref))ᵀ V (B(x) − B(ref)));
* likelihood-ratio tests of the dose's overall effect (spline against no dose: k − 1 df) and of
  non-linearity (spline against linear dose: k − 2 df), and the Wald tests of the same hypotheses
  as ``anova.rms`` gives them.

The grid runs from the 5th smallest to the 5th largest dose (:func:`features.safe_harbor
.shared_range`), so a curve drawn from it never shows one patient's exact extreme.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from riskmodel.errors import RiskModelWarning, UserInputError
from riskmodel.features.safe_harbor import shared_range
from riskmodel.models.cox import CoxPH, newton_fit
from riskmodel.stats import harrell_knots, restricted_cubic_spline, survival_array

__all__ = [
    "CoxSummary",
    "DoseData",
    "DoseResponse",
    "cox_coef",
    "cox_summary",
    "dose_data",
    "dose_response",
    "pointwise_band",
    "spline_basis",
]


@dataclass(frozen=True)
class DoseData:
    """Complete cases of (time, event, dose, adjustment covariates), and how many rows were dropped."""

    time: np.ndarray
    event: np.ndarray
    dose: np.ndarray
    adjust: np.ndarray  # n × a (a = 0 without adjustment)
    adjust_names: tuple[str, ...]
    missing: int


def dose_data(time: Any, event: Any, dose: Any, adjust: pd.DataFrame | None = None) -> DoseData:
    """Checked complete cases: rows missing the time, event, dose or an adjustment covariate are left
    out and counted; an event must be 0/1 and a time positive and finite."""
    t = np.asarray(time, float)
    e = np.asarray(event, float)
    x = np.asarray(dose, float)
    if not len(t) == len(e) == len(x):
        raise UserInputError(f"time, event and dose must have one value per patient ({len(t)}, {len(e)}, {len(x)})")
    a = np.empty((len(t), 0)) if adjust is None else np.asarray(adjust, float).reshape(len(t), -1)
    names = () if adjust is None else tuple(str(c) for c in adjust.columns)
    keep = ~(np.isnan(t) | np.isnan(e) | np.isnan(x) | np.isnan(a).any(axis=1))
    t, e, x, a = t[keep], e[keep], x[keep], a[keep]
    if not np.isin(e, (0, 1)).all():
        raise UserInputError("event must be 0 or 1 for every patient")
    if not (np.isfinite(t).all() and (t > 0).all() and np.isfinite(x).all() and np.isfinite(a).all()):
        raise UserInputError("times must be positive and finite, doses and adjustment covariates finite")
    if not e.any():
        raise UserInputError("a dose-response needs at least one event; there is none")
    return DoseData(t, e.astype(bool), x, a, names, int((~keep).sum()))


def spline_basis(dose: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """The dose's columns in the model: dose and its k − 2 non-linear terms (rms's ``rcs``)."""
    return restricted_cubic_spline(np.asarray(dose, float), np.asarray(knots, float))


@dataclass(frozen=True)
class CoxSummary:
    """An unpenalised Cox fit (Efron ties): coefficients, their covariance and the log partial likelihood."""

    coef: np.ndarray
    covariance: np.ndarray
    loglik: float
    loglik_null: float  # at β = 0

    @property
    def aic(self) -> float:
        """AIC as R's ``AIC(coxph)``: −2 log partial likelihood + 2 × coefficients."""
        return -2 * self.loglik + 2 * len(self.coef)


def _orthonormal(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Z, A) with X − mean = Z·A and Z's columns orthogonal with mean square 1 (QR, scaled by √n)."""
    Xc = np.asarray(X, float)
    Xc = Xc - Xc.mean(axis=0)
    q, r = np.linalg.qr(Xc)
    if np.abs(np.diag(r)).min() <= 1e-10 * max(np.abs(np.diag(r)).max(), 1e-300):
        raise ValueError("the Cox fit has a constant or redundant column")
    scale = np.sqrt(len(Xc))
    return q * scale, r / scale


def cox_coef(X: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """The coefficients of :func:`cox_summary` alone, by the bare Newton fit (for the bootstrap)."""
    Z, A = _orthonormal(X)
    gamma, _, converged = newton_fit(Z, np.asarray(time, float), np.asarray(event, bool))
    if not converged:
        raise ValueError("the Cox fit does not converge (a covariate separates the events)")
    return np.asarray(np.linalg.solve(A, gamma))


def cox_summary(X: np.ndarray, time: np.ndarray, event: np.ndarray, ties: str = "efron") -> CoxSummary:
    """Fit ``CoxPH(penalty=0, ties=ties)`` on X; a ValueError when the fit does not converge (separation).

    The fit runs on orthonormal columns (X centred = Q·R, fitted on Q·√n) and is mapped back
    (β = (R/√n)⁻¹ γ, V = (R/√n)⁻¹ V_γ (R/√n)⁻ᵀ; the likelihood is unchanged). A spline's columns
    are nearly collinear, and on them one-at-a-time standardisation can make a well-determined
    coefficient look like separation to ``CoxPH``'s divergence guard.
    """
    y = survival_array(event, time)
    Z, A = _orthonormal(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RiskModelWarning)
        model = CoxPH(penalty=0, ties=ties).fit(Z, y)  # type: ignore[arg-type]
    if not model.converged_ or model.constant_.any():
        raise ValueError("the Cox fit does not converge (a covariate separates the events)")
    back = np.linalg.inv(A)
    covariance = back @ np.linalg.inv(model.information_) @ back.T
    return CoxSummary(back @ model.coef_, covariance, model.log_likelihood_, model.log_likelihood_null_)


def null_loglik(data: DoseData) -> float:
    """The log partial likelihood without the dose: the adjustment covariates alone, or β = 0."""
    if data.adjust.shape[1]:
        return cox_summary(data.adjust, data.time, data.event).loglik
    return cox_summary(data.dose[:, None], data.time, data.event).loglik_null


@dataclass
class DoseResponse:
    """A spline dose-response: the curve, its tests and the fits behind them.

    ``curve``: ``dose``, ``log_hr`` (against ``reference``), ``se``, ``lower``, ``upper`` (pointwise,
    at ``level``), ``hr``. ``tests``: rows ``overall`` and ``nonlinear``, columns ``test`` (LR or
    Wald), ``chi2``, ``df``, ``p``. ``coef``/``covariance`` are the spline fit's (dose columns
    first, then the adjustment covariates).
    """

    knots: np.ndarray
    reference: float
    level: float
    curve: pd.DataFrame
    tests: pd.DataFrame
    coef: pd.Series
    covariance: pd.DataFrame
    loglik: dict[str, float]  # null, linear, spline
    patients: int
    events: int
    missing: int

    def test(self, hypothesis: str, kind: str = "LR") -> tuple[float, int, float]:
        """(χ², df, p) of ``overall`` or ``nonlinear``, by likelihood ratio (``LR``) or ``Wald``."""
        row = self.tests[(self.tests["hypothesis"] == hypothesis) & (self.tests["test"] == kind)].iloc[0]
        return float(row["chi2"]), int(row["df"]), float(row["p"])


def _wald(coef: np.ndarray, covariance: np.ndarray, idx: Sequence[int]) -> float:
    b = coef[list(idx)]
    return float(b @ np.linalg.solve(covariance[np.ix_(idx, idx)], b))


def _tests(spline: CoxSummary, ll_linear: float, ll_null: float, k: int) -> pd.DataFrame:
    rows = []
    for hypothesis, lr, df, idx in (
        ("overall", 2 * (spline.loglik - ll_null), k - 1, range(k - 1)),
        ("nonlinear", 2 * (spline.loglik - ll_linear), k - 2, range(1, k - 1)),
    ):
        wald = _wald(spline.coef, spline.covariance, list(idx))
        for kind, chi2 in (("LR", lr), ("Wald", wald)):
            rows.append(
                {"hypothesis": hypothesis, "test": kind, "chi2": chi2, "df": df, "p": float(stats.chi2.sf(chi2, df))}
            )
    return pd.DataFrame(rows)


def _grid(dose: np.ndarray, grid: Any) -> np.ndarray:
    if grid is not None:
        return np.asarray(grid, float)
    bounds = shared_range(dose) or (float(dose.min()), float(dose.max()))
    return np.linspace(bounds[0], bounds[1], 100)


def pointwise_band(
    name: str, x: np.ndarray, contrast: np.ndarray, coef: np.ndarray, covariance: np.ndarray, level: float
) -> pd.DataFrame:
    """A log hazard ratio curve with its pointwise Wald band: at each ``x`` (column ``name``),
    log HR = cᵀβ for that row c of ``contrast`` (the model columns' change from the reference),
    se = √(cᵀVc) (V the coefficients' ``covariance``), and ``level`` limits log HR ± z·se; ``hr``
    its exponential (the band of rms's Predict: Harrell, Regression Modeling Strategies)."""
    log_hr = contrast @ coef
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", contrast, covariance, contrast), 0.0))
    z = stats.norm.ppf(0.5 + level / 2)
    return pd.DataFrame(
        {
            name: x,
            "log_hr": log_hr,
            "se": se,
            "lower": log_hr - z * se,
            "upper": log_hr + z * se,
            "hr": np.exp(log_hr),
        }
    )


def dose_response(
    time: Any,
    event: Any,
    dose: Any,
    adjust: pd.DataFrame | None = None,
    knots: int | Sequence[float] = 4,
    *,
    reference: float | None = None,
    grid: Any = None,
    level: float = 0.95,
    name: str = "dose",
) -> DoseResponse:
    """Cox fit with ``rcs(dose, knots)`` (+ ``adjust``): partial-effect curve with band, LR and Wald tests.

    ``knots``: how many (3-7, placed by Harrell's rule) or the knot positions themselves.
    ``reference``: the dose whose log hazard ratio is 0 (default: the median dose, rms's
    adjust-to value). ``grid``: the doses of the curve (default: 100 from the 5th smallest to the
    5th largest dose). Rows missing any value are left out and counted (``missing``).
    """
    data = dose_data(time, event, dose, adjust)
    k_pos = harrell_knots(data.dose, knots) if isinstance(knots, (int, np.integer)) else np.asarray(knots, float)
    if k_pos.size < 3 or np.any(np.diff(k_pos) <= 0):
        raise UserInputError(f"knots must be at least 3 increasing positions, got {k_pos.tolist()}")
    k = len(k_pos)
    basis = spline_basis(data.dose, k_pos)
    spline = cox_summary(np.column_stack([basis, data.adjust]), data.time, data.event)
    linear = cox_summary(np.column_stack([data.dose, data.adjust]), data.time, data.event)
    ll_null = null_loglik(data)
    ref = float(np.median(data.dose)) if reference is None else float(reference)
    x = _grid(data.dose, grid)
    contrast = spline_basis(x, k_pos) - spline_basis(np.array([ref]), k_pos)
    curve = pointwise_band("dose", x, contrast, spline.coef[: k - 1], spline.covariance[: k - 1, : k - 1], level)
    names = [name, *(name + "'" * i for i in range(1, k - 1)), *data.adjust_names]
    return DoseResponse(
        knots=k_pos,
        reference=ref,
        level=level,
        curve=curve,
        tests=_tests(spline, linear.loglik, ll_null, k),
        coef=pd.Series(spline.coef, index=names),
        covariance=pd.DataFrame(spline.covariance, index=names, columns=names),
        loglik={"null": ll_null, "linear": linear.loglik, "spline": spline.loglik},
        patients=len(data.time),
        events=int(data.event.sum()),
        missing=data.missing,
    )
