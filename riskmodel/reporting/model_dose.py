"""The model report's "Dose-response" section: a trained Cox model's own partial effects.

For each input :func:`riskmodel.validation.partial_effect.partial_effect_inputs` names (the dose,
and every covariate modelled with a restricted cubic spline), the partial effect on the log
hazard with its pointwise 95% band, as ``rms::Predict`` draws it, computed from the fitted model's
coefficients and covariance (no refit), with a binned rug of the training values and its Wald and
(unpenalised fits) likelihood-ratio tests of the overall effect and of non-linearity. The survival
report's section (:mod:`riskmodel.reporting.dose_section`) fits its own spline and adds the
threshold analysis; this one shows what the trained model says.

A competing-risks Cox model shows the cause-specific log hazard of the event of interest; the
forest, boosting and Fine-Gray families say the partial effect on the log hazard is shown for the
Cox model. Only aggregates go in: the curve over the 5th smallest to the 5th
largest value, patients per bin, test statistics.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.features.labels import input_label, input_unit
from riskmodel.models import CoxPH
from riskmodel.models.competing import CauseSpecificCox
from riskmodel.reporting.dose_section import band_curve, binned_rug, rug_strip
from riskmodel.reporting.page import format_p, table_html
from riskmodel.reporting.plots import figure_html, pyplot
from riskmodel.validation.partial_effect import PartialEffect, partial_effect, partial_effect_inputs

__all__ = ["model_dose_html", "partial_effect_plot"]

_HEADING = "<h3>Dose-response: partial effects on the log hazard</h3>"


def partial_effect_plot(effect: PartialEffect, rug: pd.DataFrame, title: str, xlabel: str, what: str) -> Any:
    """The log hazard ratio against the reference value with its band, and the binned rug beneath."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    c = effect.curve
    how = f"restricted cubic spline, {len(effect.knots)} knots" if effect.nonlinear else "its term as encoded"
    if effect.columns == [effect.input]:
        how = "linear"
    band_curve(ax, c["value"], c, f"the fitted model ({how})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{what} vs {effect.reference:g}")
    ax.set_title(title, fontsize=10)
    rug_strip(fig, ax, rug)
    return fig


def _sentence(effect: PartialEffect, label: str, unit: str) -> str:
    parts = []
    for kind in ("LR", "Wald"):
        for hypothesis, words in (("overall", "overall"), ("nonlinear", "non-linearity")):
            test = effect.test(hypothesis, kind)
            if test is not None:
                parts.append(f"{kind} {words} χ² {test[0]:.2f} on {test[1]} df (p {format_p(test[2])})")
    knots = f" Knots at {', '.join(f'{k:.4g}' for k in effect.knots)} {unit}." if effect.knots else ""
    why = f" ({'; '.join(effect.notes)})" if effect.notes else ""
    return (
        f"{label}: the partial effect on the log hazard relative to the training median, {effect.reference:g} "
        f"{unit}, from the fitted model's coefficients and their covariance (inverse information at the fit"
        f"{', penalised estimates' if effect.penalised else ''}). Tests{why}: {'; '.join(parts)}.{knots}"
    )


def _cox_part(estimator: Any) -> tuple[CoxPH | None, str]:
    """The Cox fit whose partial effects are shown, and what its log hazard is."""
    if isinstance(estimator, CoxPH):
        return estimator, "log hazard ratio"
    if isinstance(estimator, CauseSpecificCox) and estimator.models_[0] is not None:
        return estimator.models_[0], "cause-specific log hazard ratio (event of interest)"
    return None, ""


def _event_target(y: Any) -> Any:
    """A survival target; a competing one becomes cause 1's (the other cause censored)."""
    if y is None or "cause" not in (y.dtype.names or ()):
        return y
    out = np.empty(len(y), dtype=[("event", bool), ("time", float)])
    out["event"], out["time"] = np.asarray(y["cause"]) == 1, y["time"]
    return out


def model_dose_html(model: Any, X: pd.DataFrame, y: Any = None) -> str:
    """The section's HTML for a trained :class:`~riskmodel.scoring.RiskModel` on its training inputs
    ``X`` (and target ``y``, for likelihood-ratio tests); "" when no input qualifies."""
    try:
        inputs = partial_effect_inputs(model.features, X)
    except (ValueError, np.linalg.LinAlgError):  # inputs the transformer refuses one at a time: no section
        return ""
    if not inputs:
        return ""
    cox, what = _cox_part(model.estimator)
    declaration = getattr(model, "declaration", None)
    names = ", ".join(input_label(c, declaration) for c in inputs)
    if cox is None and model.family == "cox":  # pooled over imputations: no one fit's covariance to draw from
        return (
            f"{_HEADING}<p>The partial effect of {html.escape(names)} is not drawn for a Cox model pooled over "
            "multiple imputations (no single fit's coefficients and covariance); the pooled hazard ratios are "
            "in the unpenalised table.</p>"
        )
    if cox is None:
        return (
            f"{_HEADING}<p>The partial effect of {html.escape(names)} on the log hazard, with its 95% band and "
            "tests of non-linearity, is shown for the Cox model (family cox) of this experiment; this family "
            f"({html.escape(str(model.family))}) has no log-hazard coefficients and covariance of its own to draw "
            "it from.</p>"
        )
    parts = [_HEADING]
    for column in inputs:
        label, unit = input_label(column, declaration), input_unit(column, declaration)
        try:
            effect = partial_effect(model.features, cox, X, column, _event_target(y))
        except (ValueError, np.linalg.LinAlgError) as exc:
            parts.append(f"<p class='note'>No partial effect of {html.escape(label)}: {html.escape(str(exc))}.</p>")
            continue
        rug = binned_rug(X[column])
        title = f"{model.endpoint.upper()}: partial effect of {label}"
        xlabel = f"{label} ({unit})" if unit else label
        parts.append(figure_html(partial_effect_plot(effect, rug, title, xlabel, what), title))
        parts.append(f"<p>{html.escape(_sentence(effect, label, unit))}</p>")
        tests = effect.tests.assign(hypothesis=effect.tests["hypothesis"].replace({"nonlinear": "non-linearity"}))
        parts.append(table_html(tests, f"Tests of {label} in the fitted model"))
    return "\n".join(parts)
