"""Multiple imputation inside the pipeline: chained equations, m fitted models, pooled predictions.

:class:`MultipleImputationSurvival` wraps the feature encoding and a model family. Fitted on the
training part of a fold or resample only, it:

1. draws ``n_imputations`` completed copies of the covariates by chained equations with posterior
   sampling (van Buuren's "norm" method, as R's ``mice``: for each incomplete covariate in turn, a
   Bayesian linear regression on all the others whose coefficients and residual variance are
   drawn from their posterior, then a draw of each missing value), including the outcome as
   White & Royston (Stat Med 2009;28:1982-98) recommend: the event indicator and the
   Nelson-Aalen cumulative hazard at each patient's time. Binary and ordinal covariates take the
   nearest valid code. A categorical covariate (unordered codes) is drawn from a multinomial
   logistic regression fitted to a bootstrap sample of its observed rows (mice's approach to
   parameter uncertainty by the bootstrap, ``logreg.boot``), and enters the other covariates'
   regressions as dummies;
2. fits the encoding and the model on each completed copy;
3. predicts by averaging S(t) (and the risk score) over the m models.

New patients are imputed from the training imputation models without their outcome, which is
unknown at scoring: for each of the m imputations, by the conditional mean under that
imputation's drawn regressions, or the most probable level of a categorical covariate (so a
patient's prediction never depends on who else is scored).
:attr:`imputed_` reports, per scored batch, which values were imputed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone

from riskmodel.errors import UserInputError
from riskmodel.features import DeclaredEncoding
from riskmodel.models.base import SurvivalEstimator, read_json, write_json
from riskmodel.stats import check_competing_target, check_survival_target, is_competing

__all__ = ["IMPUTATION_FILE", "ChainedEquations", "MultipleImputationSurvival", "nelson_aalen_at"]

IMPUTATION_FILE = "imputation.json"

_RIDGE = 1e-6  # keeps X'X invertible when a predictor is nearly constant in a small training part


def nelson_aalen_at(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """The Nelson-Aalen cumulative hazard at each patient's own time (White & Royston's predictor).

    >>> nelson_aalen_at(np.array([1.0, 2.0, 3.0]), np.array([True, False, True])).tolist()
    [0.3333333333333333, 0.3333333333333333, 1.3333333333333333]
    """
    order = np.argsort(time, kind="stable")
    ts, es = time[order], event[order]
    event_times, deaths = np.unique(ts[es], return_counts=True)
    at_risk = len(ts) - np.searchsorted(ts, event_times, side="left")
    cumhaz = np.cumsum(deaths / at_risk)
    idx = np.searchsorted(event_times, time, side="right") - 1
    return np.where(idx >= 0, cumhaz[np.clip(idx, 0, None)], 0.0)


def _design(Z: np.ndarray, j: int, unordered: dict[int, int] | None = None) -> np.ndarray:
    """The intercept and every column but ``j``; a categorical column (``unordered``: column → its
    number of codes) as dummies for codes 1 … k − 1 instead of its code."""
    parts = [np.ones((len(Z), 1))]
    for col in range(Z.shape[1]):
        if col == j:
            continue
        k = (unordered or {}).get(col)
        if k is None:
            parts.append(Z[:, [col]])
        else:
            parts.append(
                np.column_stack([(Z[:, col] == code).astype(float) for code in range(1, k)])
                if k > 1
                else np.empty((len(Z), 0))
            )
    return np.column_stack(parts)


def _multinomial(X: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Coefficients (k × p, a row per code; zero rows for codes absent from ``y``) of a multinomial
    logistic regression of codes ``y`` on ``X`` (which holds the intercept), lightly ridged."""
    from sklearn.linear_model import LogisticRegression

    coef = np.zeros((k, X.shape[1]))
    present = np.unique(y.astype(int))
    if present.size == 1:
        coef[:, 0] = -30.0
        coef[present[0], 0] = 0.0
        return coef
    fit = LogisticRegression(C=100.0, fit_intercept=False, max_iter=500).fit(X, y.astype(int))
    rows = fit.coef_ if present.size > 2 else np.vstack([-fit.coef_[0] / 2, fit.coef_[0] / 2])
    coef[:, 0] = -30.0  # an absent code: probability ~0
    coef[present] = rows
    return coef


def _probabilities(X: np.ndarray, coef: np.ndarray) -> np.ndarray:
    logits = X @ coef.T
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return np.asarray(p / p.sum(axis=1, keepdims=True), dtype=float)


class ChainedEquations:
    """One imputation by chained equations with posterior draws (mice's "norm"); plain arrays only.

    ``codes[j]``: None for a continuous column, else the number of valid codes (0, 1, …, k − 1);
    ``unordered``: the columns whose codes are categories (no order), by their number of codes.
    """

    def __init__(
        self,
        impute: Sequence[int],
        codes: Sequence[int | None],
        bounds: np.ndarray,
        n_iter: int,
        rng: np.random.Generator,
        unordered: dict[int, int] | None = None,
    ):
        self.impute = list(impute)
        self.codes = list(codes)
        self.bounds = bounds
        self.n_iter = n_iter
        self.rng = rng
        self.unordered = dict(unordered or {})

    def _snap(self, j: int, values: np.ndarray) -> np.ndarray:
        return _snap(values, self.codes[j], self.bounds[j])

    def complete(self, Z: np.ndarray, aux: np.ndarray) -> np.ndarray:
        """A completed copy of ``Z`` (training rows), ``aux`` (complete) among the predictors."""
        out = np.array(Z, dtype=float)
        missing = np.isnan(out)
        for j in self.impute:  # start from random draws of the observed values, as mice does
            observed = out[~missing[:, j], j]
            out[missing[:, j], j] = self.rng.choice(observed, missing[:, j].sum())
        full = np.column_stack([out, aux])
        for _ in range(self.n_iter):
            for j in self.impute:
                rows = missing[:, j]
                if not rows.any():
                    continue
                design = _design(full, j, self.unordered)
                if j in self.unordered:
                    coef = self._draw_multinomial(design[~rows], full[~rows, j], self.unordered[j])
                    probs = _probabilities(design[rows], coef)
                    full[rows, j] = [self.rng.choice(len(p), p=p) for p in probs]
                    continue
                beta, sigma = self._draw(design[~rows], full[~rows, j])
                noise = self.rng.normal(0.0, sigma, rows.sum())
                full[rows, j] = self._snap(j, design[rows] @ beta + noise)
        return full[:, : out.shape[1]]

    def _draw_multinomial(self, X: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
        """Multinomial coefficients fitted to a bootstrap sample of the rows (parameter uncertainty)."""
        rows = self.rng.integers(0, len(y), len(y))
        return _multinomial(X[rows], y[rows], k)

    def _draw(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        """β and σ drawn from their posterior under a flat prior (Rubin 1987; mice's ``norm.draw``)."""
        n, p = X.shape
        xtx = X.T @ X + _RIDGE * np.eye(p)
        beta_hat = np.linalg.solve(xtx, X.T @ y)
        residual = y - X @ beta_hat
        df = max(n - p, 1)
        sigma = math.sqrt(float(residual @ residual) / self.rng.chisquare(df))
        chol = np.linalg.cholesky(np.linalg.inv(xtx))
        return beta_hat + sigma * chol @ self.rng.normal(size=p), sigma

    def scoring_model(self, completed: np.ndarray) -> list[Any]:
        """For new patients (outcome unknown): per imputed column, drawn coefficients of a regression
        on the other covariates of this completed copy, as plain lists (a k × p list of lists for a
        categorical column's multinomial model)."""
        out: list[Any] = []
        for j in self.impute:
            design = _design(completed, j, self.unordered)
            if j in self.unordered:
                out.append(self._draw_multinomial(design, completed[:, j], self.unordered[j]).tolist())
            else:
                out.append([float(b) for b in self._draw(design, completed[:, j])[0]])
        return out


def _snap(values: np.ndarray, k: int | None, bounds: np.ndarray) -> np.ndarray:
    """A continuous draw kept within the observed range; a discrete one at its nearest valid code."""
    if k is None:
        return np.asarray(np.clip(values, bounds[0], bounds[1]), dtype=float)
    return np.asarray(np.clip(np.round(values), 0, k - 1), dtype=float)


def _impute_new(
    Z: np.ndarray,
    impute: Sequence[int],
    codes: Sequence[int | None],
    bounds: np.ndarray,
    model: Sequence[Any],
    start: np.ndarray,
    unordered: dict[int, int] | None = None,
) -> np.ndarray:
    """Conditional-mean imputation of new rows under one imputation's drawn regressions (the most
    probable code for a categorical column)."""
    out = np.array(Z, dtype=float)
    missing = np.isnan(out)
    if not missing.any():
        return out
    out = np.where(missing, start[None, :], out)
    for _ in range(10):
        for j, beta in zip(impute, model, strict=True):
            rows = missing[:, j]
            if not rows.any():
                continue
            design = _design(out[rows], j, unordered)
            coef = np.asarray(beta, dtype=float)
            if coef.ndim == 2:
                out[rows, j] = np.argmax(design @ coef.T, axis=1)
            else:
                out[rows, j] = _snap(design @ coef, codes[j], bounds[j])
    return out


class MultipleImputationSurvival(SurvivalEstimator):
    """A model fitted on ``n_imputations`` completed copies of the training covariates; see the module.

    Parameters
    ----------
    encoding
        The transformer from covariates to model features (fitted per completed copy).
    estimator
        The survival family (fitted per completed copy).
    impute
        The covariates (column names of X) that may be missing and are imputed.
    codes
        The discrete ones among them, with their number of codes (binary 2, ordinal or categorical k).
    categorical
        The discrete ones whose codes are unordered categories (imputed by multinomial regression).
    n_imputations, n_iter
        m, and the chained-equations cycles per imputation.
    random_state
        Seed of the imputation draws.
    """

    FILES = frozenset({IMPUTATION_FILE})

    def __init__(
        self,
        encoding: Any = None,
        estimator: Any = None,
        impute: Sequence[str] = (),
        codes: dict[str, int] | None = None,
        n_imputations: int = 10,
        n_iter: int = 10,
        random_state: int = 0,
        categorical: Sequence[str] = (),
    ) -> None:
        self.encoding = encoding
        self.estimator = estimator
        self.impute = impute
        self.codes = codes
        self.categorical = categorical
        self.n_imputations = n_imputations
        self.n_iter = n_iter
        self.random_state = random_state

    @property
    def handles_missing(self) -> bool:
        """True: the covariates it imputes may be missing (the others are checked in ``fit``)."""
        return True

    @property
    def risk_is_log_hazard(self) -> bool:  # type: ignore[override]
        """As the wrapped family (the mean of log hazard ratios is one)."""
        return bool(getattr(self.estimator, "risk_is_log_hazard", False))

    def fit(self, X: Any, y: Any) -> MultipleImputationSurvival:
        """Impute, encode and fit ``n_imputations`` times; returns ``self``."""
        if self.encoding is None or self.estimator is None:
            raise UserInputError("multiple imputation needs the encoding and the model to wrap")
        if not 1 <= self.n_imputations <= 200:
            raise UserInputError(f"n_imputations must be between 1 and 200, got {self.n_imputations}")
        Xa, event, time = self._begin_fit(X, y)
        names = [str(n) for n in getattr(self, "feature_names_in_", [f"x{j}" for j in range(Xa.shape[1])])]
        unknown = sorted(set(self.impute) - set(names))
        if unknown:
            raise UserInputError(f"cannot impute {', '.join(unknown)}: not among the covariates {names}")
        self.impute_ = [names.index(n) for n in self.impute]
        codes: list[int | None] = [(self.codes or {}).get(n) for n in names]
        self.unordered_ = {names.index(n): int(codes[names.index(n)] or 0) for n in self.categorical if n in names}
        others = [j for j in range(Xa.shape[1]) if j not in set(self.impute_)]
        if np.isnan(Xa[:, others]).any():
            raise UserInputError("a covariate that is not imputed has missing values")
        self.bounds_ = np.column_stack([np.nanmin(Xa, axis=0), np.nanmax(Xa, axis=0)])
        self.codes_ = codes
        self.encodings_, self.models_, self.scoring_ = [], [], []
        for completed, scoring in self._chains(Xa, event, time):
            encoding = clone(self.encoding).fit(self._frame(completed))
            self.encodings_.append(encoding)
            self.models_.append(clone(self.estimator).fit(encoding.transform(self._frame(completed)), y))
            self.scoring_.append(scoring)
        self.codes_ = codes
        self.start_ = np.nanmean(Xa, axis=0)  # where the chained means start for a new patient
        for j in self.unordered_:  # a category's start is its most common code, not a mean code
            observed = Xa[~np.isnan(Xa[:, j]), j]
            self.start_[j] = float(np.bincount(observed.astype(int)).argmax()) if observed.size else 0.0
        self.feature_means_ = self.start_
        return self

    def _chains(self, Xa: np.ndarray, event: np.ndarray, time: np.ndarray) -> Iterator[tuple[np.ndarray, list[Any]]]:
        """The m completed copies of the training covariates, each with its scoring model, in the
        order of one seeded stream. Both draw from the stream, so a replay with the same data must
        draw both to give the same copies (the scoring model's draws come before the next copy's)."""
        aux = np.column_stack([event.astype(float), nelson_aalen_at(time, event)])
        rng = np.random.default_rng(self.random_state)
        for _ in range(self.n_imputations):
            chain = ChainedEquations(self.impute_, self.codes_, self.bounds_, self.n_iter, rng, self.unordered_)
            completed = chain.complete(Xa, aux)
            yield completed, chain.scoring_model(completed)

    def completed_training(self, X: Any, y: Any) -> list[Any]:
        """The m completed copies of the training covariates this model was fitted on (the fit's
        seeded draws replayed; ``X`` and ``y`` must be the training data), for analyses that pool
        over imputations such as the Cox hazard-ratio table by Rubin's rules."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "models_")
        Xa = self._check_features(X)
        event, time = check_survival_target(y)
        if len(event) != Xa.shape[0]:
            raise UserInputError(f"{Xa.shape[0]} patients but {len(event)} outcomes")
        return [self._frame(completed) for completed, _ in self._chains(Xa, event, time)]

    def completed(self, X: Any) -> list[np.ndarray]:
        """New patients' covariates, imputed under each of the m imputations (rows without a
        missing value are unchanged)."""
        Xa = self._check_features(X)
        return [
            self._frame(_impute_new(Xa, self.impute_, self.codes_, self.bounds_, m, self.start_, self.unordered_))
            for m in self.scoring_
        ]

    def _frame(self, Z: np.ndarray) -> Any:
        """Z with the covariates' names, when fitted on named columns (the encoding reads them)."""
        import pandas as pd

        names = getattr(self, "feature_names_in_", None)
        return Z if names is None else pd.DataFrame(Z, columns=names)

    def _fit_target(self, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """A survival target, or a competing-risks one when the wrapped family models competing
        risks (the imputation models then see the event of interest's indicator and hazard)."""
        if not is_competing(y):
            return super()._fit_target(y)
        cause, time = check_competing_target(y)
        self.max_time_ = float(time.max())
        self.n_events_ = int((cause == 1).sum())
        return cause == 1, time

    def predict_cif(self, X: Any, times: Any, cause: int = 1) -> Any:
        """A competing-risk family's CIF of ``cause``: the mean over the m models (a mean of valid
        cumulative incidences is one)."""
        frames = [
            m.predict_cif(e.transform(Z), times, cause=cause)
            for m, e, Z in zip(self.models_, self.encodings_, self.completed(X), strict=True)
        ]
        mean = frames[0].copy()
        mean[:] = np.mean([f.to_numpy() for f in frames], axis=0)
        if hasattr(X, "index"):
            mean.index = X.index
        return mean

    def predict_risk(self, X: Any) -> np.ndarray:
        """The mean over the m models of their risk scores."""
        risks = [
            m.predict_risk(e.transform(Z))
            for m, e, Z in zip(self.models_, self.encodings_, self.completed(X), strict=True)
        ]
        return np.asarray(np.mean(risks, axis=0), dtype=float)

    def _survival_matrix(self, X: Any, times: np.ndarray) -> np.ndarray:
        curves = [
            m.predict_survival(e.transform(Z), times).to_numpy()
            for m, e, Z in zip(self.models_, self.encodings_, self.completed(X), strict=True)
        ]
        return np.asarray(np.mean(curves, axis=0), dtype=float)

    # ------------------------------------------------------------------ model folder
    def save_state(self, folder: Path) -> None:
        """``imputation.json`` (the imputation models, the encodings) and each imputation's model
        in ``imputation_<i>/``, in its family's own files."""
        for i, model in enumerate(self.models_):
            sub = folder / f"imputation_{i}"
            sub.mkdir()
            model.save_state(sub)
        params = {k: v for k, v in self.get_params(deep=False).items() if k not in ("encoding", "estimator")}
        names = getattr(self, "feature_names_in_", None)
        write_json(
            folder / IMPUTATION_FILE,
            {
                "params": {
                    **params,
                    "impute": list(self.impute),
                    "codes": dict(self.codes or {}),
                    "categorical": list(self.categorical),
                },
                "max_time": self.max_time_,
                "n_events": self.n_events_,
                "n_features_in": self.n_features_in_,
                "feature_names_in": None if names is None else [str(n) for n in names],
                "encodings": [e.to_state() for e in self.encodings_],
                "scoring": self.scoring_,
                "impute_index": self.impute_,
                "codes_by_column": self.codes_,
                "start": self.start_,
                "bounds": self.bounds_,
            },
        )

    @classmethod
    def load_imputed(cls, folder: Path, family: type[SurvivalEstimator]) -> MultipleImputationSurvival:
        """The fitted model from its folder; ``family``: the estimator class of each imputation's model."""
        d = read_json(folder / IMPUTATION_FILE, may_be_nan=frozenset({"bounds", "start"}))
        models = [family.load_state(folder / f"imputation_{i}") for i in range(len(d["encodings"]))]
        encodings = [DeclaredEncoding.from_state(e) for e in d["encodings"]]
        mi = cls(encodings[0].__class__(**encodings[0].get_params()), models[0].__class__(**models[0].get_params()))
        mi.set_params(**d["params"])
        mi.models_, mi.encodings_ = models, encodings
        mi.scoring_ = [[np.asarray(beta, dtype=float).tolist() for beta in model] for model in d["scoring"]]
        mi.impute_ = [int(j) for j in d["impute_index"]]
        mi.codes_ = [None if k is None else int(k) for k in d["codes_by_column"]]
        names = list(d.get("feature_names_in") or [])
        mi.unordered_ = {names.index(n): int(mi.codes_[names.index(n)] or 0) for n in mi.categorical if n in names}
        mi.start_ = np.asarray(d["start"], float)
        mi.bounds_ = np.asarray(d["bounds"], float)
        mi.max_time_, mi.n_events_, mi.n_features_in_ = (
            float(d["max_time"]),
            int(d["n_events"]),
            int(d["n_features_in"]),
        )
        mi.feature_means_ = mi.start_
        if d.get("feature_names_in") is not None:
            mi.feature_names_in_ = np.asarray(d["feature_names_in"], dtype=object)
        return mi
