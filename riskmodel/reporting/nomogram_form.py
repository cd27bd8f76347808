"""A model whose prediction is one formula of one linear predictor: what a nomogram or a static
calculator can carry.

Two families qualify:

* a Cox model (Cox 1972): the survival probability S(t | x) = exp(−Λ₀(t)·exp(lp));
* a Fine-Gray model (Fine & Gray, JASA 1999;94:496-509), its event of interest only: the cumulative
  incidence CIF₁(t | x) = 1 − exp(−Λ₁₀(t)·exp(lp)), with Λ₁₀ the baseline cumulative
  subdistribution hazard.

In both, lp = (z − z̄)ᵀβ with z̄ the training means of the features, and Λ(t) is the stored
right-continuous baseline at t. So both give one sum of points per predictor, mapped through one
monotone function per horizon (:func:`probability`). The competing event's CIF of a Fine-Gray
model is not of this form for the nomogram's points (it is a separate model, capped by the first):
it is never drawn.

Not of this form, and refused with the reason: the cause-specific Cox model (its CIF combines two
cause-specific hazards through the Aalen-Johansen formula), the forest and the boosting (no sum of
one score per predictor), and a model fitted on multiple imputations (pooled fits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from riskmodel.errors import UserInputError
from riskmodel.models import CauseSpecificCox, CoxPH, MultipleImputationSurvival
from riskmodel.models.fine_gray import FineGray
from riskmodel.scoring import RiskModel
from riskmodel.stats import step_values

__all__ = [
    "CALCULATOR",
    "LinearForm",
    "check_nomogram_model",
    "competing_words",
    "linear_form",
    "not_linear_reason",
    "probability",
]

CALCULATOR = (
    "use the calculator instead: riskmodel score --model URI --patients FILE (per-patient predictions, "
    "with --report for pages), or the web calculator riskmodel serve"
)
Outcome = Literal["survival", "cif"]


def probability(outcome: Outcome, cumhaz: Any, lp: Any) -> np.ndarray:
    """S = exp(−Λ·e^lp) (``survival``) or CIF = 1 − exp(−Λ·e^lp) (``cif``), elementwise.

    >>> float(probability("survival", 0.5, 0.0)), float(probability("cif", 0.5, 0.0))  # e^-0.5
    (0.6065306597126334, 0.3934693402873666)
    """
    with np.errstate(over="ignore"):
        h = np.asarray(cumhaz, dtype=float) * np.exp(np.asarray(lp, dtype=float))
    return np.asarray(np.exp(-h) if outcome == "survival" else -np.expm1(-h), dtype=float)


@dataclass(frozen=True)
class LinearForm:
    """One linear predictor and one baseline: the whole prediction of a Cox or Fine-Gray model."""

    outcome: Outcome  # "survival" (Cox: S) or "cif" (Fine-Gray: CIF of the event of interest)
    coef: np.ndarray
    mean: np.ndarray  # the features' training means (lp = (z − mean)·coef)
    event_times: np.ndarray
    cumhaz: np.ndarray  # the baseline cumulative (subdistribution) hazard from each event time on

    def lp(self, Z: Any) -> np.ndarray:
        """The linear predictor of feature rows ``Z``."""
        return np.asarray((np.asarray(Z, dtype=float) - self.mean) @ self.coef, dtype=float)

    def cumhaz_at(self, times: Any) -> np.ndarray:
        """Λ(t) at ``times`` (right-continuous steps; 0 before the first event)."""
        return step_values(self.event_times, self.cumhaz, np.asarray(times, dtype=float))

    def predict(self, Z: Any, times: Any) -> np.ndarray:
        """S(t) or CIF(t), patients × times."""
        return probability(self.outcome, self.cumhaz_at(times)[None, :], self.lp(Z)[:, None])


def linear_form(model: RiskModel) -> LinearForm | None:
    """The model's :class:`LinearForm`, or None when its prediction is not one (module docstring)."""
    est = model.estimator
    if isinstance(est, CoxPH):
        return LinearForm("survival", *(np.asarray(a, dtype=float) for a in _cox_arrays(est)))
    if isinstance(est, FineGray):
        first = est.cause_models_[0]
        if first is None:
            return None
        arrays = (first.coef, first.mean, first.event_times, first.cumhaz)
        return LinearForm("cif", *(np.asarray(a, dtype=float) for a in arrays))
    return None


def _cox_arrays(cox: CoxPH) -> tuple[Any, Any, Any, Any]:
    return cox.coef_, cox.mean_, cox.event_times_, cox.baseline_cumhaz_


def not_linear_reason(model: RiskModel) -> str:
    """Why ``model`` has no nomogram (a clause of a sentence)."""
    est = model.estimator
    if isinstance(est, CauseSpecificCox):
        return (
            "it is a cause-specific Cox competing-risks model, whose CIF combines two cause-specific hazards "
            "through the Aalen-Johansen formula, so it is not one sum of points per predictor (train a Fine-Gray "
            "model, family fine_gray, for a nomogram of the CIF, or competing_risks: false for a cause-specific "
            "Cox nomogram)"
        )
    if isinstance(est, FineGray):
        return "its Fine-Gray model of the event of interest was not fitted (no such event in training)"
    if isinstance(est, MultipleImputationSurvival):
        return "its Cox fits are pooled over multiple imputations, so there is no single set of points"
    if model.competing:
        return f"it is a competing-risks {model.family} model, whose CIF is not a sum of one score per predictor"
    return f"a {model.family} model's prediction is not a sum of one score per predictor"


def check_nomogram_model(model: RiskModel) -> LinearForm:
    """The model's linear form (Cox, or Fine-Gray's event of interest), or a one-line refusal
    naming the reason and the calculator."""
    form = linear_form(model)
    if form is None:
        raise UserInputError(
            f"no nomogram for the {model.endpoint.upper()} {model.family} model: {not_linear_reason(model)}; "
            f"{CALCULATOR}"
        )
    return form


def competing_words(model: RiskModel) -> tuple[str, str]:
    """The event of interest and the competing event in the endpoint's own words, e.g.
    ("local failure", "death") for the bundled LC endpoint."""
    labels = model.event_labels
    competing = labels.competing.split(" without ")[0]
    return labels.event, competing.replace(" (", " ").replace(")", "")
