"""The Cox hazard-ratio table of a multiply imputed cohort, by Rubin's rules.

Fit one ``CoxPH(penalty=0)`` per completed dataset, then pool the coefficients and their
variances (the diagonal of the inverse information, as in :attr:`CoxPH.hazard_ratios_`) with
:func:`riskmodel.stats.rubin_pool`. The complete-data degrees of freedom default to mice's for a
``coxph`` fit (``mice:::get.dfcom``): events − p of the first analysis, at least 1. Impute with
the event indicator and the Nelson-Aalen cumulative hazard among the predictors, not the time
itself (White & Royston, Stat Med 2009;28:1982-98).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from riskmodel.errors import UserInputError
from riskmodel.models.cox import CoxPH
from riskmodel.stats import PooledEstimates, rubin_pool

__all__ = ["cox_dfcom", "pool_cox", "pooled_hazard_ratios"]


def cox_dfcom(model: CoxPH) -> float:
    """mice's complete-data df for a Cox fit: events − coefficients, at least 1."""
    return float(max(model.n_events_ - len(model.coef_), 1))


def _covariance(model: CoxPH, which: int) -> np.ndarray:
    """The coefficient covariance of one unpenalised fit: the inverse of its information."""
    problem = None
    if not isinstance(model, CoxPH) or not hasattr(model, "coef_"):
        problem = "is not a fitted CoxPH"
    elif model.penalty != 0:
        problem = f"has penalty {model.penalty:g}; penalised estimates have no valid variance (fit with penalty=0)"
    elif not model.converged_:
        problem = "did not converge"
    elif model.constant_.any():
        problem = "has a constant feature, whose coefficient is not estimable"
    elif getattr(model, "information_", None) is None:
        problem = "has no information matrix (a model file written before riskmodel 0.1's explain)"
    if problem is None:
        try:
            return np.asarray(np.linalg.inv(model.information_), float)
        except np.linalg.LinAlgError:
            problem = "has a singular information matrix"
    raise UserInputError(f"model {which + 1} of the imputed analyses {problem}")


def pool_cox(models: Sequence[CoxPH], dfcom: float | None = None, level: float = 0.95) -> PooledEstimates:
    """Rubin's rules over unpenalised Cox fits, one per imputed dataset, on the same features."""
    if len(models) == 0:
        raise UserInputError("pooling needs at least one fitted Cox model")
    covariances = [_covariance(model, i) for i, model in enumerate(models)]
    names = [_names(model) for model in models]
    for i, other in enumerate(names[1:], start=2):
        if other != names[0]:
            raise UserInputError(f"model {i} has features {other}, model 1 has {names[0]}: pool the same model")
    estimates = np.vstack([model.coef_ for model in models])
    return rubin_pool(estimates, np.stack(covariances), cox_dfcom(models[0]) if dfcom is None else dfcom, level)


def _names(model: CoxPH) -> list[str]:
    fitted = getattr(model, "feature_names_in_", None)
    return [str(n) for n in fitted] if fitted is not None else [f"x{i}" for i in range(len(model.coef_))]


def pooled_hazard_ratios(models: Sequence[CoxPH], dfcom: float | None = None) -> pd.DataFrame:
    """The pooled hazard-ratio table: :attr:`CoxPH.hazard_ratios_`'s columns, by Rubin's rules.

    ``coef`` (qbar), ``hr``, ``se`` (√ of the total variance), ``hr_lower_95``, ``hr_upper_95``
    and ``p`` come from a t distribution on the Barnard-Rubin ``df`` (so the statistic column is
    ``t``, not ``z``), then ``df``, ``fmi`` and ``riv``. ``attrs`` hold ``m`` and ``dfcom``.
    """
    pooled = pool_cox(models, dfcom)
    table = pd.DataFrame(
        {
            "coef": pooled.estimate,
            "hr": pooled.ratio,
            "se": pooled.se,
            "hr_lower_95": pooled.ratio_lower,
            "hr_upper_95": pooled.ratio_upper,
            "t": pooled.statistic,
            "p": pooled.p,
            "df": pooled.df,
            "fmi": pooled.fmi,
            "riv": pooled.riv,
        },
        index=pd.Index(_names(models[0]), name="feature"),
    )
    table.attrs.update({"penalty": 0.0, "m": pooled.m, "dfcom": pooled.dfcom})
    return table
