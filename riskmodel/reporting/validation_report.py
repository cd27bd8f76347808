"""``validation_report.html``: an external validation, by the TRIPOD+AI items for model evaluation.

One self-contained page (figures inlined) for the models of one ``riskmodel evaluate``, organised
by the items of TRIPOD+AI (Collins et al., BMJ 2024;385:e078378) that a model's evaluation reports:
data source and participants (5, 6, 20a), outcome and events (8, 21), how predictions were
calculated (12g), performance measures (12e), development against evaluation data (16, 20c),
performance with confidence intervals (23a) and model updating (12f, 24). Aggregates only: counts,
measures, curves of groups; no patient row, identifier or date.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from riskmodel.reporting.page import page, table_html
from riskmodel.reporting.plots import calibration_plot, decision_curve_plot, figure_html, pyplot
from riskmodel.scoring.competing import CompetingLabels
from riskmodel.validation.case_mix import SMD_MARK
from riskmodel.validation.external import ExternalValidation

__all__ = ["EvaluatedModel", "measure_label", "render_validation_report", "smd_plot"]

_LABELS = {
    "harrell_c": "Harrell's C",
    "uno_c": "Uno's C (truncated at the largest horizon)",
    "td_auc": "time-dependent AUC",
    "brier": "Brier score",
    "brier_km": "Brier score of the Kaplan-Meier null",
    "scaled_brier": "scaled Brier score (1 − Brier/Brier KM)",
    "ibs": "integrated Brier score",
    "ibs_km": "integrated Brier score of the Kaplan-Meier null",
    "scaled_ibs": "scaled integrated Brier score",
    "oe": "O/E (observed KM risk / mean predicted risk)",
    "slope": "calibration slope",
    "ici": "ICI",
    "e50": "E50",
    "e90": "E90",
}
# a competing-risks model's measures, all of the CIF of the event of interest ({event}); never S(t)
_COMPETING_LABELS = {
    "harrell_c": "Wolbers C ({competing} competing)",
    "uno_c": "Wolbers C with IPCW, truncated at the largest horizon ({competing} competing)",
    "td_auc": "AUC of the CIF of {event} (Blanche definition 2)",
    "brier": "Brier score of the CIF of {event} (IPCW)",
    "brier_km": "Brier score of the Aalen-Johansen null (CIF of {event} without covariates)",
    "scaled_brier": "scaled Brier score of the CIF (1 − Brier/Brier Aalen-Johansen)",
    "ibs": "integrated Brier score of the CIF of {event}",
    "ibs_km": "integrated Brier score of the Aalen-Johansen null",
    "scaled_ibs": "scaled integrated Brier score of the CIF",
    "oe": "O/E (observed Aalen-Johansen CIF of {event} / mean predicted CIF)",
    "slope": "calibration slope of the CIF (Fine-Gray coefficient of cloglog CIF)",
    "ici": "ICI of the CIF of {event}",
    "e50": "E50 of the CIF of {event}",
    "e90": "E90 of the CIF of {event}",
}
_GROUPS = {
    "Discrimination": ("harrell_c", "uno_c", "td_auc"),
    "Overall accuracy": ("brier", "brier_km", "scaled_brier", "ibs", "ibs_km", "scaled_ibs"),
    "Calibration": ("oe", "slope", "ici", "e50", "e90"),
}


def measure_label(measure: str, competing: CompetingLabels | None = None) -> str:
    """What measure ``measure`` (a key's stem: ``harrell_c``, ``brier``, …) is, in words; with
    ``competing`` (a CIF model's events) the competing-risk measure of the CIF it stands for.

    >>> measure_label("harrell_c", CompetingLabels("local failure", "death without local failure", "alive"))
    'Wolbers C (death without local failure competing)'
    """
    if competing is None:
        return _LABELS.get(measure, measure)
    template = _COMPETING_LABELS.get(measure, measure)
    return template.format(event=competing.event, competing=competing.competing)


@dataclass
class EvaluatedModel:
    """One saved model validated on one labelled cohort (what the report, metrics.json and the run say)."""

    uri: str
    endpoint: str
    family: str
    time_origin: str
    source: str
    rows_read: int
    bad_rows: int
    not_at_risk: int
    validation: ExternalValidation
    standardised_differences: pd.DataFrame | None
    outside_share: float
    outside: pd.DataFrame
    membership_c: float | None
    membership_note: str
    notes: list[str] = field(default_factory=list)
    bad_row_messages: dict[Any, str] = field(default_factory=dict)  # printed to the user only
    digest: str = ""
    development_run: str | None = None
    run_id: str | None = None
    competing: CompetingLabels | None = None  # a competing-risks (CIF) model's events in words
    n_competing: int = 0  # competing events among the analysed patients (a CIF model)

    @property
    def title(self) -> str:
        return f"{self.endpoint.upper()} {self.family}"

    def folder_name(self, index: int) -> str:
        """The folder of this model's CSV tables."""
        return f"{index}-{self.endpoint}-{self.family}"

    def summary(self, index: int) -> dict[str, Any]:
        """This model's part of ``metrics.json`` (a competing model's also says what it measures)."""
        out = self._summary(index)
        if self.competing is not None:
            out["patients"]["competing_events"] = self.n_competing
            out["analysis"] = {
                "kind": "competing risks",
                "measures_of": f"the cumulative incidence (CIF) of {self.competing.event}",
                "competing_event": self.competing.competing,
                "meanings": {
                    m: measure_label(m, self.competing) for m in dict.fromkeys(self.validation.table["measure"])
                },
            }
        return out

    def _summary(self, index: int) -> dict[str, Any]:
        v = self.validation
        return {
            "model": self.uri,
            "endpoint": self.endpoint,
            "family": self.family,
            "time_origin": self.time_origin,
            "development_run": self.development_run,
            "data_digest": self.digest,
            "patients": {
                "rows_read": self.rows_read,
                "left_out_bad_rows": self.bad_rows,
                "not_at_risk_after_landmark": self.not_at_risk,
                "analysed": v.n_patients,
                "events": v.n_events,
            },
            "horizons": list(v.horizons),
            "bootstrap": {"resamples": v.n_boot, "skipped": v.failed_boot, "interval": "95% percentile"},
            "measures": {
                str(r["key"]): {"estimate": r["estimate"], "low": r["low"], "high": r["high"]}
                for r in v.table.to_dict(orient="records")
            },
            "case_mix": {
                "outside_training_ranges": self.outside_share,
                "membership_c": self.membership_c,
                "membership_note": self.membership_note,
                "max_abs_standardised_difference": None
                if self.standardised_differences is None or self.standardised_differences.empty
                else float(self.standardised_differences["smd"].abs().max()),
            },
            "tables": self.folder_name(index),
            "notes": self.notes,
        }


def smd_plot(table: pd.DataFrame, title: str) -> Any:
    """Standardised differences (validation − development) per input and level, with ±0.1 marked."""
    plt = pyplot()
    labels = [f"{i} = {lv}" if lv else str(i) for i, lv in zip(table["input"], table["level"], strict=True)]
    fig, ax = plt.subplots(figsize=(6.0, 0.9 + 0.22 * len(labels)))
    values = table["smd"].clip(-2, 2)
    ax.scatter(values, range(len(labels)), color="C0", zorder=3)
    for x in (-SMD_MARK, SMD_MARK):
        ax.axvline(x, color="0.6", ls="--", lw=1)
    ax.axvline(0, color="0.3", lw=1)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("standardised difference (validation − development)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _measures(e: EvaluatedModel) -> str:
    v = e.validation
    parts = []
    for group, names in _GROUPS.items():
        t = v.table[v.table["measure"].isin(names)].copy()
        t["measure"] = t["measure"].map(lambda m: measure_label(m, e.competing))
        t["horizon (months)"] = t["horizon"].map(lambda h: "" if math.isnan(h) else f"{h:g}")
        t = t[["measure", "horizon (months)", "estimate", "low", "high"]].rename(
            columns={"low": "95% CI low", "high": "95% CI high"}
        )
        parts.append(table_html(t, group))
    return "".join(parts)


def _flow(e: EvaluatedModel) -> str:
    v = e.validation
    if e.competing is not None:
        events = (
            f"{v.n_events} events of interest ({html.escape(e.competing.event)}) and {e.n_competing} competing "
            f"events ({html.escape(e.competing.competing)})"
        )
    else:
        events = f"{v.n_events} {html.escape(e.endpoint.upper())} events"
    return (
        f"<p>{e.rows_read} rows read from {html.escape(e.source)}; {e.bad_rows} left out because a value could "
        f"not be read (listed by row when the command ran); {e.not_at_risk} not at risk after the model's time "
        f"zero ({html.escape(e.time_origin)}); <b>{v.n_patients} patients analysed, {events}</b>.</p>"
    )


def _case_mix(e: EvaluatedModel) -> str:
    parts = [
        f"<p>{e.outside_share:.1%} of the validation patients have an input outside the middle of the training "
        "data (5th smallest to 5th largest value) or a category unseen in training.</p>",
        table_html(e.outside, "Inputs outside the training data (patients)"),
    ]
    if e.standardised_differences is None:
        parts.append(
            "<p class='note'>Standardised differences: unavailable; this model file keeps no training "
            "means, SDs or level shares (saved before riskmodel kept them).</p>"
        )
    elif not e.standardised_differences.empty:
        parts.append(table_html(e.standardised_differences, "Standardised differences (validation − development)"))
        parts.append(
            figure_html(smd_plot(e.standardised_differences, f"{e.title}: case-mix"), "standardised differences")
        )
    c = "" if e.membership_c is None else f" {e.membership_c:.3f}"
    parts.append(
        f"<p>Membership model C (Debray et al. 2015; 0.5: alike case-mix, 1: fully different):{c} "
        f"({html.escape(e.membership_note)}).</p>"
    )
    return "".join(parts)


def _cif_calibration_figure(e: EvaluatedModel, h: float) -> Any:
    """The calibration plot of the CIF: axes and legend say CIF and Aalen-Johansen, not risk and KM."""
    assert e.competing is not None
    cal = e.validation.calibration[h]
    fig = calibration_plot(
        cal.groups, cal.smooth, f"{e.title}: CIF of {e.competing.event} at {h:g} months, calibration"
    )
    ax = fig.axes[0]
    ax.set_xlabel(f"predicted CIF of {e.competing.event} by {h:g} months")
    ax.set_ylabel("observed CIF (Aalen-Johansen)")
    words = {
        "groups: Kaplan-Meier, 95% CI": "groups: Aalen-Johansen CIF, 95% CI",
        "smoothed (Cox, RCS)": "smoothed (Fine-Gray on cloglog CIF, RCS)",
    }
    kept = [(hd, words.get(lb, lb)) for hd, lb in zip(*ax.get_legend_handles_labels(), strict=True) if "band" not in lb]
    ax.legend([k[0] for k in kept], [k[1] for k in kept], fontsize=7, loc="upper left")
    return fig


def _cif_figures(e: EvaluatedModel) -> str:
    assert e.competing is not None
    parts = []
    for h in e.validation.horizons:
        what = f"CIF of {e.competing.event} at {h:g} months"
        parts.append(f"<h4>{html.escape(what)}: calibration against Aalen-Johansen, and the decision curve</h4>")
        parts.append(figure_html(_cif_calibration_figure(e, h), f"{what}: calibration"))
        title = f"{e.title}: decision curve, CIF of {e.competing.event} by {h:g} months (competing risks)"
        parts.append(
            figure_html(decision_curve_plot(e.validation.decision[h], title), f"decision curve at {h:g} months")
        )
    return "".join(parts)


def _figures(e: EvaluatedModel) -> str:
    if e.competing is not None:
        return _cif_figures(e)
    parts = []
    for h in e.validation.horizons:
        cal = e.validation.calibration[h]
        fig = calibration_plot(cal.groups, cal.smooth, f"{e.title}: calibration at {h:g} months")
        parts.append(figure_html(fig, f"calibration at {h:g} months"))
        dc = decision_curve_plot(e.validation.decision[h], f"{e.title}: decision curve at {h:g} months")
        parts.append(figure_html(dc, f"decision curve at {h:g} months"))
    return "".join(parts)


def _outcome(e: EvaluatedModel) -> str:
    v = e.validation
    horizons = ", ".join(f"{h:g}" for h in v.horizons)
    if e.competing is None:
        return (
            f"<p>{html.escape(e.endpoint.upper())}, in months after {html.escape(e.time_origin)}; "
            f"{v.n_events} events among {v.n_patients} patients; horizons {horizons} months.</p>"
        )
    c = e.competing
    return (
        f"<p>{html.escape(e.endpoint.upper())} with competing risks, in months after {html.escape(e.time_origin)}: "
        f"{v.n_events} events of interest ({html.escape(c.event)}) and {e.n_competing} competing events "
        f"({html.escape(c.competing)}) among {v.n_patients} patients; horizons {horizons} months. The model "
        f"predicts the cumulative incidence (CIF) of {html.escape(c.event)}, the probability of it happening "
        f"by a horizon before {html.escape(c.competing)}; it is not a survival probability, and a competing "
        "event is not a censoring.</p>"
    )


def _model_sections(e: EvaluatedModel) -> list[str]:
    return [
        f"<h2>{html.escape(e.title)}</h2>",
        "<h3>TRIPOD+AI 5, 6, 20a: data source, participants and flow</h3>",
        _flow(e),
        "<h3>TRIPOD+AI 8, 21: outcome and number of events</h3>",
        _outcome(e),
        "<h3>TRIPOD+AI 12g: how the predictions were calculated</h3>",
        f"<p>The saved model {html.escape(e.uri)} (family {html.escape(e.family)}), unchanged: its own "
        "feature pipeline and estimator, loaded from its pickle-free folder. "
        f"Development run: {html.escape(e.development_run or 'not known (a model folder)')}.</p>",
        "<h3>TRIPOD+AI 16, 20c: development against evaluation data (case-mix)</h3>",
        _case_mix(e),
        "<h3>TRIPOD+AI 23a: model performance, with 95% confidence intervals</h3>",
        _measures(e),
        "<h3>TRIPOD+AI 23a: calibration plots and decision curves</h3>",
        _figures(e),
        *(f"<p class='note'>{html.escape(n)}</p>" for n in e.notes),
    ]


_SURVIVAL_MEASURES = (
    "<p>Discrimination: Harrell's and Uno's C, and the "
    "cumulative/dynamic AUC at each horizon. Overall accuracy: the IPCW Brier score at each horizon and "
    "integrated over time, each also scaled against the Kaplan-Meier null model of the validation data. "
    "Calibration: O/E (the Kaplan-Meier risk over the mean predicted risk), the calibration slope (Cox "
    "regression on the linear predictor of a Cox model; at each horizon on log(−log S(h)) for every family), "
    "ICI, E50 and E90 (Austin et al. 2020), grouped (Kaplan-Meier per group) and smoothed calibration "
    "curves with bands. Clinical utility: decision curves. Censoring weights come from the validation "
    "data.</p>"
)
_COMPETING_MEASURES = (
    "<p>Competing-risks models ({names}): every measure is of the predicted cumulative incidence (CIF) of the "
    "event of interest at a horizon, never of a survival probability, and competing events are not censorings. "
    "Discrimination: Wolbers C (Wolbers et al. 2009) and its IPCW form truncated at the largest horizon "
    "(Wolbers et al. 2014), the AUC of the CIF (Blanche et al. 2013, definition 2: cases had the event of "
    "interest by the horizon, controls everyone else). Overall accuracy: the IPCW Brier score of the CIF at "
    "each horizon and integrated over time, beside the Aalen-Johansen null model of the validation data "
    "(riskRegression's Score). Calibration: O/E (the Aalen-Johansen CIF over the mean predicted CIF), the "
    "calibration slope and ICI, E50, E90 from Fine-Gray models on cloglog of the predicted CIF (Austin et al., "
    "Diagn Progn Res 2022), grouped calibration against the Aalen-Johansen CIF with 95% CIs and the smoothed "
    "curve (without a band). Clinical utility: decision curves with competing risks (the Aalen-Johansen CIF "
    "among the treated). Censoring weights come from the validation data.</p>"
)


def render_validation_report(evaluated: list[EvaluatedModel]) -> str:
    """The whole page for the evaluated models (survival and competing-risks models each described)."""
    first = evaluated[0].validation
    competing = [e.title for e in evaluated if e.competing is not None]
    parts = [
        "<h1>External validation report</h1>",
        "<h2>TRIPOD+AI 12e: performance measures</h2>",
        f"<p>Each model is fixed; 95% confidence intervals are bootstrap percentile intervals over "
        f"{first.n_boot} resamples of the validation patients.</p>",
    ]
    if competing:
        parts.append(_COMPETING_MEASURES.format(names=html.escape(", ".join(competing))))
    if len(competing) < len(evaluated):
        parts.append(_SURVIVAL_MEASURES)
    for e in evaluated:
        parts.extend(_model_sections(e))
    parts.append(
        "<h2>TRIPOD+AI 12f, 24: model updating</h2><p>None: the models were evaluated as saved. A model "
        "miscalibrated here can be updated (recalibrated or refitted) on these data and evaluated again.</p>"
    )
    return page(parts)
