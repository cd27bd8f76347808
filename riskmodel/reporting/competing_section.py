"""The competing-risks sections of ``riskmodel report``, for any endpoint with competing events.

For an endpoint whose patients can also have a competing event (the bundled LC: death without
local failure; a declared endpoint's ``competing_codes`` or ``competing_endpoint``):

* the cumulative incidence (CIF) of both causes, overall and by group, by the Aalen-Johansen
  estimator (Kalbfleisch & Prentice 2002, ch. 8) with the variance of Gray's ``cmprsk::cuminc``
  (:func:`riskmodel.validation.competing.cif_at_horizon`) and 95 % log(−log) intervals;
* Gray's (1988, Ann. Statist. 16:1141-1154) test of equal CIFs per grouping, for the event and
  for the competing event (:func:`riskmodel.stats.gray_test`, equal to ``cuminc``'s);
* what changes when the competing event is treated as censoring: 1 − Kaplan-Meier with the
  competing events censored (at their own time) beside the Aalen-Johansen CIF, in one sentence
  generated from the numbers;
* the multivariable Fine-Gray model (subdistribution hazard ratios, Fine & Gray 1999,
  :func:`riskmodel.stats.fine_gray`, as ``cmprsk::crr``) and the cause-specific Cox models of both
  causes (:class:`riskmodel.models.CauseSpecificCox`, Efron ties) on the design of the report's
  multivariable Cox model.

Counts and estimates only; the caller writes every file through the PHI guard.
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.core.csvout import write_safe_csv
from riskmodel.errors import RiskModelError, RiskModelWarning
from riskmodel.models.competing import CauseSpecificCox
from riskmodel.reporting.page import format_p, table_html
from riskmodel.reporting.plots import figure_html, pyplot
from riskmodel.stats import aalen_johansen, competing_array, fine_gray, gray_test, km_at
from riskmodel.validation.competing import cif_at_horizon

__all__ = [
    "CifGrouping",
    "CompetingInputs",
    "censoring_sentence",
    "cif_interval",
    "cif_overall",
    "cif_plot",
    "competing_models",
    "competing_section",
    "gray_table",
]

_Z95 = NormalDist().inv_cdf(0.975)
CAUSE_NAMES = {1: "event", 2: "competing"}


@dataclass(frozen=True)
class CifGrouping:
    """One grouping of the patients for CIF curves and Gray's test: its label, the competing-risks
    time and cause (0 censored, 1 event, 2 competing) of the patients with a known group, their
    groups, and whether to draw its curves."""

    label: str
    time: np.ndarray
    cause: np.ndarray
    groups: np.ndarray
    plot: bool = True


def cif_interval(cif: float, var: float) -> tuple[float, float]:
    """95 % interval of a CIF on the log(−log) scale (inside (0, 1)); NaN at 0, 1 or zero variance.

    >>> low, high = cif_interval(0.5, 0.01)
    >>> round(low, 4), round(high, 4)
    (0.2952, 0.6745)
    """
    if not 0 < cif < 1 or var <= 0:
        return math.nan, math.nan
    se = math.sqrt(var) / (cif * abs(math.log(cif)))
    return cif ** math.exp(_Z95 * se), cif ** math.exp(-_Z95 * se)


def _cif(time: np.ndarray, cause: np.ndarray, horizon: float, which: int) -> tuple[float, float, float]:
    """CIF of cause ``which`` at ``horizon`` with its 95 % interval."""
    swapped = np.where(cause == 1, 2, np.where(cause == 2, 1, 0)) if which == 2 else cause
    cif, var = cif_at_horizon(time, swapped, horizon)
    return (cif, *cif_interval(cif, var))


def cif_overall(time: np.ndarray, cause: np.ndarray, horizons: Sequence[float]) -> pd.DataFrame:
    """Per horizon: the Aalen-Johansen CIF of the event and of the competing event (95 % CI), and
    1 − KM of the event with competing events censored, and by how much that overstates the CIF."""
    rows = []
    for h in horizons:
        f1, l1, u1 = _cif(time, cause, h, 1)
        f2, l2, u2 = _cif(time, cause, h, 2)
        one_minus_km = 1 - km_at(time, cause == 1, h)[0]
        rows.append(
            {
                "month": h,
                "CIF event": f1,
                "CIF event lower 95%": l1,
                "CIF event upper 95%": u1,
                "CIF competing": f2,
                "CIF competing lower 95%": l2,
                "CIF competing upper 95%": u2,
                "1 − KM (competing censored)": one_minus_km,
                "overstatement": one_minus_km - f1,
            }
        )
    return pd.DataFrame(rows)


def censoring_sentence(overall: pd.DataFrame, event: str, competing: str, n_competing: int) -> str:
    """What treating the competing event as censoring changes, in words, at the latest horizon
    the table holds (the numbers are the table's)."""
    if not len(overall):
        return f"{_patients(n_competing)} had {competing} before {event}; no horizon falls within follow-up."
    row = overall.iloc[-1]
    km, aj, diff = row["1 − KM (competing censored)"], row["CIF event"], row["overstatement"]
    verb = "overstates it" if diff > 0 else "gives the same"
    tail = f" by {diff:.2f}" if diff > 0 else ""
    return (
        f"At {row['month']:g} months, 1 − Kaplan-Meier ({competing} censored) gives a risk of {event} of "
        f"{km:.2f}; the Aalen-Johansen CIF ({competing} competing) gives {aj:.2f}: treating {competing} as "
        f"censoring {verb}{tail}. {_patients(n_competing)} had {competing} first."
    )


def _patients(n: int) -> str:
    return "1 patient" if n == 1 else f"{n} patients"


def gray_table(grouping: CifGrouping, horizons: Sequence[float]) -> pd.DataFrame:
    """One row per group: n, events and competing events, the CIF of both causes at each horizon
    (95 % CI), and Gray's test (χ², df, p) of each cause across the groups."""
    levels = sorted(set(grouping.groups.astype(str)))
    labels = grouping.groups.astype(str)
    tests: dict[int, tuple[float, float, float]] = {}
    for which in (1, 2):
        try:
            g = gray_test(grouping.time, grouping.cause, labels, event=which)
            tests[which] = (g.statistic, g.df, g.p_value)
        except RiskModelError:  # one group only, no event of this cause, or a singular variance
            tests[which] = (math.nan, len(levels) - 1, math.nan)
    rows = []
    for level in levels:
        mask = labels == level
        t, c = grouping.time[mask], grouping.cause[mask]
        row: dict[str, Any] = {
            "grouping": grouping.label,
            "group": level,
            "n": int(mask.sum()),
            "events": int((c == 1).sum()),
            "competing": int((c == 2).sum()),
        }
        for h in horizons:
            for which in (1, 2):
                f, lo, hi = _cif(t, c, h, which)
                row[f"CIF{which} {h:g} (95% CI)"] = f"{f:.2f} ({lo:.2f}-{hi:.2f})" if lo == lo else f"{f:.2f}"
        for which in (1, 2):
            stat, df, p = tests[which]
            name = CAUSE_NAMES[which]
            row[f"Gray χ² ({name})"], row[f"df ({name})"], row[f"p ({name})"] = stat, df, p
        rows.append(row)
    return pd.DataFrame(rows)


def cif_plot(groups: dict[str, tuple[np.ndarray, np.ndarray]], title: str, names: tuple[str, str], xlabel: str) -> Any:
    """Aalen-Johansen CIF curves per group: the event solid, the competing event dashed, one colour
    per group."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for i, (label, (t, c)) in enumerate(groups.items()):
        colour = f"C{i % 10}"
        for which, style in ((1, "-"), (2, "--")):
            if not (c == which).any():
                continue
            x, f = aalen_johansen(t, c, cause=which)
            ax.step(
                np.r_[0.0, x],
                np.r_[0.0, f],
                where="post",
                color=colour,
                linestyle=style,
                label=f"{label} (n={len(t)}): {names[which - 1]}",
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("cumulative incidence")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


def competing_models(design: pd.DataFrame, time: np.ndarray, cause: np.ndarray) -> dict[str, pd.DataFrame]:
    """The Fine-Gray table (subdistribution HRs) and the cause-specific Cox tables of both causes
    on ``design`` (covariate columns), as ``{"fine_gray": .., "cause_specific_1": .., "cause_specific_2": ..}``;
    each table's ``attrs["converged"]`` says whether its fit converged (a covariate separating one
    cause's events leaves an unbounded coefficient, as R's coxph warns "may be infinite")."""
    names = [str(c) for c in design.columns]
    X = design.to_numpy(float)
    fg = fine_gray(X, time, cause)
    out = {"fine_gray": fg.table(names)}
    out["fine_gray"].attrs["converged"] = bool(fg.converged)
    with warnings.catch_warnings():  # said per table instead (its ``converged`` attribute, its caption)
        warnings.simplefilter("ignore", RiskModelWarning)
        csc = CauseSpecificCox(penalty=0).fit(design, competing_array(cause, time))
    for k, table in csc.hazard_ratio_tables(names).items():
        model = csc.models_[k - 1]
        table.attrs["converged"] = bool(getattr(model, "converged_", True))
        out[f"cause_specific_{k}"] = table
    return out


@dataclass(frozen=True)
class CompetingInputs:
    """What one endpoint's competing-risks section is made of.

    ``names``: how the two causes are called ("local failure", "death without local failure");
    ``origin``: the time origin in words (the same rules as the Kaplan-Meier sections);
    ``design``: the multivariable design (covariates, CR time, cause) or why there is none;
    ``rules``: the competing-after-censoring rule of each endpoint it applies to, in words;
    ``caution``: the exploratory label for captions; ``notes``: anything else the reader must know
    (e.g. the models fitted on complete cases)."""

    endpoint: str
    label: str
    time: np.ndarray
    cause: np.ndarray
    groupings: Sequence[CifGrouping]
    names: tuple[str, str]
    origin: str
    design: tuple[pd.DataFrame, np.ndarray, np.ndarray] | str
    horizons: Sequence[float]
    rules: Sequence[str] = ()
    caution: str = ""
    notes: Sequence[str] = ()


def competing_section(inputs: CompetingInputs, out: Path, summary: dict[str, Any]) -> list[str]:
    """The HTML of one endpoint's competing-risks section; its tables go to ``out`` as CSV and its
    figures (aggregates) into ``summary``."""
    ep, name, caution = inputs.endpoint, inputs.label, inputs.caution
    event, competing = inputs.names
    horizons = [h for h in inputs.horizons if h <= float(np.max(inputs.time))]
    overall = cif_overall(inputs.time, inputs.cause, horizons)
    write_safe_csv(overall, out / f"{ep}_competing_cif.csv", index=False)
    sentence = censoring_sentence(overall, event, competing, int((inputs.cause == 2).sum()))
    summary.update(
        time_origin=inputs.origin,
        patients=len(inputs.time),
        events=int((inputs.cause == 1).sum()),
        competing_events=int((inputs.cause == 2).sum()),
        cif=overall.to_dict(orient="records"),
        sentence=sentence,
        rules=list(inputs.rules),
    )
    parts = [
        f"<h3>{html.escape(name)}: {html.escape(competing)} as a competing risk{html.escape(caution)}</h3>",
        f"<p class='note'>Cumulative incidence by Aalen-Johansen (solid: {html.escape(event)}; dashed: "
        f"{html.escape(competing)}), 95% log(−log) intervals from cuminc's variance; Gray's test per grouping. "
        f"Time origin: {html.escape(inputs.origin)}.</p>",
        f"<p>{html.escape(sentence)}</p>",
        *(f"<p class='note'>{html.escape(r)}.</p>" for r in [*inputs.rules, *inputs.notes]),
        table_html(overall, f"{name}: cumulative incidence of both causes (95% CI) beside 1 − KM{caution}"),
    ]
    axis = f"months ({inputs.origin})"
    parts += _gray_parts(inputs, horizons, axis, out, summary)
    return parts + _model_parts(inputs, out, summary)


def _gray_parts(
    inputs: CompetingInputs, horizons: Sequence[float], axis: str, out: Path, summary: dict[str, Any]
) -> list[str]:
    ep, name, caution = inputs.endpoint, inputs.label, inputs.caution
    tables = [gray_table(g, horizons) for g in inputs.groupings if len(set(g.groups.astype(str))) > 1]
    if not tables:
        return []
    table = pd.concat(tables, ignore_index=True)
    write_safe_csv(table, out / f"{ep}_gray.csv", index=False)
    summary["gray"] = {
        label: {
            CAUSE_NAMES[k]: {
                "chi2": g[f"Gray χ² ({CAUSE_NAMES[k]})"].iloc[0],
                "df": g[f"df ({CAUSE_NAMES[k]})"].iloc[0],
                "p": g[f"p ({CAUSE_NAMES[k]})"].iloc[0],
            }
            for k in (1, 2)
        }
        for label, g in table.groupby("grouping", sort=False)
    }
    lines = [
        f"{html.escape(label)}: {html.escape(inputs.names[0])} χ² {t['event']['chi2']:.2f}, df {t['event']['df']:g}, "
        f"p {format_p(t['event']['p'])}; {html.escape(inputs.names[1])} p {format_p(t['competing']['p'])}"
        for label, t in summary["gray"].items()
    ]
    parts = [
        table_html(table, f"{name}: cumulative incidence by group and Gray's test{caution}"),
        "<p>Gray's test: " + "; ".join(lines) + ".</p>",
    ]
    for g in inputs.groupings:
        labels = g.groups.astype(str)
        if not g.plot or len(set(labels)) < 2:
            continue
        groups = {lvl: (g.time[labels == lvl], g.cause[labels == lvl]) for lvl in sorted(set(labels))}
        p = summary["gray"][g.label]["event"]["p"]
        title = f"{name} by {g.label}: CIF (Gray p {format_p(p)}){caution}"
        parts.append(figure_html(cif_plot(groups, title, inputs.names, axis), f"{name} CIF by {g.label}"))
    return parts


def _model_parts(inputs: CompetingInputs, out: Path, summary: dict[str, Any]) -> list[str]:
    ep, name, caution = inputs.endpoint, inputs.label, inputs.caution
    if isinstance(inputs.design, str):
        return _not_fitted(inputs.design, summary)
    X, time, cause = inputs.design
    try:
        tables = competing_models(X, time, cause)
    except RiskModelError as exc:
        return _not_fitted(str(exc), summary)
    captions = {
        "fine_gray": f"{name}: Fine-Gray subdistribution hazard ratios of {inputs.names[0]} (95% CI; crr's robust SE)",
        "cause_specific_1": f"{name}: cause-specific Cox hazard ratios of {inputs.names[0]} (Efron ties)",
        "cause_specific_2": f"{name}: cause-specific Cox hazard ratios of {inputs.names[1]} (Efron ties)",
    }
    parts = [
        f"<p>On the design of the multivariable Cox model ({len(time)} patients, {int((cause == 1).sum())} events, "
        f"{int((cause == 2).sum())} competing). A subdistribution HR describes the effect on the cumulative "
        "incidence; a cause-specific HR the effect on the rate among patients still free of both events.</p>"
    ]
    for key, table in tables.items():
        write_safe_csv(table, out / f"{ep}_{key}.csv", index=False)
        summary[key] = table.set_index("term").to_dict(orient="index")
        converged = bool(table.attrs.get("converged", True))
        summary[f"{key}_converged"] = converged
        unreliable = (
            ""
            if converged
            else " — did not converge: a covariate may separate these events; its HRs and CIs are not reliable"
        )
        parts.append(table_html(table, captions[key] + unreliable + caution))
    return parts


def _not_fitted(reason: str, summary: dict[str, Any]) -> list[str]:
    summary["fine_gray"] = {"not_fitted": reason}
    return [f"<p class='note'>Fine-Gray and cause-specific Cox models: not fitted ({html.escape(reason)}).</p>"]
