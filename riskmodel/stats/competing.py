"""Competing risks: the Aalen-Johansen cumulative incidence, the Fine-Gray model and Gray's test.

* :func:`aalen_johansen`: the cumulative incidence function (CIF) of one cause, exact with ties.
* :func:`fine_gray`: the proportional subdistribution hazards model of Fine & Gray (1999, JASA
  94:496-509), fitted as a Cox partial likelihood in which a patient with a competing event stays
  in the risk set with weight G(t-)/G(T_i-), G the Kaplan-Meier estimate of the censoring
  distribution (Geskus 2011, Biometrics 67:39-49). Ties are Breslow's, as ``cmprsk::crr``. The
  variance is Fine & Gray's robust sandwich (their section 3), including the term for the
  estimated censoring distribution (ψ), as ``crr`` reports it in ``var``.
* :func:`gray_test`: Gray's (1988, Ann. Statist. 16:1141-1154) K-sample test of equal CIFs (ρ = 0),
  optionally stratified, as ``cmprsk::cuminc(...)$Tests``.

Every sum over a risk set is a cumulative sum over patients sorted by time, so a Newton step costs
O(n·p² + k·p²) (k distinct event times) after one O(n log n) sort: no loop over patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from riskmodel.errors import UserInputError

__all__ = ["FineGrayFit", "GrayTest", "aalen_johansen", "fine_gray", "gray_test"]


def aalen_johansen(time: np.ndarray, event_type: np.ndarray, cause: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative incidence of ``cause`` with competing events, exact with tied times.

    CIF(t) = sum over event times t_j <= t of S(t_j-) · d_cause(t_j) / n(t_j), with S the all-cause
    Kaplan-Meier. (lifelines jitters tied times instead.) Two deaths of cause 1 at t=1 among 4,
    then a competing death at t=2: CIF(1) = 2/4; S(1) = 1/2; CIF(2) stays 1/2.

    >>> t, c = aalen_johansen(np.array([1.0, 1.0, 2.0, 3.0]), np.array([1, 1, 2, 0]))
    >>> t.tolist(), c.tolist()
    ([1.0, 2.0], [0.5, 0.5])
    """
    time = np.asarray(time, float)
    kind = np.asarray(event_type, int)
    event_times = np.unique(time[kind > 0])
    at_risk = len(time) - np.searchsorted(np.sort(time), event_times, side="left")
    d_all = np.array([np.sum((time == t) & (kind > 0)) for t in event_times])
    d_cause = np.array([np.sum((time == t) & (kind == cause)) for t in event_times])
    surv_before = np.concatenate([[1.0], np.cumprod(1 - d_all / at_risk)[:-1]])
    return event_times, np.cumsum(surv_before * d_cause / at_risk)


# ---------------------------------------------------------------------------------------------
# Fine-Gray


@dataclass(frozen=True)
class FineGrayFit:
    """A fitted Fine-Gray model. ``cumulative_hazard`` is the Breslow-type baseline cumulative
    subdistribution hazard at ``event_times`` for X = 0 (``cumsum(crr$bfitj)``); ``cov`` is the
    robust sandwich variance (``crr$var``); ``loglik`` the weighted log partial likelihood at
    ``coef`` and ``loglik_null`` at 0 (``crr$loglik``, ``crr$loglik.null``)."""

    coef: np.ndarray
    se: np.ndarray
    cov: np.ndarray
    loglik: float
    loglik_null: float
    converged: bool
    n_iter: int
    event_times: np.ndarray
    cumulative_hazard: np.ndarray
    x_mean: np.ndarray  # the centre the fit used; the CIF is computed from it, free of overflow
    centred_cumulative_hazard: np.ndarray  # the baseline at X = x_mean

    def cif(self, X: Any, times: Any) -> np.ndarray:
        """CIF(t | x) = 1 − exp(−H0(t)·exp(xβ)), shape (n, len(times)): non-decreasing in t, in [0, 1].

        Computed as −expm1(−exp(log H0(t) + (x − x̄)β)), so a huge linear predictor gives 1, not NaN.
        """
        Z = _matrix(X, "X")
        if Z.shape[1] != len(self.coef):
            raise UserInputError(f"X has {Z.shape[1]} columns; the Fine-Gray model was fitted on {len(self.coef)}")
        t = np.atleast_1d(np.asarray(times, dtype=float))
        if not np.isfinite(t).all():
            raise UserInputError("times must be finite")
        idx = np.searchsorted(self.event_times, t, side="right") - 1
        h0 = np.where(idx >= 0, self.centred_cumulative_hazard[np.clip(idx, 0, None)], 0.0)
        with np.errstate(divide="ignore", over="ignore"):
            log_h = np.log(h0)[None, :] + ((Z - self.x_mean) @ self.coef)[:, None]
            return np.asarray(-np.expm1(-np.exp(log_h)), dtype=float)

    def table(self, names: Any = None) -> pd.DataFrame:
        """Subdistribution hazard ratios: term, coef, se, hr, lower, upper (95 % Wald), z, p."""
        terms = [f"x{i + 1}" for i in range(len(self.coef))] if names is None else [str(n) for n in names]
        if len(terms) != len(self.coef):
            raise UserInputError(f"{len(terms)} names given for {len(self.coef)} coefficients")
        z = self.coef / self.se
        q = sps.norm.ppf(0.975)
        return pd.DataFrame(
            {
                "term": terms,
                "coef": self.coef,
                "se": self.se,
                "hr": np.exp(self.coef),
                "lower": np.exp(self.coef - q * self.se),
                "upper": np.exp(self.coef + q * self.se),
                "z": z,
                "p": 2 * sps.norm.sf(np.abs(z)),
            }
        )


def _matrix(X: Any, name: str) -> np.ndarray:
    try:
        Z = np.asarray(X, dtype=float)
    except (TypeError, ValueError) as exc:
        raise UserInputError(f"{name} must be a numeric matrix: {exc}") from None
    if Z.ndim == 1:
        Z = Z[:, None]
    if Z.ndim != 2:
        raise UserInputError(f"{name} must be a 2-D array (patients × covariates), got {Z.ndim} dimensions")
    bad = ~np.isfinite(Z)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise UserInputError(
            f"{name}, row {row}, column {col}, value {Z[row, col]}: covariates must be finite "
            f"({int(bad.sum())} missing or infinite values)"
        )
    return Z


def _outcome(time: Any, cause: Any, n: int | None, event: int) -> tuple[np.ndarray, np.ndarray]:
    """(time, code) with code 0 censored, 1 the event of interest, 2 any other (competing) cause."""
    t = np.asarray(time, dtype=float).ravel()
    c = np.asarray(cause).ravel()
    if c.size != t.size or (n is not None and t.size != n):
        sizes = f"time {t.size}, cause {c.size}" + ("" if n is None else f", X {n}")
        raise UserInputError(f"time, cause and X must have one value per patient; lengths: {sizes}")
    if not np.isfinite(t).all() or (t < 0).any():
        raise UserInputError("times must be finite and non-negative")
    try:
        c = c.astype(float)
    except (TypeError, ValueError):
        raise UserInputError("cause must be numeric: 0 censored, the event code, any other code competing") from None
    if not np.isfinite(c).all():
        raise UserInputError("cause has missing values: use 0 for censored")
    code = np.where(c == event, 1, np.where(c == 0, 0, 2)).astype(np.int8)
    if not (code == 1).any():
        raise UserInputError(f"no patient has the event of interest (cause {event}): nothing to model")
    return t, code


def _censoring_km_before(t: np.ndarray, censored: np.ndarray) -> np.ndarray:
    """Kaplan-Meier of the censoring distribution just before each (sorted) time: G(t-)."""
    uniq, first = np.unique(t, return_index=True)
    at_risk = len(t) - first
    n_cens = np.add.reduceat(censored.astype(float), first)
    g_after = np.cumprod(1.0 - n_cens / at_risk)
    g_before = np.r_[1.0, g_after[:-1]]
    return np.asarray(g_before[np.searchsorted(uniq, t)], dtype=float)


@dataclass
class _Data:
    """Sorted data and the fixed quantities of the weighted risk sets."""

    Z: np.ndarray  # centred covariates, sorted by time
    t: np.ndarray
    code: np.ndarray
    g_own: np.ndarray  # G(T_i-)
    ev_times: np.ndarray
    d: np.ndarray  # events of interest at each event time
    first: np.ndarray  # first sorted index with T >= t_j
    g_ev: np.ndarray  # G(t_j-)
    ev_index: np.ndarray  # for each event patient, its event time's index
    comp: np.ndarray  # bool: competing event


def _prepare(Z: np.ndarray, t: np.ndarray, code: np.ndarray) -> _Data:
    order = np.argsort(t, kind="stable")
    Z, t, code = Z[order], t[order], code[order]
    g_own = _censoring_km_before(t, code == 0)
    ev_times, d = np.unique(t[code == 1], return_counts=True)
    first = np.searchsorted(t, ev_times, side="left")
    g_ev = g_own[first]
    ev_index = np.searchsorted(ev_times, t[code == 1])
    return _Data(Z, t, code, g_own, ev_times, d.astype(float), first, g_ev, ev_index, code == 2)


def _risk_sums(data: _Data, values: np.ndarray) -> np.ndarray:
    """Σ over the weighted risk set at each event time of ``values`` (rows: patients, sorted):
    the patients still at risk plus, weighted by G(t_j-)/G(T_i-), those with an earlier competing event."""
    flat = values.reshape(len(values), -1)
    tail = np.cumsum(flat[::-1], axis=0)[::-1][data.first]
    head = np.cumsum(flat * (data.comp / data.g_own)[:, None], axis=0)
    before = np.where((data.first > 0)[:, None], head[np.maximum(data.first - 1, 0)], 0.0)
    return np.asarray(tail + data.g_ev[:, None] * before, dtype=float).reshape(len(data.first), *values.shape[1:])


def _loglik(data: _Data, beta: np.ndarray) -> float:
    eta = data.Z @ beta
    shift = float(eta.max())
    s0 = _risk_sums(data, np.exp(eta - shift))
    return float(eta[data.code == 1].sum() - (data.d * (np.log(s0) + shift)).sum())


def _newton_terms(data: _Data, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Log partial likelihood, score and information (Breslow ties) at ``beta``."""
    eta = data.Z @ beta
    shift = float(eta.max())
    r = np.exp(eta - shift)
    rz = r[:, None] * data.Z
    p = data.Z.shape[1]
    upper = np.triu_indices(p)
    sums = _risk_sums(data, np.column_stack([r, rz, rz[:, upper[0]] * data.Z[:, upper[1]]]))
    s0, s1 = sums[:, 0], sums[:, 1 : p + 1]
    s2 = np.empty((len(s0), p, p))
    s2[:, upper[0], upper[1]] = sums[:, p + 1 :]
    s2[:, upper[1], upper[0]] = sums[:, p + 1 :]
    zbar = s1 / s0[:, None]
    loglik = float(eta[data.code == 1].sum() - (data.d * (np.log(s0) + shift)).sum())
    score = data.Z[data.code == 1].sum(0) - data.d @ zbar
    info = np.einsum("j,jab->ab", data.d / s0, s2) - np.einsum("j,ja,jb->ab", data.d, zbar, zbar)
    return loglik, score, info


def _solve(info: np.ndarray, score: np.ndarray) -> np.ndarray:
    try:
        np.linalg.cholesky(info)
        return np.asarray(np.linalg.solve(info, score), dtype=float)
    except np.linalg.LinAlgError:
        raise UserInputError(
            "Fine-Gray: the information matrix is singular (a covariate is constant among the patients at "
            "risk, collinear with others, or separates the events completely); drop or combine it"
        ) from None


def _check_design(Z: np.ndarray) -> None:
    spread = Z.max(0) - Z.min(0) if len(Z) else np.zeros(Z.shape[1])
    constant = np.flatnonzero(spread == 0)
    if constant.size:
        raise UserInputError(
            f"X, column {constant[0]}: constant for every patient; a Fine-Gray model cannot estimate it"
        )
    if np.linalg.matrix_rank(Z - Z.mean(0)) < Z.shape[1]:
        raise UserInputError("X: the columns are collinear (one is a combination of others); drop one")


def fine_gray(X: Any, time: Any, cause: Any, *, event: int = 1, tol: float = 1e-9, max_iter: int = 50) -> FineGrayFit:
    """Fit the Fine-Gray proportional subdistribution hazards model of ``event``.

    ``cause`` is 0 for censored, ``event`` for the event of interest, any other code for a
    competing event. Newton-Raphson from β = 0 with step halving; converged when a full step moves
    no coefficient by more than ``tol``·max(1, |β|).
    """
    Z = _matrix(X, "X")
    t, code = _outcome(time, cause, Z.shape[0], event)
    if Z.shape[1] == 0:
        raise UserInputError("X has no columns: a Fine-Gray model needs at least one covariate")
    _check_design(Z)
    x_mean = Z.mean(0)
    data = _prepare(Z - x_mean, t, code)
    beta = np.zeros(Z.shape[1])
    loglik_null, score, info = _newton_terms(data, beta)
    loglik, converged, n_iter = loglik_null, False, 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (reported after the loop)
        step = _solve(info, score)
        new, new_ll = beta + step, _loglik(data, beta + step)
        halvings = 0
        while not (np.isfinite(new_ll) and new_ll >= loglik - 1e-12 * max(1.0, abs(loglik))) and halvings < 30:
            step, halvings = step / 2, halvings + 1
            new, new_ll = beta + step, _loglik(data, beta + step)
        beta = new
        loglik, score, info = _newton_terms(data, beta)
        if np.max(np.abs(step)) <= tol * max(1.0, float(np.max(np.abs(beta)))) and halvings == 0:
            converged = True
            break
    inv = np.linalg.inv(_check_information(info))
    cov = inv @ _score_outer(data, beta) @ inv
    jumps = _baseline_jumps(data, beta)
    return FineGrayFit(
        coef=beta,
        se=np.sqrt(np.diag(cov)),
        cov=cov,
        loglik=loglik,
        loglik_null=loglik_null,
        converged=converged,
        n_iter=n_iter,
        event_times=data.ev_times,
        cumulative_hazard=np.cumsum(jumps) * np.exp(-float(x_mean @ beta)),
        x_mean=x_mean,
        centred_cumulative_hazard=np.cumsum(jumps),
    )


def _check_information(info: np.ndarray) -> np.ndarray:
    _solve(info, np.zeros(len(info)))
    return info


def _baseline_jumps(data: _Data, beta: np.ndarray) -> np.ndarray:
    """Breslow jumps d_j / S0_j of the baseline subdistribution hazard at X = x̄."""
    s0 = _risk_sums(data, np.exp(data.Z @ beta))
    return np.asarray(data.d / s0, dtype=float)


def _score_outer(data: _Data, beta: np.ndarray) -> np.ndarray:
    """Σ_i (η_i + ψ_i)(η_i + ψ_i)ᵀ: Fine & Gray (1999) section 3, with censoring-weighted
    martingale residuals η_i and the censoring term ψ_i = ∫ q(u)/π(u) dM_i^c(u)."""
    Z, t = data.Z, data.t
    r = np.exp(Z @ beta)
    s0 = _risk_sums(data, r)
    zbar = _risk_sums(data, r[:, None] * Z) / s0[:, None]
    dlam = data.d / s0
    # events of interest at or before T_i (patient still in the plain risk set)
    upto = np.searchsorted(data.ev_times, t, side="right")
    cum_lam = np.r_[0.0, np.cumsum(dlam)][upto]
    cum_zlam = np.vstack([np.zeros(Z.shape[1]), np.cumsum(zbar * dlam[:, None], axis=0)])[upto]
    # after a competing event: weight G(t_j-)/G(T_i-) for event times t_j > T_i
    g_lam = data.g_ev * dlam
    tail_g = np.r_[np.cumsum(g_lam[::-1])[::-1], 0.0]
    tail_gz = np.vstack([np.cumsum((zbar * g_lam[:, None])[::-1], axis=0)[::-1], np.zeros(Z.shape[1])])
    w = np.where(data.comp, 1.0 / data.g_own, 0.0)
    eta_res = -r[:, None] * (Z * (cum_lam + w * tail_g[upto])[:, None] - cum_zlam - w[:, None] * tail_gz[upto])
    events = np.flatnonzero(data.code == 1)
    eta_res[events] += Z[events] - zbar[data.ev_index]
    resid = eta_res + _censoring_term(data, r, zbar, g_lam, tail_g, tail_gz)
    return np.asarray(resid.T @ resid, dtype=float)


def _censoring_term(
    data: _Data, r: np.ndarray, zbar: np.ndarray, g_lam: np.ndarray, tail_g: np.ndarray, tail_gz: np.ndarray
) -> np.ndarray:
    """ψ_i: q(u) = Σ_{competing i, T_i < u} Σ_{t_j ≥ u} (Z_i − z̄_j) r_i G(t_j-)/G(T_i-) dΛ_j."""
    Z, t = data.Z, data.t
    uniq, first = np.unique(t, return_index=True)
    n_cens = np.add.reduceat((data.code == 0).astype(float), first)
    at_risk = (len(t) - first).astype(float)
    w = np.where(data.comp, r / data.g_own, 0.0)
    head_b = np.r_[0.0, np.cumsum(w)][first]  # competing strictly before u
    head_a = np.vstack([np.zeros(Z.shape[1]), np.cumsum(w[:, None] * Z, axis=0)])[first]
    from_u = np.searchsorted(data.ev_times, uniq, side="left")  # event times t_j >= u
    q = head_a * tail_g[from_u][:, None] - head_b[:, None] * tail_gz[from_u]
    jump = q * (n_cens / at_risk**2)[:, None]
    cum = np.cumsum(jump, axis=0)
    at = np.searchsorted(uniq, t)
    psi = -cum[at]
    cens = data.code == 0
    psi[cens] += q[at[cens]] / at_risk[at[cens]][:, None]
    return np.asarray(psi, dtype=float)


# ---------------------------------------------------------------------------------------------
# Gray's test


@dataclass(frozen=True)
class GrayTest:
    """Gray's K-sample test of equal cumulative incidence: χ² statistic, degrees of freedom, p."""

    statistic: float
    df: int
    p_value: float


def gray_test(time: Any, cause: Any, group: Any, *, event: int = 1, strata: Any = None) -> GrayTest:
    """Gray's (1988) K-sample test that ``event``'s cumulative incidence is equal across ``group``s.

    The score of group k is Σ_t [d_k(t) − d(t)·R_k(t)/Σ_r R_r(t)], R_r = Y_r(1 − F_r(t-))/S_r(t-)
    (ρ = 0); its variance is Gray's estimator under the null, written with h_r = Y_r/S_r(t-) and the
    pooled CIF F⁰ (dF⁰ = d/Σ_r h_r): Σ_r Σ_t a_kr a_lr dF⁰/h_r + b_kr b_lr dF_2r/h_r, where
    a = φ − Φ/S_r(t), b = −Φ/S_r(t), φ_kr(t) = (δ_kr − h_k/Σh)·h_r + Σ_{s>t} (δ_kr − h_k/Σh)·h_r·dF⁰/(1 − F⁰(s-))
    and Φ_kr(t) = Σ_{s>t} φ_kr(s)·dF⁰(s). Tied events of the cause at t scale the variance term of t
    by (n(t) − d(t))/(n(t) − 1). With ``strata``, scores and variances are summed over strata.
    """
    t, code = _outcome(time, cause, None, event)
    g = np.asarray(group).ravel()
    if g.size != t.size:
        raise UserInputError(f"group has {g.size} values for {t.size} patients")
    if pd.isna(g).any():
        raise UserInputError("group has missing values: every patient needs a group")
    levels, codes = np.unique(g.astype(str) if g.dtype == object else g, return_inverse=True)
    k = len(levels)
    if k < 2:
        raise UserInputError("Gray's test needs at least two groups; all patients are in one")
    if strata is None:
        st = np.zeros(t.size, dtype=int)
    else:
        s = np.asarray(strata).ravel()
        if s.size != t.size or pd.isna(s).any():
            raise UserInputError("strata must give one (non-missing) stratum per patient")
        st = np.unique(s.astype(str) if s.dtype == object else s, return_inverse=True)[1]
    score, var = np.zeros(k), np.zeros((k, k))
    for s_id in np.unique(st):
        inside = st == s_id
        z, v = _gray_stratum(t[inside], code[inside], codes[inside], k)
        score, var = score + z, var + v
    try:
        statistic = float(score[:-1] @ np.linalg.solve(var[:-1, :-1], score[:-1]))
    except np.linalg.LinAlgError:
        raise UserInputError(
            "Gray's test: the variance is singular (a group has no one at risk at any event)"
        ) from None
    return GrayTest(statistic, k - 1, float(sps.chi2.sf(statistic, k - 1)))


def _after(x: np.ndarray) -> np.ndarray:
    """Σ over later times (strictly after each time, last axis) of ``x``."""
    tail = x[..., ::-1].cumsum(-1)[..., ::-1]
    return np.concatenate([tail[..., 1:], np.zeros((*x.shape[:-1], 1))], axis=-1)


def _gray_stratum(t: np.ndarray, code: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Score and variance of Gray's test in one stratum; arrays are (group, time)."""
    uniq, inv = np.unique(t, return_inverse=True)
    counts = np.zeros((3, k, len(uniq)))
    np.add.at(counts, (code, g, inv), 1.0)
    censored, d1, d2 = counts
    at_risk = (censored + d1 + d2)[:, ::-1].cumsum(1)[:, ::-1]
    alive = at_risk > 0
    y = np.where(alive, at_risk, 1.0)
    surv = np.cumprod(1 - np.where(alive, (d1 + d2) / y, 0.0), axis=1)
    surv_before = np.hstack([np.ones((k, 1)), surv[:, :-1]])
    cif_before = np.hstack([np.zeros((k, 1)), np.cumsum(np.where(alive, surv_before * d1 / y, 0.0), 1)[:, :-1]])
    h = np.where(alive, at_risk / np.where(surv_before > 0, surv_before, 1.0), 0.0)
    r = h * (1 - cif_before)
    n1 = d1.sum(0)
    share = r / np.where(r.sum(0) > 0, r.sum(0), 1.0)
    score = (d1 - share * n1).sum(1)
    h_sum = h.sum(0)
    df0 = n1 / np.where(h_sum > 0, h_sum, 1.0)
    f0_before = np.r_[0.0, np.cumsum(df0)[:-1]]
    w = (np.eye(k)[:, :, None] - (h / np.where(h_sum > 0, h_sum, 1.0))[:, None, :]) * h[None]  # (k, r, t)
    with np.errstate(divide="ignore", invalid="ignore"):
        dgamma = np.where(df0 > 0, df0 / (1 - f0_before), 0.0)
    phi = w + _after(w * dgamma)
    big_phi = _after(phi * df0) / np.where(surv > 0, surv, 1.0)[None]
    a, b = phi - big_phi, -big_phi
    h_inv = np.where(h > 0, 1 / np.where(h > 0, h, 1.0), 0.0)
    n_all = at_risk.sum(0)
    ties = np.where(n1 > 1, (n_all - n1) / np.where(n_all > 1, n_all - 1, 1.0), 1.0)
    w1 = h_inv * (df0 * ties)[None]
    w2 = h_inv * np.where(alive, surv_before * d2 / y, 0.0)
    var = np.einsum("krt,lrt,rt->kl", a, a, w1) + np.einsum("krt,lrt,rt->kl", b, b, w2)
    return score, var
