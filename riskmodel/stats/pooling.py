"""Rubin's rules: one estimate and its variance from m analyses of multiply imputed data.

Per coefficient, over the m completed-data estimates Q_l with variances U_l (Rubin 1987,
*Multiple Imputation for Nonresponse in Surveys*, §3.1; van Buuren, *Flexible Imputation of
Missing Data*, 2nd ed., §2.3), as R's ``mice::pool`` computes them (mice 3.15,
``mice:::pool.fitlist`` with ``rule = "rubin1987"`` and ``mice:::barnard.rubin``):

    qbar = mean(Q_l)                      ubar = mean(U_l)             (within)
    b = Σ (Q_l − qbar)² / (m − 1)                                      (between)
    t = ubar + (1 + 1/m)·b                                              (total)
    riv = (1 + 1/m)·b / ubar              lambda = (1 + 1/m)·b / t
    fmi = (riv + 2/(df + 3)) / (riv + 1)

``df`` is Barnard & Rubin's (Biometrika 1999;86:948-55) small-sample degrees of freedom, with
``dfcom`` the complete-data residual degrees of freedom:

    df_old = (m − 1) / lambda²
    df_obs = (dfcom + 1)/(dfcom + 3) · dfcom · (1 − lambda)
    df = df_old·df_obs / (df_old + df_obs)          (df_old when dfcom is infinite)

where, as in mice, lambda is floored at 1e-4 inside this formula only (so b = 0 gives a finite
df ≈ df_obs, and fmi = 2/(df + 3)), and ``dfcom`` is floored at 1. Inference is on a t
distribution with ``df`` degrees of freedom: SE = √t, statistic = qbar/SE, p = 2·P(T > |statistic|)
with df floored at 0.001 (mice's ``summary.mipo``), CI = qbar ± t_{df, (1+level)/2}·SE
(``confint.mipo``).

m = 1 is not pooling (mice refuses it with a warning and returns the one fit): the single
analysis is returned as it is, t = ubar, df = dfcom, and b, riv, lambda and fmi are NaN,
because the between-imputation variance needs m ≥ 2. A warning says the SE then ignores the
uncertainty of the imputation.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from riskmodel.errors import RiskModelWarning, UserInputError

__all__ = ["PooledEstimates", "barnard_rubin_df", "rubin_pool"]

# mice's barnard.rubin floors lambda here, so that b = 0 gives a finite df
_LAMBDA_FLOOR = 1e-4
# mice's summary.mipo floors df here for the p value (a df of 0 has no t distribution)
_DF_FLOOR_P = 0.001


@dataclass(frozen=True)
class PooledEstimates:
    """Rubin's rules per coefficient (arrays of length p), in mice's ``pool()`` terms.

    ``estimate`` (qbar), ``ubar`` (within), ``b`` (between), ``t`` (total variance), ``df``
    (Barnard-Rubin), ``riv`` (relative increase in variance), ``lambda_`` (mice's ``lambda``:
    the share of the total variance due to missingness), ``fmi`` (fraction of missing
    information); ``se``, ``statistic``, ``p``, ``lower`` and ``upper`` (the ``level`` CI) on the
    coefficient scale. ``m`` and ``dfcom`` are the number of analyses and the complete-data df.
    """

    m: int
    dfcom: float
    level: float
    estimate: np.ndarray
    ubar: np.ndarray
    b: np.ndarray
    t: np.ndarray
    df: np.ndarray
    riv: np.ndarray
    lambda_: np.ndarray
    fmi: np.ndarray
    se: np.ndarray
    statistic: np.ndarray
    p: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @property
    def ratio(self) -> np.ndarray:
        """exp(estimate): the hazard (or odds) ratio when the estimates are log ratios."""
        return np.asarray(np.exp(self.estimate), float)

    @property
    def ratio_lower(self) -> np.ndarray:
        """exp(lower): the ratio's lower confidence limit."""
        return np.asarray(np.exp(self.lower), float)

    @property
    def ratio_upper(self) -> np.ndarray:
        """exp(upper): the ratio's upper confidence limit."""
        return np.asarray(np.exp(self.upper), float)


def barnard_rubin_df(m: int, b: Any, t: Any, dfcom: float = math.inf) -> np.ndarray:
    """Barnard & Rubin's (1999) degrees of freedom, exactly as ``mice:::barnard.rubin``.

    >>> round(float(barnard_rubin_df(5, 1.0, 2.2, math.inf)[0]), 6)  # lambda = 1.2/2.2, so 4/lambda² = 121/9
    13.444444
    """
    lam = (1 + 1 / m) * np.atleast_1d(np.asarray(b, float)) / np.asarray(t, float)
    lam = np.where(lam < _LAMBDA_FLOOR, _LAMBDA_FLOOR, lam)
    df_old = (m - 1) / lam**2
    if math.isinf(dfcom):
        return np.asarray(df_old, float)
    df_obs = (dfcom + 1) / (dfcom + 3) * dfcom * (1 - lam)
    return np.asarray(df_old * df_obs / (df_old + df_obs), float)


def _as_variances(variances: Any, m: int, p: int) -> np.ndarray:
    """(m, p) variances from (m, p) variances or (m, p, p) covariance matrices (their diagonals)."""
    v = np.asarray(variances, dtype=float)
    if v.ndim == 3 and v.shape == (m, p, p):
        v = np.diagonal(v, axis1=1, axis2=2)
    if v.shape != (m, p):
        raise UserInputError(
            f"variances must be {m} rows of {p} variances or {m} covariance matrices {p}×{p}, got shape {v.shape}"
        )
    if (v < 0).any():
        raise UserInputError("variances must be ≥ 0; a negative variance means a failed fit")
    return v


def _check_inputs(q: np.ndarray, dfcom: float, level: float) -> None:
    if q.ndim != 2 or q.shape[0] < 1 or q.shape[1] < 1:
        raise UserInputError(f"estimates must be m rows (one per imputation) of p coefficients, got shape {q.shape}")
    if math.isnan(dfcom) or dfcom <= 0:
        raise UserInputError(f"dfcom must be a positive number of degrees of freedom (or inf), got {dfcom!r}")
    if not 0 < level < 1:
        raise UserInputError(f"level must be between 0 and 1, got {level!r}")


def rubin_pool(estimates: Any, variances: Any, dfcom: float = math.inf, level: float = 0.95) -> PooledEstimates:
    """Pool m completed-data analyses by Rubin's rules (see the module docstring for the formulas).

    Parameters
    ----------
    estimates
        m × p coefficients, one row per imputed dataset (a length-m vector for one coefficient).
    variances
        m × p variances, or m covariance matrices p × p (only their diagonals are used, as mice).
    dfcom
        Degrees of freedom of the complete-data analysis (mice's ``dfcom``; for a Cox model mice
        uses events − p). ``inf`` gives Rubin's 1987 large-sample df. Floored at 1, as mice.
    level
        Confidence level of ``lower`` and ``upper``.

    By hand: qbar = 0.5, ubar = 0.02, b = (0.1² + 0.1²)/1 = 0.02, t = 0.02 + 1.5·0.02 = 0.05, riv = 1.5.

    >>> pooled = rubin_pool([[0.4], [0.6]], [[0.01], [0.03]])
    >>> [round(float(x[0]), 12) for x in (pooled.estimate, pooled.ubar, pooled.b, pooled.t, pooled.riv)]
    [0.5, 0.02, 0.02, 0.05, 1.5]
    """
    q, u = np.asarray(estimates, dtype=float), np.asarray(variances, dtype=float)
    if q.ndim == 1:  # m analyses of one coefficient
        q, u = q[:, None], (u[:, None] if u.ndim == 1 else u)
    _check_inputs(q, dfcom, level)
    m, p = q.shape
    u = _as_variances(u, m, p)
    dfcom = max(float(dfcom), 1.0)
    qbar, ubar = q.mean(axis=0), u.mean(axis=0)
    if m == 1:
        warnings.warn(
            "m = 1: one imputed dataset is not pooled; its SE ignores the uncertainty of the imputation",
            RiskModelWarning,
            stacklevel=2,
        )
        b, riv, lam, fmi = (np.full(p, np.nan) for _ in range(4))
        t, df = ubar, np.full(p, dfcom)
    else:
        b = q.var(axis=0, ddof=1)
        t = ubar + (1 + 1 / m) * b
        df = barnard_rubin_df(m, b, t, dfcom)
        with np.errstate(divide="ignore", invalid="ignore"):  # ubar = 0 only for a degenerate fit
            riv = (1 + 1 / m) * b / ubar
            lam = (1 + 1 / m) * b / t
        fmi = (riv + 2 / (df + 3)) / (riv + 1)
    se = np.sqrt(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = qbar / se
    p_value = 2 * stats.t.sf(np.abs(statistic), np.maximum(df, _DF_FLOOR_P))
    half = stats.t.ppf((1 + level) / 2, df) * se
    return PooledEstimates(
        m, dfcom, level, qbar, ubar, b, t, df, riv, lam, fmi, se, statistic, p_value, qbar - half, qbar + half
    )
