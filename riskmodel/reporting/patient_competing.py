"""A competing-risk model on a patient's page (``riskmodel score --report``).

For the event of interest (say local failure) and its competing event (death without local
failure), the page shows:

* a stacked figure over time, from time zero to the model's last horizon (never beyond the
  training follow-up): the CIF of the event at the bottom, the competing event's CIF stacked on
  it, and the event-free probability the remainder up to 1; the three bands of any vertical line
  add up to 1;
* a table of the three probabilities at each horizon, and words saying what each band means;
* how each input moved the CIF of the event over time: time-dependent Shapley values
  (:mod:`riskmodel.explain.over_time`, SurvSHAP(t)-style) against the training mean.

No band has an uncertainty interval: the cause-specific models' uncertainty is not carried
through the Aalen-Johansen combination here, and the page says so.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.explain import explain_over_time
from riskmodel.features.labels import feature_labels
from riskmodel.models.cif import cif_matrix, risk_horizon
from riskmodel.reporting.page import format_probability
from riskmodel.reporting.plots import figure_html, over_time_plot, stacked_cif_plot

__all__ = ["STACKED_ALT", "competing_cells", "competing_section", "competing_table", "competing_words"]

STACKED_ALT = "stacked cumulative incidence"


def _until(model: Any) -> float:
    """The figure's last time: the model's last horizon, never beyond the training follow-up."""
    return float(min(max(model.horizons), model.max_time))


def competing_table(model: Any, Z: np.ndarray) -> pd.DataFrame:
    """One row per horizon: the three probabilities (as a page shows them) that add up to 1."""
    labels = model.event_labels
    cif = cif_matrix(model.estimator, Z[:1], model.horizons)
    rows = []
    for j, h in enumerate(model.horizons):
        a, b = float(cif[0, 0, j]), float(cif[1, 0, j])
        unstable = " (unstable: few followed)" if model.unstable_horizons([h]) else ""
        rows.append(
            {
                "months": f"{h:g}",
                f"{labels.event}": format_probability(a) + unstable,
                f"{labels.competing}": format_probability(b),
                f"{labels.event_free}": format_probability(1.0 - a - b),
            }
        )
    return pd.DataFrame(rows)


def competing_cells(model: Any, Z: np.ndarray) -> dict[str, str]:
    """The summary table's cells of a competing model: the CIF of the event at each horizon."""
    cif = cif_matrix(model.estimator, Z[:1], model.horizons)[0, 0]
    return {
        f"CIF({h:g})": format_probability(float(v))
        + (" (unstable: few followed)" if model.unstable_horizons([h]) else "")
        for h, v in zip(model.horizons, cif, strict=True)
    }


def competing_words(model: Any) -> list[str]:
    """What each band of the stacked figure means, and what the risk score and group are."""
    labels = model.event_labels
    return [
        f"Bottom band: the probability of {labels.event} by that time (cumulative incidence; the "
        f"competing event may come first, and then {labels.event} cannot).",
        f"Middle band: the probability of {labels.competing} by that time.",
        f"Top band: the probability of neither by that time ({labels.event_free}). At every time "
        "the three bands add up to 1.",
        f"The risk score is the probability of {labels.event} by {risk_horizon(model.estimator):g} months; "
        "the risk group compares it with the training patients' scores (tertiles).",
        "No uncertainty band: the cause-specific models' uncertainty is not carried through their combination. "
        f"Drawn to {_until(model):g} months at most (the model's last horizon, within the training follow-up).",
    ]


def competing_section(model: Any, Z: np.ndarray, row: pd.Series, raw: pd.DataFrame) -> list[str]:
    """The page's parts for one competing model: stacked figure, words, table, contributions over time."""
    labels = model.event_labels
    name = f"{model.endpoint.upper()} ({model.family})"
    until = _until(model)
    grid = np.linspace(0.0, until, 200)
    cif = cif_matrix(model.estimator, Z[:1], grid[1:])[:, 0]
    cif = np.concatenate([np.zeros((2, 1)), cif], axis=1)
    fig = stacked_cif_plot(
        grid,
        cif[0],
        cif[1],
        (labels.event, labels.competing, labels.event_free),
        model.horizons,
        f"months after {model.time_origin}",
        f"{name}: {labels.event}, {labels.competing}, or neither (dotted: horizons)",
    )
    parts = [
        f"<h2>{html.escape(name)}: {html.escape(labels.event)} with {html.escape(labels.competing)} competing</h2>",
        figure_html(fig, f"{name} {STACKED_ALT}"),
        "<ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in competing_words(model)) + "</ul>",
        competing_table(model, Z).to_html(index=False, border=0, escape=True),
    ]
    over = explain_over_time(model, raw)
    table = over.patient(0)
    table.index = feature_labels(model.features, row, Z[0], model.declaration)
    parts.append(
        figure_html(
            over_time_plot(table, f"{name}: what moved the probability of {labels.event}", "contribution"),
            f"{name} contributions over time",
        )
    )
    parts.append(
        "<p class='small'>"
        + html.escape(
            f"Each line: how much this input moved the probability of {labels.event} at each time, against "
            f"an average training patient (time-dependent Shapley values, SurvSHAP(t)); {over.method}."
        )
        + "</p>"
    )
    return parts
