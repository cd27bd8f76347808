"""Tests of proportional hazards as R's ``survival::cox.zph`` computes them since survival 3.0.

Method (Therneau, survival's ``noweb/zph.Rnw``, "The cox.zph function"; Grambsch & Therneau,
Biometrika 1994;81:515-26): let each coefficient vary with time as β_j + γ_j·g(t), i.e. add the p
covariates x·g(t) to the model, and test γ = 0 with a score test at (β̂, 0). At the k-th death,
with x̄_k and V_k the mean and variance of x over its risk set (weights e^{xβ̂}; Efron's share for
tied deaths),

    U = Σ_k g_k (x_k − x̄_k),      H = | Σ V_k      Σ g_k V_k  |
                                       | Σ g_k V_k  Σ g_k² V_k |.

The score of the first p terms is 0 at β̂, so the test for covariate j is (0, U_j) H_jj⁻¹ (0, U_j)ᵀ
with H_jj the rows and columns of β and γ_j (1 df), and the global test (0, U) H⁻¹ (0, U)ᵀ (p df).
g is the transformed time, centred at its mean over the deaths: 1 − Kaplan-Meier just before t
("km", R's default), the rank of t among all times ("rank", average ranks for ties) or t itself
("identity"). Survival < 3.0 (and lifelines) instead assumed V_k constant in time, which drops
Σ g V and can be far off in small samples.

The scaled Schoenfeld residuals (for the plot of β(t)) are R's: the residual at each death times
the inverse of the average information per death, plus β̂.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from riskmodel.stats.kaplan_meier import kaplan_meier
from riskmodel.stats.splines import restricted_cubic_spline

__all__ = [
    "TRANSFORMS",
    "PHSmooth",
    "PHTermTests",
    "PHTest",
    "Transform",
    "ph_smooth",
    "ph_term_tests",
    "ph_test",
    "transformed_time",
]

Transform = Literal["km", "rank", "identity"]
TRANSFORMS: tuple[Transform, ...] = ("km", "rank", "identity")


@dataclass(frozen=True)
class PHTest:
    """The score tests of proportional hazards and the scaled Schoenfeld residuals behind them.

    Per covariate: ``coef`` (β̂, as given), ``chisq`` and ``p`` (1 df each); ``global_chisq`` and
    ``global_p`` on ``global_df`` df. NaN for a constant covariate (R drops it). Per death, in time order:
    ``event_time``, ``transformed_time`` (g before centring, R's ``x``) and the rows of
    ``scaled_residuals`` (R's ``y``); ``residual_variance`` is R's ``var``, the variance of one
    scaled residual, which the smoother's band uses.
    """

    transform: Transform
    coef: np.ndarray
    chisq: np.ndarray
    p: np.ndarray
    global_chisq: float
    global_df: int
    global_p: float
    event_time: np.ndarray
    transformed_time: np.ndarray
    scaled_residuals: np.ndarray
    residual_variance: np.ndarray


def transformed_time(time: np.ndarray, event: np.ndarray, transform: Transform = "km") -> np.ndarray:
    """g(t) for every subject, before centring, as ``cox.zph`` defines it.

    "km" is 1 − S(t−), the Kaplan-Meier of all subjects just before t (left-continuous, so tied
    deaths share a value). Deaths at 1 and 2 among four: S = 3/4 after 1, 1/2 after 2.

    >>> transformed_time(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 1, 0, 0]), "km").tolist()
    [0.0, 0.25, 0.5, 0.5]
    >>> transformed_time(np.array([2.0, 1.0, 2.0]), np.array([1, 1, 1]), "rank").tolist()
    [2.5, 1.0, 2.5]
    """
    time = np.asarray(time, float)
    if transform == "identity":
        return time.copy()
    if transform == "rank":
        return np.asarray(stats.rankdata(time), float)
    if transform == "km":
        t, s = kaplan_meier(time, np.asarray(event, bool))
        before = np.searchsorted(t, time, side="left")  # event times strictly before each time
        left_continuous: np.ndarray = 1.0 - np.r_[1.0, s][before]
        return left_continuous
    raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}; got {transform!r}")


def ph_test(
    X: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    beta: np.ndarray,
    *,
    transform: Transform = "km",
    ties: Literal["efron", "breslow"] = "efron",
) -> PHTest:
    """``cox.zph(fit, transform)`` for the Cox model with coefficients ``beta`` on (X, time, event).

    ``beta`` must be the maximum partial likelihood estimate with the same ``ties`` (R's
    ``coxph``): the test takes the score of β as 0 there, as R does.
    """
    X, time, event, beta = _checked(X, time, event, beta, ties)
    g = transformed_time(time, event, transform)
    order = np.argsort(time, kind="stable")  # R's order(): tied times keep their row order
    used, score, info, resid = _score_test_parts(X, time, event, beta, g, order, ties)
    q = int(used.sum())
    chisq = np.full(X.shape[1], np.nan)
    for out, j in enumerate(np.flatnonzero(used)):
        rows = [*range(q), q + out]
        chisq[j] = _quadratic(np.r_[np.zeros(q), score[out]], info[np.ix_(rows, rows)])
    global_chisq = _quadratic(np.r_[np.zeros(q), score], info)
    variance, scaled = _scaled_residuals(resid, info[:q, :q], beta[used], p=X.shape[1], used=used)
    deaths = order[event[order]]
    return PHTest(
        transform=transform,
        coef=np.where(used, beta, np.nan),
        chisq=chisq,
        p=stats.chi2.sf(chisq, 1),
        global_chisq=global_chisq,
        global_df=q,
        global_p=float(stats.chi2.sf(global_chisq, q)),
        event_time=time[deaths],
        transformed_time=g[deaths],
        scaled_residuals=scaled,
        residual_variance=variance,
    )


def _checked(
    X: np.ndarray, time: np.ndarray, event: np.ndarray, beta: np.ndarray, ties: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X = np.asarray(X, float)
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    beta = np.asarray(beta, float)
    if X.ndim != 2 or X.shape[0] != len(time) or len(event) != len(time) or beta.shape != (X.shape[1],):
        raise ValueError(f"X must be n × p with n = len(time) = len(event) and p = len(beta); got {X.shape}")
    if not event.any():
        raise ValueError("all samples are censored: there is no death to test at")
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow'; got {ties!r}")
    return X, time, event, beta


def _score_test_parts(
    X: np.ndarray, time: np.ndarray, event: np.ndarray, beta: np.ndarray, g: np.ndarray, order: np.ndarray, ties: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The non-constant columns, then :func:`_score_and_information` on them."""
    used = np.ptp(X, axis=0) > 0  # R drops a constant covariate (its coefficient is NA)
    Z = X[order][:, used]
    score, info, resid = _score_and_information(
        Z - Z.mean(axis=0), time[order], event[order], (g - g[event].mean())[order], beta[used], ties == "efron"
    )
    return used, score, info, resid


@dataclass(frozen=True)
class PHTermTests:
    """Score tests of proportional hazards per term (a covariate's columns tested together), as
    ``cox.zph(fit, terms = TRUE)``, R's default: ``chisq``, ``df`` and ``p`` per term, then global."""

    transform: Transform
    chisq: np.ndarray
    df: np.ndarray
    p: np.ndarray
    global_chisq: float
    global_df: int
    global_p: float


def ph_term_tests(
    X: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    beta: np.ndarray,
    terms: Sequence[Sequence[int]],
    *,
    transform: Transform = "km",
    ties: Literal["efron", "breslow"] = "efron",
) -> PHTermTests:
    """``cox.zph(fit, transform)`` with R's ``terms = TRUE``: each term's columns (``terms``, lists of
    column indices of X, e.g. a spline's or a factor's) are tested jointly, on as many df as it has
    non-constant columns: (0, U_S) H⁻¹ (0, U_S)ᵀ over the rows of β and γ_S. The global test is
    :func:`ph_test`'s. A term with no non-constant column gets NaN.

    >>> rng = np.random.default_rng(1)
    >>> X, t, e = rng.normal(size=(30, 2)), rng.exponential(size=30), rng.random(30) < 0.7
    >>> one, both = ph_test(X, t, e, np.zeros(2)), ph_term_tests(X, t, e, np.zeros(2), [[0], [1], [0, 1]])
    >>> bool(np.allclose(both.chisq[:2], one.chisq)), bool(np.isclose(both.chisq[2], one.global_chisq))
    (True, True)
    """
    X, time, event, beta = _checked(X, time, event, beta, ties)
    g = transformed_time(time, event, transform)
    order = np.argsort(time, kind="stable")
    used, score, info, _ = _score_test_parts(X, time, event, beta, g, order, ties)
    q = int(used.sum())
    position = np.cumsum(used) - 1  # a used column's place among the used ones
    chisq, df = np.full(len(terms), np.nan), np.zeros(len(terms), dtype=int)
    for i, term in enumerate(terms):
        inside = [int(position[j]) for j in term if used[j]]
        if not inside:
            continue
        rows = [*range(q), *(q + k for k in inside)]
        chisq[i] = _quadratic(np.r_[np.zeros(q), score[inside]], info[np.ix_(rows, rows)])
        df[i] = len(inside)
    global_chisq = _quadratic(np.r_[np.zeros(q), score], info)
    with np.errstate(invalid="ignore"):
        p = np.where(df > 0, stats.chi2.sf(chisq, np.maximum(df, 1)), np.nan)
    return PHTermTests(transform, chisq, df, p, global_chisq, q, float(stats.chi2.sf(global_chisq, q)))


def _score_and_information(
    Z: np.ndarray, time: np.ndarray, event: np.ndarray, g: np.ndarray, beta: np.ndarray, efron: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U of the γ block, the 2p × 2p information at (β, 0) and the Schoenfeld residuals.

    The input is sorted by time. Each death is one term k of the partial likelihood: with Efron,
    the i-th of d tied deaths (i = 0 … d − 1) sees the risk set with i/d of every tied death
    taken out. The second moments are summed per subject, each weighted by Σ_k g_k^m / s0_k over
    the terms whose risk set holds it, so no n × p × p array is built.
    """
    event_times, d = np.unique(time[event], return_counts=True)
    deaths = np.flatnonzero(event)
    group = np.repeat(np.arange(len(d)), d)  # the event time of each death
    start = np.r_[0, np.cumsum(d)[:-1]]
    frac = (np.arange(len(deaths)) - start[group]) / d[group] if efron else np.zeros(len(deaths))
    eta = Z @ beta
    w = np.exp(eta - eta.max())  # the shift cancels in every ratio below
    wz = w[:, None] * Z
    first = np.searchsorted(time, event_times, side="left")
    s0 = np.cumsum(w[::-1])[::-1][first][group] - frac * np.add.reduceat(w[deaths], start)[group]
    s1 = np.cumsum(wz[::-1], axis=0)[::-1][first][group] - frac[:, None] * np.add.reduceat(wz[deaths], start)[group]
    xbar = s1 / s0[:, None]
    gk = g[deaths]
    score = (gk[:, None] * (Z[deaths] - xbar)).sum(axis=0)
    # R's Schoenfeld residual of a tied death subtracts the mean of the tie's Efron means
    resid = Z[deaths] - (np.add.reduceat(xbar, start) / d[:, None])[group]
    events_up_to = np.searchsorted(event_times, time, side="right")
    blocks = []
    for m in range(3):
        per_time = np.bincount(group, gk**m / s0, len(d))
        tied_share = np.bincount(group, gk**m * frac / s0, len(d))
        weight = w * np.r_[0.0, np.cumsum(per_time)][events_up_to]
        weight[deaths] -= w[deaths] * tied_share[group]
        blocks.append((Z * weight[:, None]).T @ Z - (s1 * (gk**m / s0**2)[:, None]).T @ s1)
    information = np.block([[blocks[0], blocks[1]], [blocks[1], blocks[2]]])
    return score, information, resid


def _quadratic(u: np.ndarray, information: np.ndarray) -> float:
    """uᵀ H⁻¹ u, or NaN when H is singular."""
    try:
        return float(u @ np.linalg.solve(information, u))
    except np.linalg.LinAlgError:
        return float("nan")


def _scaled_residuals(
    resid: np.ndarray, information: np.ndarray, beta: np.ndarray, *, p: int, used: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """R's scaling: residual · (I/d)⁻¹ + β̂, with I/d the information per death; NaN where unused."""
    variance = np.full((p, p), np.nan)
    scaled = np.full((len(resid), p), np.nan)
    try:
        inverse = np.linalg.inv(information / len(resid))
    except np.linalg.LinAlgError:
        return variance, scaled
    variance[np.ix_(used, used)] = inverse
    scaled[:, used] = resid @ inverse + beta
    return variance, scaled


@dataclass(frozen=True)
class PHSmooth:
    """A smooth of β_j(t) on a grid of transformed time, with its pointwise band."""

    grid: np.ndarray
    fit: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def ph_smooth(test: PHTest, column: int, *, df: int = 4, points: int = 40, level: float = 0.95) -> PHSmooth | None:
    """The curve ``plot.cox.zph`` draws: scaled residuals regressed on g by a natural cubic spline.

    As R: ``df`` columns with the intercept (``ns(df=df, intercept=TRUE)``: knots at the range
    and the 1/(df−1), … quantiles of the ``points``-long grid and the deaths' g together), and a
    band of the fit ± z·√(var_jj · p(g)ᵀ(BᵀB)⁻¹p(g)). R draws ± 2 se; ``level`` 0.95 gives ± 1.96.
    None when the spline cannot be fitted (too few distinct times), where R skips the panel.
    """
    if df < 2:
        raise ValueError(f"df must be at least 2; got {df}")
    x, y = test.transformed_time, test.scaled_residuals[:, column]
    if not np.isfinite(y).all() or np.ptp(x) == 0:
        return None
    grid = np.linspace(x.min(), x.max(), points)
    lo, span = x.min(), np.ptp(x)
    knots = (np.quantile(np.r_[grid, x], np.linspace(0, 1, df)) - lo) / span
    if len(np.unique(knots)) < df:
        return None

    def basis(v: np.ndarray) -> np.ndarray:
        return np.column_stack([np.ones(len(v)), restricted_cubic_spline((v - lo) / span, knots)])

    q, r = np.linalg.qr(basis(x))
    if np.linalg.matrix_rank(r) < df:
        return None
    design = basis(grid)
    fit = design @ np.linalg.solve(r, q.T @ y)
    leverage = (np.linalg.solve(r.T, design.T) ** 2).sum(axis=0)  # diag of P (BᵀB)⁻¹ Pᵀ
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(test.residual_variance[column, column] * leverage)
    return PHSmooth(grid, fit, fit - half, fit + half)
