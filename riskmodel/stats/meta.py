"""Random-effects meta-analysis of per-centre estimates, as R's ``metafor::rma`` computes it.

The model is the normal-normal one, ``y_i ~ N(mu + u_i, v_i)``, ``u_i ~ N(0, tau²)``, with the
within-centre variances ``v_i`` taken as known (DerSimonian & Laird, *Control Clin Trials*
1986;7:177-88; Viechtbauer, *J Stat Softw* 2010;36(3), the metafor paper). Intercept only: one
pooled mean over the k centres.

tau² (metafor 3.8's ``rma.uni``, intercept-only case):

- **DL** (DerSimonian-Laird): with w_i = 1/v_i, Q = Σ w_i (y_i − ȳ_w)² and
  ``tr(P) = Σw − Σw²/Σw``, tau² = max(0, (Q − (k − 1)) / tr(P)).
- **REML**: Fisher scoring from the Hedges (HE) start ``max(0, (Σ(y − ȳ)² − (1 − 1/k)·Σv)/(k − 1))``;
  each step adds ``(yᵀPPy − tr P) / tr(PP)`` with ``W = diag(1/(v + tau²))`` and
  ``P = W − W11ᵀW/1ᵀW1``, halving it while tau² would fall below 0, until the change is at most
  ``tol`` (metafor's ``threshold``, 1e-5) or ``max_iter`` (100) steps; then, as metafor's
  ``ll0check``, tau² = 0 if the restricted log-likelihood at 0 is larger by more than
  ``.Machine$double.eps^0.25`` (a stuck ascent). With metafor's defaults the iterates are
  metafor's own, so the results agree to rounding, not merely to the tolerance.

Given tau²: w*_i = 1/(v_i + tau²), mu = Σw*y/Σw*, SE = √(1/Σw*), z = mu/SE, a normal CI and p
(metafor's ``test="z"``, the default). ``test="knha"`` (Hartung-Knapp-Sidik-Jonkman; Knapp &
Hartung, *Stat Med* 2003;22:2693-710) multiplies the variance by ``Σw*(y − mu)²/(k − 1)`` (not
truncated at 1, as metafor; 0 when that sum is below machine epsilon) and uses t with k − 1 df.

Heterogeneity (metafor's ``i2def="1"``; Higgins & Thompson, *Stat Med* 2002;21:1539-58): Q and its
χ² p on k − 1 df from the fixed-effect weights; the typical within-centre variance
``vt = (k − 1)/tr(P)``; I² = 100·tau²/(vt + tau²) and H² = tau²/vt + 1.

The prediction interval for a new centre's true value is ``predict.rma``'s: mu ± crit·√(SE² + tau²),
with crit the CI's own (normal for ``test="z"``, t on k − 1 df for ``"knha"``). ``prediction="riley"``
uses t on k − 2 df instead (Riley, Higgins & Deeks, *BMJ* 2011;342:d549; metafor's
``pi.type="riley"``), which is wider for few centres and needs k ≥ 3.

Performance measures go to the meta-analysis on scales where they are nearer normal (Debray et
al., *BMJ* 2017;356:i6460, "A guide to systematic review and meta-analysis of prediction model
performance"): the C-index on the logit scale, with the delta-method variance
``var(C)/(C(1 − C))²``; O/E on the log scale (its variance, without a given SE, ≈ 1/O, Poisson
events); the calibration slope as it is. :func:`pool_c_index`, :func:`pool_log_oe` and
:func:`pool_calibration_slope` transform, pool with :func:`random_effects` and transform the
estimate, CI and prediction interval back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from riskmodel.errors import UserInputError

__all__ = [
    "MetaAnalysis",
    "PooledMeasure",
    "logit_c_index",
    "pool_c_index",
    "pool_calibration_slope",
    "pool_log_oe",
    "random_effects",
]

Method = Literal["REML", "DL"]
Test = Literal["z", "knha"]
Prediction = Literal["default", "riley"]
# metafor's con$tol: how much larger the likelihood at tau² = 0 must be to reset tau²
_LL0_TOL = float(np.finfo(float).eps) ** 0.25


@dataclass(frozen=True)
class MetaAnalysis:
    """A random-effects pooled mean, in metafor's terms (``rma`` and ``predict``).

    ``estimate``, ``se``, ``statistic`` (z, or t for Hartung-Knapp), ``p``, ``lower``/``upper``
    (the ``level`` CI), ``tau2``, ``i2`` (percent), ``h2``, ``q`` (Cochran's, on ``k − 1`` df)
    and ``q_p``; ``pi_lower``/``pi_upper``: the prediction interval for a new centre;
    ``weights``: each centre's share of the weight, in percent; ``iterations``: REML's Fisher
    scoring steps (0 for DL).
    """

    method: str
    test: str
    prediction: str
    level: float
    k: int
    estimate: float
    se: float
    statistic: float
    p: float
    lower: float
    upper: float
    tau2: float
    i2: float
    h2: float
    q: float
    q_p: float
    pi_lower: float
    pi_upper: float
    weights: np.ndarray
    iterations: int

    @property
    def tau(self) -> float:
        """tau, the between-centre standard deviation."""
        return math.sqrt(self.tau2)


@dataclass(frozen=True)
class PooledMeasure:
    """A performance measure pooled on its analysis ``scale`` and shown back on its own.

    ``meta`` holds the analysis-scale result (logit C, log O/E, slope); ``estimate``, ``lower``,
    ``upper``, ``pi_lower`` and ``pi_upper`` are back-transformed (C, O/E, slope).
    """

    measure: str
    scale: str
    meta: MetaAnalysis
    estimate: float
    lower: float
    upper: float
    pi_lower: float
    pi_upper: float


def _checked(yi: Sequence[float] | np.ndarray, vi: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(yi, dtype=float).ravel()
    v = np.asarray(vi, dtype=float).ravel()
    if y.shape != v.shape:
        raise UserInputError(f"meta-analysis: {y.size} estimates but {v.size} variances; give one variance each")
    if y.size < 2:
        raise UserInputError(f"meta-analysis: {y.size} centre(s); pooling across centres needs at least 2")
    for name, values in (("estimate", y), ("variance", v)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise UserInputError(
                f"meta-analysis: centre {bad[0] + 1}'s {name} is {float(values[bad[0]])}; it must be finite"
            )
    bad = np.flatnonzero(v <= 0)
    if bad.size:
        raise UserInputError(
            f"meta-analysis: centre {bad[0] + 1}'s variance is {float(v[bad[0]])}; it must be positive"
        )
    return y, v


def _projection(w: np.ndarray) -> np.ndarray:
    # P = W - W 1 (1'W1)^-1 1'W, intercept-only
    projection: np.ndarray = np.diag(w) - np.outer(w, w) / w.sum()
    return projection


def _dl_tau2(y: np.ndarray, v: np.ndarray) -> float:
    w = 1 / v
    mu = float(np.sum(w * y) / w.sum())
    q = float(np.sum(w * (y - mu) ** 2))
    tr_p = float(w.sum() - np.sum(w**2) / w.sum())
    return max(0.0, (q - (y.size - 1)) / tr_p)


def _reml_loglik(y: np.ndarray, v: np.ndarray, tau2: float) -> float:
    # restricted log-likelihood up to the constant metafor also drops from both sides of ll0check
    w = 1 / (v + tau2)
    mu = float(np.sum(w * y) / w.sum())
    return float(-0.5 * np.sum(np.log(v + tau2)) - 0.5 * math.log(w.sum()) - 0.5 * np.sum(w * (y - mu) ** 2))


def _reml_tau2(y: np.ndarray, v: np.ndarray, tol: float, max_iter: int) -> tuple[float, int]:
    k = y.size
    centred = y - y.mean()
    tau2 = max(0.0, (float(np.sum(centred**2)) - (1 - 1 / k) * float(v.sum())) / (k - 1))
    change, iterations = tol + 1, 0
    while change > tol:
        iterations += 1
        p_mat = _projection(1 / (v + tau2))
        pp = p_mat @ p_mat
        step = (float(centred @ pp @ centred) - float(np.trace(p_mat))) / float(np.trace(pp))
        if not math.isfinite(step):
            step = 0.0
        while tau2 + step < 0:
            step /= 2
        old, tau2 = tau2, tau2 + step
        change = abs(old - tau2)
        if iterations > max_iter:
            raise UserInputError(
                f"meta-analysis: REML's Fisher scoring did not converge in {max_iter} steps (tau² {tau2:.6g}); "
                "try method DL"
            )
    if _reml_loglik(y, v, 0.0) - _reml_loglik(y, v, tau2) > _LL0_TOL and tau2 > tol:
        tau2 = 0.0
    return max(0.0, tau2), iterations


def random_effects(
    yi: Sequence[float] | np.ndarray,
    vi: Sequence[float] | np.ndarray,
    *,
    method: Method = "REML",
    test: Test = "z",
    prediction: Prediction = "default",
    level: float = 0.95,
    tol: float = 1e-5,
    max_iter: int = 100,
) -> MetaAnalysis:
    """Pool estimates ``yi`` with within-centre variances ``vi`` (see the module docstring).

    Matches ``metafor::rma(yi, vi, method=method, test=test, level=100*level)`` and
    ``predict(…, pi.type=prediction)``; ``tol`` and ``max_iter`` are metafor's ``threshold`` and
    ``maxiter``.
    """
    y, v = _checked(yi, vi)
    if method not in ("REML", "DL"):
        raise UserInputError(f"meta-analysis: method {method!r} is not one of REML, DL")
    if test not in ("z", "knha"):
        raise UserInputError(f"meta-analysis: test {test!r} is not one of z, knha")
    if prediction not in ("default", "riley"):
        raise UserInputError(f"meta-analysis: prediction {prediction!r} is not one of default, riley")
    if not 0 < level < 1:
        raise UserInputError(f"meta-analysis: level {level!r} must lie between 0 and 1")
    k = y.size
    if prediction == "riley" and k < 3:
        raise UserInputError(f"meta-analysis: a Riley prediction interval needs at least 3 centres, got {k}")
    tau2, iterations = _reml_tau2(y, v, tol, max_iter) if method == "REML" else (_dl_tau2(y, v), 0)

    w = 1 / (v + tau2)
    estimate = float(np.sum(w * y) / w.sum())
    variance = 1 / float(w.sum())
    alpha = 1 - level
    if test == "knha":
        rss = float(np.sum(w * (y - estimate) ** 2))
        variance *= 0.0 if rss <= np.finfo(float).eps else rss / (k - 1)
        crit = float(stats.t.ppf(1 - alpha / 2, k - 1))
    else:
        crit = float(stats.norm.ppf(1 - alpha / 2))
    se = math.sqrt(variance)
    statistic = estimate / se if se > 0 else math.copysign(math.inf, estimate)
    tail = stats.t.sf(abs(statistic), k - 1) if test == "knha" else stats.norm.sf(abs(statistic))
    p = float(2 * tail)

    w_fe = 1 / v
    q = max(0.0, float(np.sum(w_fe * (y - np.sum(w_fe * y) / w_fe.sum()) ** 2)))
    vt = (k - 1) / float(w_fe.sum() - np.sum(w_fe**2) / w_fe.sum())
    pi_crit = float(stats.t.ppf(1 - alpha / 2, k - 2)) if prediction == "riley" else crit
    pi_half = pi_crit * math.sqrt(variance + tau2)
    return MetaAnalysis(
        method=method,
        test=test,
        prediction=prediction,
        level=level,
        k=k,
        estimate=estimate,
        se=se,
        statistic=statistic,
        p=p,
        lower=estimate - crit * se,
        upper=estimate + crit * se,
        tau2=tau2,
        i2=100 * tau2 / (vt + tau2),
        h2=tau2 / vt + 1,
        q=q,
        q_p=float(stats.chi2.sf(q, k - 1)),
        pi_lower=estimate - pi_half,
        pi_upper=estimate + pi_half,
        weights=100 * w / w.sum(),
        iterations=iterations,
    )


def _back(measure: str, scale: str, meta: MetaAnalysis, inverse: Callable[[float], float]) -> PooledMeasure:
    return PooledMeasure(
        measure=measure,
        scale=scale,
        meta=meta,
        estimate=inverse(meta.estimate),
        lower=inverse(meta.lower),
        upper=inverse(meta.upper),
        pi_lower=inverse(meta.pi_lower),
        pi_upper=inverse(meta.pi_upper),
    )


def _expit(x: float) -> float:
    return float(1 / (1 + math.exp(-x))) if x >= 0 else float(math.exp(x) / (1 + math.exp(x)))


def logit_c_index(c: Sequence[float] | np.ndarray, se: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C-indices and their SEs as (logit C, its delta-method variance ``se²/(C(1 − C))²``).

    >>> y, v = logit_c_index([0.75], [0.03])
    >>> round(float(y[0]), 6), round(float(v[0]), 6)
    (1.098612, 0.0256)
    """
    c_arr = np.asarray(c, dtype=float).ravel()
    se_arr = np.asarray(se, dtype=float).ravel()
    bad = np.flatnonzero(~((c_arr > 0) & (c_arr < 1)))
    if bad.size:
        raise UserInputError(
            f"meta-analysis: centre {bad[0] + 1}'s C is {float(c_arr[bad[0]])}; it must lie strictly between 0 and 1"
        )
    return np.log(c_arr / (1 - c_arr)), se_arr**2 / (c_arr * (1 - c_arr)) ** 2


def pool_c_index(
    c: Sequence[float] | np.ndarray,
    se: Sequence[float] | np.ndarray,
    *,
    method: Method = "REML",
    test: Test = "z",
    prediction: Prediction = "default",
    level: float = 0.95,
) -> PooledMeasure:
    """Pool per-centre C-indices on the logit scale (Debray et al. 2017) and return them as C."""
    y, v = logit_c_index(c, se)
    meta = random_effects(y, v, method=method, test=test, prediction=prediction, level=level)
    return _back("C-index", "logit", meta, _expit)


def pool_log_oe(
    oe: Sequence[float] | np.ndarray,
    se_log_oe: Sequence[float] | np.ndarray | None = None,
    *,
    observed: Sequence[float] | np.ndarray | None = None,
    method: Method = "REML",
    test: Test = "z",
    prediction: Prediction = "default",
    level: float = 0.95,
) -> PooledMeasure:
    """Pool per-centre O/E ratios on the log scale and return them as O/E.

    The variance of log O/E is ``se_log_oe²`` when given (a bootstrap's, say), else ``1/observed``
    (Debray et al. 2017: the observed count of events as Poisson).
    """
    ratio = np.asarray(oe, dtype=float).ravel()
    bad = np.flatnonzero(~(np.isfinite(ratio) & (ratio > 0)))
    if bad.size:
        raise UserInputError(f"meta-analysis: centre {bad[0] + 1}'s O/E is {float(ratio[bad[0]])}; it must be positive")
    if se_log_oe is not None:
        v = np.asarray(se_log_oe, dtype=float).ravel() ** 2
    elif observed is not None:
        events = np.asarray(observed, dtype=float).ravel()
        if np.any(events <= 0):
            raise UserInputError("meta-analysis: a centre has no observed events; log O/E needs at least one")
        v = 1 / events
    else:
        raise UserInputError("meta-analysis: log O/E needs either its SE or the observed events per centre")
    meta = random_effects(np.log(ratio), v, method=method, test=test, prediction=prediction, level=level)
    return _back("O/E", "log", meta, math.exp)


def pool_calibration_slope(
    slope: Sequence[float] | np.ndarray,
    se: Sequence[float] | np.ndarray,
    *,
    method: Method = "REML",
    test: Test = "z",
    prediction: Prediction = "default",
    level: float = 0.95,
) -> PooledMeasure:
    """Pool per-centre calibration slopes as they are (Debray et al. 2017)."""
    se_arr = np.asarray(se, dtype=float).ravel()
    meta = random_effects(slope, se_arr**2, method=method, test=test, prediction=prediction, level=level)
    return _back("calibration slope", "identity", meta, float)
