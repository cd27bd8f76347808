"""The TRIPOD+AI model report of one trained run: ``model_report.html``, logged to MLflow.

It fills in every item of the TRIPOD+AI checklist (Collins et al., BMJ 2024;385:e078378) that the
software knows: data source and years, outcome, time origin and landmark, predictors and
missing-data handling, sample size with Riley et al.'s assessment, the full model specification,
(for Cox) coefficients and baseline survival, the internal validation method and its
optimism-corrected results with intervals, calibration and decision curves, and limitations
generated from the facts (:func:`limitations`). Items only the authors can know (eligibility,
blinding, ethics, funding) are listed as such at the end.

Only aggregates go in: counts, coefficients, summary tables and figures of groups. The page is
one self-contained file (figures inlined), and the caller passes it through the PHI guard.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort.contract import ENDPOINT_DEFINITIONS
from riskmodel.features.labels import relabel
from riskmodel.models.registry import SPECS
from riskmodel.reporting.plots import calibration_plot, decision_curve_plot, figure_html
from riskmodel.stats.samplesize import SampleSize
from riskmodel.validation import CalibrationCurve, Validation

__all__ = ["ModelFacts", "limitations", "render"]

AUTHORS_ONLY = (
    "eligibility criteria and recruitment",
    "study dates beyond years, setting and centres",
    "blinding of outcome and predictor assessment",
    "handling of patients lost to follow-up beyond censoring",
    "ethics approval, funding, conflicts of interest, registration",
    "patient and public involvement",
    "how the model is intended to be used in the care pathway",
)


@dataclass
class ModelFacts:
    """Everything the report states, gathered by :func:`riskmodel.workflow.train` (aggregates only)."""

    experiment: str
    endpoint: str
    family: str
    version: str
    commit: str
    source: str  # the data file's name
    years: str | None  # "2013 to 2019", or None when unknown
    n_patients: int
    n_events: int
    landmark_months: float
    landmark_note: str | None
    time_origin: str
    horizons: list[float]
    left_out_horizons: list[float]
    feature_set: str
    inputs: list[str]  # cohort columns the model reads
    features: list[str]  # model-ready columns
    params: dict[str, Any]
    size: SampleSize
    cv: pd.DataFrame  # metric × mean, sd, folds_with_value
    cv_description: str
    validation: Validation | None
    calibration: dict[float, CalibrationCurve] = field(default_factory=dict)
    decision_curves: dict[float, pd.DataFrame] = field(default_factory=dict)
    d_calibration_p: float = math.nan
    at_risk: dict[float, int] = field(default_factory=dict)  # patients still followed at each horizon
    cox_coefficients: pd.DataFrame | None = None  # feature × coef, hr (the fitted, penalised model)
    cox_unpenalised: pd.DataFrame | None = None
    baseline_survival: dict[float, float] = field(default_factory=dict)  # S0(t) at the mean covariates
    reconstructed: bool = False
    notes: list[str] = field(default_factory=list)
    min_at_risk: int = 10  # fewer patients followed at a horizon: no metric there, predictions flagged
    missing_data: str = (
        "no imputation: a missing model input is refused at loading or training, with its row and column "
        "(complete data by construction)"
    )
    missingness: pd.DataFrame | None = None  # per covariate: patients missing it in the file, policy
    endpoint_definition: str | None = None  # declared cohorts: from the declaration (else the study's)
    measured_later: dict[str, float] | None = None  # declared cohorts: covariates measured after time zero
    nomogram: str = ""  # Cox: the nomogram section's HTML (reporting/nomogram_plot.py: nomogram_html)
    dose_response: str = ""  # the dose's (and spline inputs') partial effects (reporting/model_dose.py)
    explanations: str = ""  # global SHAP and importance figures, clinically labelled (reporting/shap_global.py)
    # clinical labels (features/labels.py: column_labels): model column → "M stage M1", cohort column → "M stage"
    labels: dict[str, str] = field(default_factory=dict)
    input_labels: dict[str, str] = field(default_factory=dict)
    # competing risks: what competes ("death"; None: a survival endpoint), and the classical tables
    # (cause-specific HRs of both causes, Fine-Gray subdistribution HRs) by artifact name
    competing: str | None = None
    competing_tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def limitations(f: ModelFacts) -> list[str]:
    """Plain-language limitations, each generated from a measured fact of this run."""
    out: list[str] = []
    epv = f.size.epv
    if epv < 10:
        out.append(
            f"EPV {epv:.1f} ({f.n_events} events, {f.size.parameters} candidate parameters): severe overfitting risk."
        )
    elif epv < 20:
        out.append(f"EPV {epv:.1f}: moderate overfitting risk; prefer penalised estimates.")
    if not f.size.adequate:
        out.append(
            f"Below Riley et al.'s minimum sample size: {f.n_patients} patients against {f.size.minimum_n} required; "
            f"expected shrinkage {f.size.expected_shrinkage:.2f} (target ≥ 0.90). The run is exploratory only."
        )
    out += _bootstrap_limitations(f)
    for h, n in sorted(f.at_risk.items()):
        if n < f.min_at_risk:
            out.append(
                f"Only {n} patients are still followed at {h:g} months (fewer than {f.min_at_risk}): no performance "
                "figure is reported there, and predictions there are flagged as unstable."
            )
    if f.left_out_horizons:
        out.append(
            "Horizon(s) " + ", ".join(f"{h:g}" for h in f.left_out_horizons) + " months lie beyond the follow-up and "
            "are not predicted."
        )
    for h, table in sorted(f.decision_curves.items()):
        gain = table["model"] - np.maximum(table["treat_all"], table["treat_none"])
        if not (gain > 1e-9).any():
            out.append(
                f"At {h:g} months the model's in-sample net benefit exceeds neither treat-all nor treat-none at any "
                "threshold: no demonstrated clinical utility."
            )
    if math.isfinite(f.d_calibration_p) and f.d_calibration_p < 0.05:
        out.append(f"D-calibration rejects calibration over the whole follow-up (p = {f.d_calibration_p:.3f}).")
    if f.landmark_months:
        out.append(
            f"Only patients event-free and followed at the {f.landmark_months:g}-month landmark are included; "
            "predictions apply to such patients, from the landmark on."
        )
    if f.reconstructed:
        out.append(
            "The bundled data are a reconstruction calibrated to the published tables of one single-centre, "
            "retrospective study, not real patient records."
        )
    out.append(
        "Internal validation only: no external or temporal validation. Not for clinical decisions before "
        "validation on an independent cohort."
    )
    return out


def _bootstrap_limitations(f: ModelFacts) -> list[str]:
    """What the bootstrap validation says about the model's limits (or that it was not run)."""
    v = f.validation
    if v is None:
        return [
            "No bootstrap validation was run (the internal validation section says why): only cross-validated "
            "(or held-out) figures."
        ]
    out: list[str] = []
    key = "calibration_slope" if "calibration_slope" in v.table.index else f"calibration_slope_{max(f.horizons):g}"
    slope = {k: float(x) for k, x in v.table.loc[key].items()} if key in v.table.index else {"corrected": math.nan}
    if math.isfinite(slope["corrected"]) and slope["corrected"] < 0.9:
        out.append(
            f"Optimism-corrected calibration slope {slope['corrected']:.2f} (approx. 95% interval "
            f"{_fmt(slope['ci_low'], 2)} to {_fmt(slope['ci_high'], 2)}): predictions are too extreme for new "
            "patients and should be shrunk."
        )
    c = {k: float(x) for k, x in v.table.loc["harrell_c"].items()}
    if math.isfinite(c["ci_low"]) and c["ci_high"] - c["ci_low"] > 0.2:
        name = "Wolbers" if f.competing else "Harrell"
        out.append(
            f"The corrected {name} C's 95% interval runs from {c['ci_low']:.2f} to {c['ci_high']:.2f}: "
            "discrimination is very uncertain."
        )
    if v.failed and v.failed / v.n_resamples >= 0.05:
        out.append(
            f"{v.failed} of {v.n_resamples} bootstrap resamples failed (listed in validation_failures.txt) and are "
            "excluded; resamples whose fit separates are the most overfit, so the corrected figures may be "
            "optimistic."
        )
    if f.family in SPECS and SPECS[f.family].memorises_resamples:
        out.append(
            "The bootstrap optimism correction under-corrects tree ensembles, which memorise the ~63% of "
            "patients in each resample; the cross-validated figures are the more honest ones for this family."
        )
    return out


def _table(frame: pd.DataFrame, index: bool = False) -> str:
    return frame.to_html(index=index, na_rep="–", float_format=lambda v: f"{v:.3g}", border=0, escape=True, classes="t")


def _rows(pairs: Sequence[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in pairs)
    return f"<table class='kv'>{cells}</table>"


# The model report's names of the metric keys for a competing endpoint (the keys stay survival's).
COMPETING_LABELS = {
    "harrell_c": "Wolbers C",
    "uno_c": "Wolbers C (IPCW, to τ)",
    "td_auc": "AUC of the CIF (Blanche def. 2)",
    "brier": "Brier of the CIF",
    "ibs": "integrated Brier of the CIF",
    "ibs_km": "integrated Brier, null model: Aalen-Johansen",
    "calibration_slope": "calibration slope of the CIF (Fine-Gray on cloglog F̂)",
    "calibration_oe": "observed/expected CIF (Aalen-Johansen / mean predicted)",
}


def metric_label(key: str, competing: bool) -> str:
    """A metric key as the report names it: ``harrell_c`` → "harrell_c (Wolbers C)" with competing
    risks; ``td_auc_12`` → "td_auc_12 (AUC of the CIF (Blanche def. 2) at 12)"; unchanged otherwise."""
    if not competing:
        return key
    for stem, label in sorted(COMPETING_LABELS.items(), key=lambda kv: -len(kv[0])):
        rest = key.removeprefix(stem)
        if rest == "" or rest.startswith("_"):
            at = rest.strip("_")
            return f"{key} ({label}{f' at {at}' if at else ''})"
    return key


def _validation_table(v: Validation, competing: bool = False) -> pd.DataFrame:
    t = v.table.reset_index()
    return pd.DataFrame(
        {
            "metric": [metric_label(m, competing) for m in t["metric"]],
            "apparent": t["apparent"],
            "optimism": t["optimism"],
            "corrected": t["corrected"],
            "approx. 95% interval": [
                f"{_fmt(a, 3)} to {_fmt(b, 3)}" for a, b in zip(t["ci_low"], t["ci_high"], strict=True)
            ],
            "resamples": t["resamples"].astype(int),
        }
    )


def _status_note(f: ModelFacts) -> str:
    """Exploratory below Riley et al.'s minimum sample size (judged from the data), else a
    development report that still needs external validation."""
    if not f.size.adequate:
        return (
            "<p class='note'><b>Exploratory.</b> A TRIPOD+AI-structured report generated by riskmodel "
            f"{html.escape(f.version)} from the run's own facts. With {f.n_events} events every figure is uncertain: "
            "read the intervals and the limitations.</p>"
        )
    return (
        "<p class='note'><b>Development report.</b> A TRIPOD+AI-structured report generated by riskmodel "
        f"{html.escape(f.version)} from the run's own facts. The cohort meets Riley et al.'s minimum sample size "
        f"({f.n_patients} patients, {f.n_events} events); the figures are internal validation only: read the "
        "intervals and the limitations.</p>"
    )


def render(f: ModelFacts) -> str:
    """The self-contained HTML page."""
    title = f"{f.endpoint.upper()} · {f.family} · {f.experiment}"
    parts = [
        f"<h1>Model report: {html.escape(title)}</h1>",
        _status_note(f),
        "<h2>Limitations (generated from the facts)</h2><ul>"
        + "".join(f"<li>{html.escape(x)}</li>" for x in limitations(f))
        + "</ul>",
        *_data_sections(f),
        *_specification(f),
        *_validation_sections(f),
        f.explanations,
    ]
    if f.notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in f.notes)
        parts.append(f"<h2>Notes from training</h2><ul>{items}</ul>")
    parts.append(
        "<h2>Items only the authors can report</h2><ul>"
        + "".join(f"<li>{html.escape(x)}</li>" for x in AUTHORS_ONLY)
        + f"</ul><p class='small'>riskmodel {html.escape(f.version)}, commit {html.escape(f.commit)}.</p>"
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>riskmodel model report: {html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:62em;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}td,th{padding:.2em .6em;"
        "border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}"
        ".kv td{text-align:left}img{max-width:100%}.small{color:#666;font-size:.85em}"
        ".note{background:#fff8e1;padding:.6em;border-left:4px solid #f0b400}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )


def _data_sections(f: ModelFacts) -> list[str]:
    """Source of data, outcome, predictors and missing data, sample size."""
    s = f.size
    return [
        "<h2>Source of data and participants</h2>",
        _rows(
            [
                ("data file", f.source),
                *([("implant years", f.years or "not recorded in the input")] if f.endpoint_definition is None else []),
                ("patients analysed", str(f.n_patients)),
                ("events", str(f.n_events)),
                ("time origin", f.time_origin),
                (
                    "landmark",
                    f"{f.landmark_months:g} months" if f.landmark_months else f"none (time zero = {f.time_origin})",
                ),
                ("landmark exclusions", f.landmark_note or "none"),
                *((f"patients followed at {h:g} months", str(n)) for h, n in sorted(f.at_risk.items())),
            ]
        ),
        "<h2>Outcome</h2>",
        f"<p>{html.escape(f.endpoint_definition or ENDPOINT_DEFINITIONS.get(f.endpoint, f.endpoint))} "  # type: ignore[call-overload]
        f"Time in months from the {html.escape(f.time_origin)}. "
        f"Prediction horizons: {', '.join(f'{h:g}' for h in f.horizons)} months.</p>"
        + (
            f"<p>Analysed as competing risks: {html.escape(f.competing)} competes with the event of interest. The "
            "model predicts the cumulative incidence (CIF) of the event of interest, an absolute risk in the "
            "presence of the competing event; events counts only the event of interest.</p>"
            if f.competing
            else ""
        ),
        "<h2>Predictors and missing data</h2>",
        _rows(
            [
                ("feature set", f.feature_set),
                ("cohort columns read", ", ".join(f.input_labels.get(c, c) for c in f.inputs)),
                ("model features", ", ".join(f.labels.get(c, c) for c in f.features)),
                ("missing data", f.missing_data),
                _measured_later_row(f),
            ]
        ),
        *(
            [
                "<p>Missing values in the file (before any complete-case exclusion):</p>"
                + _table(
                    relabel(
                        f.missingness[["covariate", "missing", "percent", "policy", "handling"]],
                        f.input_labels,
                        "covariate",
                    )
                )
            ]
            if f.missingness is not None and len(f.missingness)
            else []
        ),
        "<h2>Sample size</h2>",
        _rows(
            [
                ("events per candidate parameter", f"{s.epv:.1f} ({f.n_events} events / {s.parameters} parameters)"),
                ("anticipated R²cs (max)", f"{s.r2_cs:.3f} ({s.max_r2_cs:.3f})"),
                ("Riley et al. (2019) minimum n", f"{s.minimum_n} ({'met' if s.adequate else 'NOT met'})"),
                *((f"  criterion: {k}", str(v)) for k, v in s.required_n.items()),
                *_overall_risk_row(s),
                ("expected shrinkage at this n", f"{s.expected_shrinkage:.2f} (target ≥ 0.90)"),
            ]
        ),
    ]


def _measured_later_row(f: ModelFacts) -> tuple[str, str]:
    """Covariates measured after time zero, which need a landmark (guarantee-time bias)."""
    if f.measured_later is None:  # the bundled study
        used = "response_3mo" in f.inputs
        return (
            "3-month response",
            "used only with a landmark of at least 3 months (guarantee-time bias)" if used else "not used",
        )
    if not f.measured_later:
        return ("measured after time zero", "none: every covariate is known at time zero")
    listed = ", ".join(f"{n} at {m:g} months" for n, m in f.measured_later.items())
    return (
        "measured after time zero",
        f"{listed}; time zero is the {f.landmark_months:g}-month landmark (guarantee-time bias)",
    )


def _overall_risk_row(s: SampleSize) -> list[tuple[str, str]]:
    """Riley et al.'s criterion 3, a precision reported at the minimum n rather than a size."""
    if s.overall_risk is None:
        return []
    risk, low, high = s.overall_risk
    wide = "" if s.overall_risk_precise else ", a margin of error above 0.05"
    return [("  criterion: overall risk", f"{risk:.3f} (95% CI {low:.3f} to {high:.3f}) at that n{wide}")]


def _specification(f: ModelFacts) -> list[str]:
    """The family, its parameters, and for Cox the coefficients and baseline survival."""
    parts = [
        "<h2>Model specification</h2>",
        f"<p>{html.escape(SPECS[f.family].description if f.family in SPECS else f.family)}.</p>",
        _rows([(k, repr(v)) for k, v in sorted(f.params.items())]),
    ]
    parts += _competing_tables(f)
    if f.cox_coefficients is None:
        return [*parts, f.dose_response]
    parts.append(
        "<h3>Coefficients of the fitted (penalised) model</h3>"
        + _table(relabel(f.cox_coefficients, f.labels), index=True)
    )
    if f.baseline_survival:
        parts.append(
            "<p>Baseline survival S₀(t) at the mean of every feature: "
            + ", ".join(f"S₀({h:g}) = {v:.4f}" for h, v in sorted(f.baseline_survival.items()))
            + ". A patient's S(t) = S₀(t)^exp(Σ coef·(x − mean)), with the feature means saved in the model "
            "file.</p>"
        )
    parts.append(f.nomogram)
    parts.append(f.dose_response)
    if f.cox_unpenalised is not None:
        method = f.cox_unpenalised.attrs.get("method", "")
        parts.append(
            "<h3>Unpenalised hazard ratios (classical table, same design)</h3>"
            + (f"<p>{html.escape(method)}.</p>" if method else "")
            + _table(relabel(f.cox_unpenalised, f.labels), index=True)
        )
    return parts


def _competing_tables(f: ModelFacts) -> list[str]:
    """The cause-specific hazard ratios of both causes and the Fine-Gray subdistribution HRs."""
    titles = {
        "cause_specific_hr_cause_1.csv": "Cause-specific hazard ratios, event of interest (unpenalised Cox)",
        "cause_specific_hr_cause_2.csv": f"Cause-specific hazard ratios, competing event: {f.competing} "
        "(unpenalised Cox)",
        "fine_gray_subdistribution_hr.csv": "Fine-Gray subdistribution hazard ratios, event of interest "
        "(unpenalised, as cmprsk::crr)",
    }
    return [
        f"<h3>{html.escape(titles.get(name, name))}</h3>" + _table(relabel(table, f.labels, "term"))
        for name, table in f.competing_tables.items()
    ]


def _validation_sections(f: ModelFacts) -> list[str]:
    """Cross-validation, the bootstrap, calibration and decision curves."""
    ep = f.endpoint.upper()
    cv = f.cv.rename(index=lambda k: metric_label(str(k), bool(f.competing)))
    parts = ["<h2>Internal validation</h2>", f"<p>{html.escape(f.cv_description)}</p>" + _table(cv, index=True)]
    if f.competing:
        parts.append(
            f"<p>Competing risks: {html.escape(f.competing)} competes with the event of interest. Every measure is "
            "of the predicted cumulative incidence (CIF) of the event of interest: Wolbers C, AUC of the CIF "
            "(Blanche def. 2), Brier of the CIF (IPCW); null model: Aalen-Johansen.</p>"
        )
    if f.validation is not None:
        v = f.validation
        parts.append(
            f"<p>Bootstrap optimism correction (Harrell; as R's rms::validate): the whole pipeline, feature "
            f"derivation included, refitted on each of {v.n_resamples} resamples and scored on the resample and on "
            f"the original data. {v.failed} resample(s) failed and are excluded (reasons in "
            "validation_failures.txt). Intervals: the 2.5th and 97.5th percentiles of apparent − optimism over "
            "resamples, an approximate 95% interval without documented coverage (it can be too narrow).</p>"
            + _table(_validation_table(v, bool(f.competing)))
        )
    if f.calibration and f.competing:
        parts.append(
            "<h2>Calibration of the CIF (apparent, in-sample)</h2><p class='note'>These curves compare the model "
            "with the patients it was fitted on, so they flatter it. Groups: the Aalen-Johansen observed CIF "
            f"(competing events, {html.escape(f.competing)}, are not censorings) with 95% CIs. Curve: a Fine-Gray "
            "model of the outcome on a restricted cubic spline of cloglog F̂(t) (Austin et al., Diagn Progn Res "
            "2022), without a band; ICI, E50, E90 from it. Calibration slope: the Fine-Gray coefficient of "
            "cloglog F̂(t); O/E: observed Aalen-Johansen CIF over the mean predicted CIF.</p>"
        )
        for h, curve in sorted(f.calibration.items()):
            plot = calibration_plot(curve.groups, curve.smooth, f"{ep} CIF by {h:g} months: ICI {curve.ici:.3f}")
            parts.append(figure_html(plot, f"calibration at {h:g} months"))
    elif f.calibration:
        parts.append(
            "<h2>Calibration (apparent, in-sample)</h2><p class='note'>These curves compare the model with the "
            "patients it was fitted on, so they flatter it; the corrected slopes above are the honest summary. "
            "Groups: Kaplan-Meier observed risk with 95% CIs. Curve: a Cox model on a restricted cubic spline of "
            "log(−log Ŝ(t)) (Austin et al. 2020), with a 95% bootstrap band. "
            f"D-calibration p = {_fmt(f.d_calibration_p)}.</p>"
        )
        for h, curve in sorted(f.calibration.items()):
            plot = calibration_plot(curve.groups, curve.smooth, f"{ep} by {h:g} months: ICI {curve.ici:.3f}")
            parts.append(figure_html(plot, f"calibration at {h:g} months"))
    if f.decision_curves:
        parts.append(
            "<h2>Clinical utility: decision curves (apparent)</h2><p>Net benefit of acting on predicted risk ≥ the "
            "threshold, against acting for all or none; "
            + (
                "observed risk by the Aalen-Johansen CIF of the event of interest (competing events not censored).</p>"
                if f.competing
                else "observed risk by Kaplan-Meier (censoring handled).</p>"
            )
        )
        for h, table in sorted(f.decision_curves.items()):
            parts.append(
                figure_html(decision_curve_plot(table, f"{ep} by {h:g} months (apparent)"), f"decision curve {h:g}")
            )
    return parts
