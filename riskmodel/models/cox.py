"""Cox proportional hazards with Efron ties, an L2 penalty by default, and an HR table.

The baseline cumulative hazard follows the ties, as R's ``survfit.coxph`` pairs them (``ctype``
1 for Breslow's ties, 2 for Efron's): Efron's ties give Efron's baseline
(:func:`riskmodel.models.base.efron_cumulative_hazard`; Efron 1977, *JASA* 72:557), Breslow's
ties Breslow's (:func:`riskmodel.models.base.breslow_cumulative_hazard`; Breslow 1972). Both are
at the training mean of the features, so S(t | x) = exp(−H0(t)·exp((x − x̄)β)). Without tied event
times they are the same; a model file written before the baseline followed the ties holds
Breslow's and predicts with it.

The penalised objective is the *mean* log partial likelihood minus
``penalty · (½(1 − l1_ratio)·‖β‖² + l1_ratio·Σ√(β² + ε))``, on standardised covariates (so one
penalty treats features on different scales alike). The L1 part is the smooth approximation that
keeps Newton's method usable; coefficients shrink towards zero but are not exactly zero.

``hazard_ratios_`` gives HR for every feature; its 95% CI and Wald p are filled only when
``penalty == 0``, because penalised estimates have no valid Wald intervals. Fit with
``penalty=0`` for the classical table (``riskmodel train`` logs one for every Cox run).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import FiniteFloat, model_validator
from scipy import stats
from sklearn.utils.validation import check_is_fitted

from riskmodel.errors import RiskModelWarning, UserInputError
from riskmodel.models.base import (
    StateFile,
    SurvivalEstimator,
    breslow_cumulative_hazard,
    breslow_risk_and_survival,
    check_baseline,
    efron_cumulative_hazard,
    estimator_params,
    proportional_survival,
    read_json,
    write_json,
)
from riskmodel.stats import step_values

__all__ = ["CoxFile", "CoxPH", "converges_like_rms", "newton_fit", "rms_fit_failure"]

_SMOOTH_L1_EPS = 1e-8
# A standardised coefficient beyond this (HR e^10 ≈ 22,000 per SD) means separation, not an estimate.
_DIVERGED = 10.0


@dataclass(frozen=True)
class _RiskSets:
    """Everything about the risk sets that depends on y only (computed once per fit)."""

    order: np.ndarray  # sorts samples by time
    start: np.ndarray  # per distinct event time j: first sorted index at risk
    n_event_times: int
    event_idx: np.ndarray  # sorted indices of events
    event_group_start: np.ndarray  # start of each event-time group within event_idx
    k_group: np.ndarray  # per tie-expanded term k: its event time j
    k_frac: np.ndarray  # Efron fraction l/d_j of term k
    n_le: np.ndarray  # per sorted sample: number of event times <= its time


def _risk_sets(time: np.ndarray, event: np.ndarray, ties: str = "efron") -> _RiskSets:
    order = np.argsort(time, kind="stable")
    ts, es = time[order], event[order]
    event_times, d = np.unique(ts[es], return_counts=True)
    event_idx = np.flatnonzero(es)
    group_start = np.concatenate([[0], np.cumsum(d)[:-1]])
    k_group = np.repeat(np.arange(len(d)), d)
    k_frac = (np.arange(len(k_group)) - np.repeat(group_start, d)) / np.repeat(d, d)
    if ties == "breslow":  # every tied event sees the whole risk set: Efron's fractions are all 0
        k_frac = np.zeros_like(k_frac)
    return _RiskSets(
        order,
        np.searchsorted(ts, event_times, side="left"),
        len(d),
        event_idx,
        group_start,
        k_group,
        k_frac,
        np.searchsorted(event_times, ts, side="right"),
    )


def _efron(Z: np.ndarray, rs: _RiskSets, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Log partial likelihood (Efron), its gradient and the observed information, for sorted Z."""
    eta = Z @ beta
    shift = eta.max()  # cancels between the two terms of the likelihood
    with np.errstate(all="ignore"):
        return _efron_terms(Z, rs, eta, shift)


def _efron_terms(Z: np.ndarray, rs: _RiskSets, eta: np.ndarray, shift: float) -> tuple[float, np.ndarray, np.ndarray]:
    w = np.exp(eta - shift)
    wz = w[:, None] * Z
    s0_risk = np.cumsum(w[::-1])[::-1][rs.start]
    s1_risk = np.cumsum(wz[::-1], axis=0)[::-1][rs.start]
    s0_tied = np.add.reduceat(w[rs.event_idx], rs.event_group_start)
    s1_tied = np.add.reduceat(wz[rs.event_idx], rs.event_group_start, axis=0)
    s0 = s0_risk[rs.k_group] - rs.k_frac * s0_tied[rs.k_group]
    s1 = s1_risk[rs.k_group] - rs.k_frac[:, None] * s1_tied[rs.k_group]
    loglik = float(eta[rs.event_idx].sum() - shift * len(rs.k_group) - np.log(s0).sum())
    grad = Z[rs.event_idx].sum(axis=0) - (s1 / s0[:, None]).sum(axis=0)
    # Second moments without n x p x p arrays: weight each sample by the terms it enters.
    c = np.bincount(rs.k_group, 1 / s0, rs.n_event_times)
    g = np.bincount(rs.k_group, rs.k_frac / s0, rs.n_event_times)
    cum_c = np.concatenate([[0.0], np.cumsum(c)])
    weight = w * cum_c[rs.n_le]
    weight[rs.event_idx] -= w[rs.event_idx] * np.repeat(g, np.diff(np.append(rs.event_group_start, len(rs.k_group))))
    info = (Z * weight[:, None]).T @ Z - (s1 / s0[:, None] ** 2).T @ s1
    return loglik, grad, info


def _cholesky2(matrix: np.ndarray, toler: float) -> tuple[np.ndarray, np.ndarray]:
    """survival's ``cholesky2``: C = F D F' in place of a copy; a pivot below ``toler`` times the
    largest diagonal marks its column redundant (its D is set to 0). Returns (factor, singular)."""
    m = np.array(matrix, dtype=float)
    n = len(m)
    largest = max((m[i, i] for i in range(n) if m[i, i] > 0), default=0.0)
    eps = toler if largest == 0 else largest * toler
    singular = np.zeros(n, dtype=bool)
    for i in range(n):
        pivot = m[i, i]
        if not np.isfinite(pivot) or pivot < eps:
            m[i, i] = 0.0
            singular[i] = True
            continue
        for j in range(i + 1, n):
            temp = m[j, i] / pivot
            m[j, i] = temp
            m[j, j] -= temp * temp * pivot
            m[j + 1 :, j] -= temp * m[j + 1 :, i]
    return m, singular


def _chsolve2(factor: np.ndarray, y: np.ndarray) -> np.ndarray:
    """survival's ``chsolve2``: solve with a ``_cholesky2`` factor; redundant components are 0."""
    n = len(y)
    b = np.array(y, dtype=float)
    for i in range(n):
        b[i] -= b[:i] @ factor[i, :i]
    for i in range(n - 1, -1, -1):
        b[i] = 0.0 if factor[i, i] == 0 else b[i] / factor[i, i] - b[i + 1 :] @ factor[i + 1 :, i]
    return b


def rms_fit_failure(X: Any, y: Any, iter_max: int = 10, eps: float = 1e-4, toler: float = 1e-9) -> str | None:
    """Why R's ``rms`` would reject an unpenalised Cox fit of (X, y), or None when it accepts it.

    ``rms::validate`` leaves a bootstrap resample out when its refit fails by ``rms:::coxphFit``'s
    rule (``iter.max = 10``, ``eps = 1e-4``, ``toler.chol = 1e-9``) over survival's ``coxfit6``:

    * Newton-Raphson from β = 0 on centred covariates scaled by their mean absolute deviation;
      a step that lowers the log partial likelihood is halved, and a halving uses an iteration;
    * converged once the relative change of the log likelihood is at most ``eps``;
    * rejected when the fit took ``iter.max`` iterations or more (so also when it ran out), or
      when a coefficient is NA: the information matrix at the end has a Cholesky pivot below
      ``toler`` times its largest diagonal (a redundant or constant covariate).

    Under separation the likelihood has no maximum and the fit usually runs out of iterations.
    """
    event = np.asarray(y["event"], bool)
    time = np.asarray(y["time"], float)
    Xa = np.asarray(X, dtype=float)
    centred = Xa - Xa.mean(axis=0)
    spread = np.abs(centred).sum(axis=0)
    Z = centred * np.where(spread > 0, len(Xa) / np.where(spread > 0, spread, 1.0), 1.0)
    rs = _risk_sets(time, event)
    Zs = Z[rs.order]
    beta = np.zeros(Z.shape[1])
    best, u, imat = _efron(Zs, rs, beta)
    factor, singular = _cholesky2(imat, toler)
    new = beta + _chsolve2(factor, u)
    halving = 0
    for iteration in range(1, iter_max + 1):
        new_ll, u, imat = _efron(Zs, rs, new)
        factor, singular = _cholesky2(imat, toler)
        finite = np.isfinite(new_ll) and np.isfinite(u).all() and np.isfinite(imat).all()
        if finite and abs(1 - best / new_ll) <= eps:
            if iteration >= iter_max:
                return f"converged only at iteration {iteration} of {iter_max} (rms's rule rejects that)"
            if singular.any():
                return "singular: a coefficient is not estimable (NA) in the resample"
            return None
        if not finite or new_ll < best:
            halving += 1  # as coxfit6: each halving pulls harder towards the last good beta
            new = (new + halving * beta) / (halving + 1.0)
        else:
            halving = 0
            best = new_ll
            beta, new = new, new + _chsolve2(factor, u)
    return f"did not converge in {iter_max} iterations (rms's rule): a feature separates the events"


def converges_like_rms(X: Any, y: Any, max_iter: int = 10, eps: float = 1e-4) -> bool:
    """Whether R's ``rms`` would accept an unpenalised Cox fit of (X, y): :func:`rms_fit_failure`."""
    return rms_fit_failure(X, y, iter_max=max_iter, eps=eps) is None


def newton_fit(
    Z: np.ndarray, time: np.ndarray, event: np.ndarray, *, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Unpenalised Cox (Efron) by Newton-Raphson on ``Z`` as given (no standardisation, no baseline).

    Returns the coefficients, the observed information and whether it converged: the bare fit,
    for callers that need thousands of them (the cohort reconstruction).
    """
    rs = _risk_sets(np.asarray(time, float), np.asarray(event, bool))
    return CoxPH(penalty=0.0, max_iter=max_iter)._newton(np.asarray(Z, float)[rs.order], rs, 0.0)


class CoxFile(StateFile):
    """``cox.json``: coefficients, scaling, information and the baseline, finite and of
    matching lengths (the hazard-ratio table is descriptive: NaN where a penalised fit has no SE)."""

    coef: list[FiniteFloat]
    mean: list[FiniteFloat]
    scale: list[FiniteFloat]
    constant: list[bool]
    converged: bool
    information: list[list[FiniteFloat]] | None = None
    event_times: list[FiniteFloat]
    baseline_cumhaz: list[FiniteFloat]
    feature_names: list[str]
    hazard_ratios: dict[str, list[str | float | None]]

    @model_validator(mode="after")
    def _consistent(self) -> CoxFile:
        p = self.n_features_in
        if not len(self.coef) == len(self.mean) == len(self.scale) == len(self.constant) == p:
            raise ValueError(f"coef, mean, scale and constant must each hold n_features_in ({p}) values")
        if any(v <= 0 for v in self.scale):
            raise ValueError("scale must be positive")
        if self.information is not None and (len(self.information) != p or any(len(r) != p for r in self.information)):
            raise ValueError(f"information must be {p} × {p}")
        check_baseline(self.event_times, self.baseline_cumhaz)
        return self


class CoxPH(SurvivalEstimator):
    """Penalised Cox proportional hazards (Efron ties), with the baseline of its ties (module docstring).

    Parameters
    ----------
    penalty
        Strength of the penalty on the mean log partial likelihood (standardised covariates).
        0 gives the classical maximum partial likelihood fit.
    l1_ratio
        Share of the penalty that is L1 (0 = ridge, 1 = lasso-like).
    max_iter, tol
        Newton-Raphson limits: stop when the objective improves by less than ``tol``.
    ties
        ``"efron"`` (default, as R's ``coxph``) or ``"breslow"`` for tied event times.
    """

    risk_is_log_hazard = True  # predict_risk is the log hazard ratio (a linear predictor)
    FILES = frozenset({"cox.json"})

    def __init__(
        self,
        penalty: float = 0.1,
        l1_ratio: float = 0.0,
        max_iter: int = 100,
        tol: float = 1e-10,
        ties: Literal["efron", "breslow"] = "efron",
    ) -> None:
        self.penalty = penalty
        self.l1_ratio = l1_ratio
        self.ties = ties
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: Any, y: Any) -> CoxPH:
        """Fit by penalised Newton-Raphson; also fit the unpenalised model for the HR table."""
        if not (np.isfinite(self.penalty) and self.penalty >= 0):
            raise UserInputError(f"penalty must be a number ≥ 0, got {self.penalty!r}")
        if not 0 <= self.l1_ratio <= 1:
            raise UserInputError(f"l1_ratio must be between 0 and 1, got {self.l1_ratio!r}")
        if self.ties not in ("efron", "breslow"):
            raise UserInputError(f"ties must be 'efron' or 'breslow', got {self.ties!r}")
        Xa, event, time = self._begin_fit(X, y)  # refuses NaN and ±inf (handles_missing is False)
        self.mean_ = self.feature_means_
        scale = Xa.std(axis=0)
        self.constant_ = scale == 0
        self.scale_ = np.where(self.constant_, 1.0, scale)
        Z = (Xa - self.mean_) / self.scale_
        rs = _risk_sets(time, event, self.ties)
        Zs = Z[rs.order]
        beta, info, converged = self._newton(Zs, rs, self.penalty)
        self.converged_ = converged
        self.log_likelihood_ = _efron(Zs, rs, beta)[0]  # unpenalised log partial likelihood at the fit
        self.log_likelihood_null_ = _efron(Zs, rs, np.zeros_like(beta))[0]
        # per unit of each feature: beta = beta_std / scale, so the information is D I D with D = diag(scale)
        self.information_ = info * np.outer(self.scale_, self.scale_)
        if not converged:
            warnings.warn(
                "Cox fit did not converge: a feature may separate the events completely "
                f"(penalty {self.penalty:g}). A larger penalty, or fewer features, helps.",
                RiskModelWarning,
                stacklevel=2,
            )
        self.coef_ = beta / self.scale_
        baseline = efron_cumulative_hazard if self.ties == "efron" else breslow_cumulative_hazard
        self.event_times_, self.baseline_cumhaz_ = baseline(time, event, (Xa - self.mean_) @ self.coef_)
        self.hazard_ratios_ = self._hazard_table(info if self.penalty == 0 and converged else None)
        return self

    def _penalty_terms(self, beta: np.ndarray, penalty: float, n: int) -> tuple[float, np.ndarray, np.ndarray]:
        r = self.l1_ratio
        root = np.sqrt(beta**2 + _SMOOTH_L1_EPS)
        value = penalty * (0.5 * (1 - r) * beta @ beta + r * root.sum())
        grad = penalty * ((1 - r) * beta + r * beta / root)
        hess = penalty * ((1 - r) + r * _SMOOTH_L1_EPS / root**3)
        return value * n, grad * n, np.diag(hess * n)

    def _newton(self, Zs: np.ndarray, rs: _RiskSets, penalty: float) -> tuple[np.ndarray, np.ndarray, bool]:
        n, p = Zs.shape
        beta = np.zeros(p)
        loglik, grad, info = _efron(Zs, rs, beta)
        pv, pg, ph = self._penalty_terms(beta, penalty, n)
        objective = loglik - pv
        for _ in range(self.max_iter):
            try:
                step = np.linalg.solve(info + ph, grad - pg)
            except np.linalg.LinAlgError:
                step = np.linalg.lstsq(info + ph, grad - pg, rcond=None)[0]
            for _half in range(30):
                candidate = beta + step
                new_ll, new_grad, new_info = _efron(Zs, rs, candidate)
                pv, pg, ph = self._penalty_terms(candidate, penalty, n)
                if np.isfinite(new_ll) and new_ll - pv >= objective - 1e-12:
                    break
                step = step / 2
            else:
                return beta, info, False  # no step improves the objective: numerically stuck
            improvement = new_ll - pv - objective
            beta, objective, loglik, grad, info = candidate, new_ll - pv, new_ll, new_grad, new_info
            if np.max(np.abs(beta)) > _DIVERGED:
                return beta, info, False
            if abs(improvement) < self.tol and np.max(np.abs(step)) < 1e-6:
                # gradient and information can vanish together as a separated coefficient runs off
                return beta, info, bool(np.max(np.abs(beta)) <= _DIVERGED)
        return beta, info, False

    def _hazard_table(self, info: np.ndarray | None) -> pd.DataFrame:
        """HR per unit of each feature; 95% CI and Wald p from ``info`` (unpenalised fits only)."""
        names = getattr(self, "feature_names_in_", None)
        index = [str(n) for n in names] if names is not None else [f"x{i}" for i in range(len(self.coef_))]
        se = np.full(len(self.coef_), np.nan)
        if info is not None and not self.constant_.any():
            try:
                variance = np.diag(np.linalg.inv(info))
            except np.linalg.LinAlgError:
                variance = np.full(len(self.coef_), np.nan)
            # a non-positive variance means a (near-)singular information matrix: no valid SE
            se = np.sqrt(np.where(variance > 0, variance, np.nan)) / self.scale_
        q = stats.norm.ppf(0.975)
        with np.errstate(all="ignore"):  # near-separation gives an unbounded CI: inf is the honest value
            z = self.coef_ / se
            table = pd.DataFrame(
                {
                    "coef": self.coef_,
                    "hr": np.exp(self.coef_),
                    "se": se,
                    "hr_lower_95": np.exp(self.coef_ - q * se),
                    "hr_upper_95": np.exp(self.coef_ + q * se),
                    "z": z,
                    "p": 2 * stats.norm.sf(np.abs(z)),
                },
                index=pd.Index(index, name="feature"),
            )
        table.attrs["penalty"] = float(self.penalty)
        return table

    def predict_risk(self, X: Any) -> np.ndarray:
        """The linear predictor (log hazard ratio against the training mean)."""
        check_is_fitted(self, "coef_")
        return np.asarray((self._check_features(X) - self.mean_) @ self.coef_, dtype=float)

    def _survival_matrix(self, X: Any, times: np.ndarray) -> np.ndarray:
        cumhaz = step_values(self.event_times_, self.baseline_cumhaz_, times)
        return proportional_survival(self.predict_risk(X), cumhaz)

    def predict_risk_and_survival(self, X: Any, times: Any) -> tuple[np.ndarray, np.ndarray]:
        """The linear predictor once, and S(t) from it (as :meth:`_survival_matrix` computes it)."""
        return breslow_risk_and_survival(self, X, times)

    def save_state(self, folder: Path) -> None:
        """Coefficients, scaling, information and the baseline (of the ties), as ``cox.json``."""
        table = self.hazard_ratios_
        write_json(
            folder / "cox.json",
            {
                **self._common_state(),
                "coef": self.coef_,
                "mean": self.mean_,
                "scale": self.scale_,
                "constant": self.constant_,
                "converged": self.converged_,
                "information": self.information_,
                "event_times": self.event_times_,
                "baseline_cumhaz": self.baseline_cumhaz_,
                "feature_names": list(table.index),
                "hazard_ratios": table.reset_index().to_dict(orient="list"),
            },
        )

    @classmethod
    def load_state(cls, folder: Path) -> CoxPH:
        """The fitted model from ``cox.json``."""
        d = read_json(folder / "cox.json", CoxFile, may_be_nan=frozenset({"hazard_ratios"}))
        cox = cls(**estimator_params(cls, d["params"], folder / "cox.json"))
        cox.coef_, cox.mean_, cox.scale_ = (np.asarray(d[k], float) for k in ("coef", "mean", "scale"))
        cox.constant_ = np.asarray(d["constant"], bool)
        cox.converged_ = bool(d["converged"])
        if "information" in d:  # absent from model files written before riskmodel 0.1's explain
            cox.information_ = np.asarray(d["information"], float)
        cox.event_times_ = np.asarray(d["event_times"], float)
        cox.baseline_cumhaz_ = np.asarray(d["baseline_cumhaz"], float)
        cox.hazard_ratios_ = pd.DataFrame(d["hazard_ratios"]).set_index("feature")
        cox._restore_common(d)
        if "feature_means" not in d:  # an older file: Cox's own means; the HR table's names unless placeholders
            cox.feature_means_ = cox.mean_
            names = [str(n) for n in d["feature_names"]]
            if names != [f"x{i}" for i in range(len(names))]:
                cox.feature_names_in_ = np.asarray(names, dtype=object)
        return cox
