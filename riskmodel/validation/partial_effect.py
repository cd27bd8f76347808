"""A fitted Cox model's partial effect of one continuous input on the log hazard, from its own fit.

:mod:`riskmodel.validation.dose_response` fits its own ``rcs(dose, k)`` model for the survival
report; a trained model has already been fitted, so its report shows what *that* model says, with
no refit: for an input x (the dose, or any covariate modelled with a restricted cubic spline) and
the model columns B(x) it moves (x and its non-linear terms x', x'', …, or a log or a linear term),

    log HR(x) = (B(x) − B(ref))ᵀ β,   se(x)² = (B(x) − B(ref))ᵀ V (B(x) − B(ref)),

with β the model's coefficients and V the inverse of its information matrix at the fit (the
covariance ``rms::Predict`` uses for a ``cph`` fit; for a penalised fit the information of the
log partial likelihood at the penalised estimate, the band's convention in
:func:`riskmodel.explain.whatif.cox_band`). The reference is the training median, as
``rms::datadist``'s adjust-to value with ``Predict(…, ref.zero = TRUE)``; the band is pointwise
(Harrell, *Regression Modeling Strategies*, 2nd ed., 2015, §2.4 and §9.3.1).

Tests of the input, as ``anova.rms`` and ``lrtest`` give them: Wald χ² of all its columns
(overall) and of its non-linear terms (non-linearity), from β and V; and, for an unpenalised fit
with the training data at hand, likelihood-ratio tests against the fits without the non-linear
terms and without the input (the only refits: an LR test compares nested fits by definition).

The grid runs from the 5th smallest to the 5th largest training value
(:func:`riskmodel.features.safe_harbor.shared_range`), so a curve never ends on one patient's value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from riskmodel.features.safe_harbor import shared_range
from riskmodel.models.cox import CoxPH
from riskmodel.validation.dose_response import cox_summary, pointwise_band

__all__ = ["DOSE_INPUTS", "PartialEffect", "partial_effect", "partial_effect_inputs"]

DOSE_INPUTS = ("d90_gy",)  # the bundled study's continuous dose
_SPLINE_TERM = re.compile(r"_rcs\d+$")


@dataclass
class PartialEffect:
    """One input's partial effect in a fitted Cox model.

    ``curve``: ``value``, ``log_hr`` (against ``reference``), ``se``, ``lower``, ``upper`` (pointwise,
    at ``level``), ``hr``. ``tests``: ``hypothesis`` (overall, nonlinear), ``test`` (Wald, LR), ``chi2``,
    ``df``, ``p``. ``columns``: the model columns the input moves; ``nonlinear``: its spline terms.
    """

    input: str
    columns: list[str]
    nonlinear: list[str]
    knots: list[float]
    reference: float
    level: float
    curve: pd.DataFrame
    tests: pd.DataFrame
    penalised: bool
    notes: list[str] = field(default_factory=list)

    def test(self, hypothesis: str, kind: str = "Wald") -> tuple[float, int, float] | None:
        """(χ², df, p) of ``overall`` or ``nonlinear`` by ``Wald`` or ``LR``; None when not computed."""
        rows = self.tests[(self.tests["hypothesis"] == hypothesis) & (self.tests["test"] == kind)]
        if rows.empty:
            return None
        row = rows.iloc[0]
        return float(row["chi2"]), int(row["df"]), float(row["p"])


def _rows_with(X: pd.DataFrame, column: str, values: np.ndarray) -> pd.DataFrame:
    """One training row (the first without a missing input), repeated with ``column`` set to ``values``."""
    complete = X.notna().all(axis=1).to_numpy()
    row = X.iloc[[int(np.argmax(complete))]]
    rows = pd.concat([row] * len(values), ignore_index=True)
    rows[column] = values
    return rows


def _moved_columns(features: Any, X: pd.DataFrame, column: str) -> list[int]:
    """Indices of the model columns that change when only ``column`` changes (over its training values)."""
    values = np.unique(pd.to_numeric(X[column], errors="coerce").dropna().to_numpy(float))
    probe = values[np.linspace(0, len(values) - 1, min(len(values), 25)).round().astype(int)]
    Z = np.asarray(features.transform(_rows_with(X, column, probe)), float)
    return [j for j in range(Z.shape[1]) if np.ptp(Z[:, j]) > 0]


def partial_effect_inputs(features: Any, X: pd.DataFrame) -> list[str]:
    """The inputs whose partial effect a model report shows: the dose (:data:`DOSE_INPUTS`) and every
    input modelled with a restricted cubic spline, in the model's input order."""
    names = [str(n) for n in features.get_feature_names_out()]
    out = []
    for column in features.input_columns():
        if column not in X.columns or pd.to_numeric(X[column], errors="coerce").dropna().nunique() < 3:
            continue
        moved = [names[j] for j in _moved_columns(features, X, column)]
        if moved and (column in DOSE_INPUTS or any(_SPLINE_TERM.search(m) for m in moved)):
            out.append(column)
    return out


def _wald(coef: np.ndarray, cov: np.ndarray, idx: list[int]) -> float:
    b = coef[idx]
    return float(b @ np.linalg.solve(cov[np.ix_(idx, idx)], b))


def _lr(cox: CoxPH, Z: np.ndarray, y: Any, drop: list[int]) -> float:
    """2 × (log partial likelihood of the model − that of its refit without columns ``drop``)."""
    keep = [j for j in range(Z.shape[1]) if j not in drop]
    time, event = np.asarray(y["time"], float), np.asarray(y["event"], bool)
    reduced = cox_summary(Z[:, keep], time, event, ties=cox.ties).loglik if keep else cox.log_likelihood_null_
    return float(2 * (cox.log_likelihood_ - reduced))


def _tests(
    cox: CoxPH, cov: np.ndarray, idx: list[int], nonlinear: list[int], Z: np.ndarray | None, y: Any
) -> pd.DataFrame:
    rows = []
    for hypothesis, cols in (("overall", idx), ("nonlinear", nonlinear)):
        if not cols:
            continue
        chi2s = {"Wald": _wald(cox.coef_, cov, cols)}
        if Z is not None:
            chi2s["LR"] = _lr(cox, Z, y, cols)
        for kind, chi2 in chi2s.items():
            rows.append(
                {
                    "hypothesis": hypothesis,
                    "test": kind,
                    "chi2": chi2,
                    "df": len(cols),
                    "p": float(stats.chi2.sf(chi2, len(cols))),
                }
            )
    return pd.DataFrame(rows, columns=["hypothesis", "test", "chi2", "df", "p"])


def partial_effect(
    features: Any,
    cox: CoxPH,
    X: pd.DataFrame,
    column: str,
    y: Any = None,
    *,
    grid: Any = None,
    reference: float | None = None,
    level: float = 0.95,
) -> PartialEffect:
    """The partial effect of ``column`` on the log hazard of the fitted ``cox`` (module docstring).

    ``features``: the model's fitted transformer (inputs → model columns); ``X``: the training
    inputs (for the median, the grid and which columns the input moves); ``y``: the training
    target, for the likelihood-ratio tests of an unpenalised fit (Wald tests only without it).
    """
    names = [str(n) for n in features.get_feature_names_out()]
    idx = _moved_columns(features, X, column)
    values = pd.to_numeric(X[column], errors="coerce").dropna().to_numpy(float)
    ref = float(np.median(values)) if reference is None else float(reference)
    if grid is None:
        low, high = shared_range(values) or (float(values.min()), float(values.max()))
        grid = np.linspace(low, high, 100)
    x = np.asarray(grid, float)
    Z = np.asarray(features.transform(_rows_with(X, column, np.append(x, ref))), float)
    contrast = (Z[:-1] - Z[-1])[:, idx]
    cov = np.linalg.inv(np.asarray(cox.information_, float))
    curve = pointwise_band("value", x, contrast, cox.coef_[idx], cov[np.ix_(idx, idx)], level)
    nonlinear = [j for j in idx if _SPLINE_TERM.search(names[j])]
    penalised = float(cox.penalty) > 0
    train = None
    if y is not None and not penalised:
        train = np.asarray(features.transform(X), float)
    knots = list(getattr(getattr(features, "encoding_", None), "knots_", {}).get(column, []))
    notes = (
        [] if train is not None else ["likelihood-ratio tests need an unpenalised fit and its training data: Wald only"]
    )
    return PartialEffect(
        input=column,
        columns=[names[j] for j in idx],
        nonlinear=[names[j] for j in nonlinear],
        knots=[float(k) for k in knots],
        reference=ref,
        level=level,
        curve=curve,
        tests=_tests(cox, cov, idx, nonlinear, train, y),
        penalised=penalised,
        notes=notes,
    )
