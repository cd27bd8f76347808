"""``riskmodel report``: the classical statistics report of a study like this one, as one HTML file.

Sections: cohort characteristics; Kaplan-Meier curves of LC and OS (95% CI bands, censoring
ticks, numbers at risk, median and landmark rates with CIs); univariate tables in the layout of
the study's Tables 1 and 2 (n, median, landmark rates, log-rank χ² and p); subgroup KM plots of the
significant factors; the multivariable Cox model (D90 ≥ 110 Gy and CR+PR; Efron ties; Wald and
likelihood-ratio tests; events per variable); proportional-hazards tests as R's cox.zph computes
them (survival ≥ 3.0 score test, km and rank time) with the scaled Schoenfeld residual plot;
local control with death as a competing risk (Aalen-Johansen beside 1 − KM; for every endpoint
with competing events, :mod:`riskmodel.reporting.competing_section`: CIFs of both causes by group
with Gray's test, the Fine-Gray and cause-specific Cox tables of the multivariable design); the dose-response of
D90 without a cut-off (restricted cubic spline curve with its band and a binned rug, LR tests, the
threshold analysis: :mod:`riskmodel.reporting.dose_section`); and, for the bundled cohort, the
published figures beside these results.

Guarantee-time rule: wherever the 3-month response is involved (its univariate rows, the
multivariable model) the analysis starts at the 3-month landmark, and the report says so. The
study itself did not, so its response rows are shown beside the landmarked ones for reference.
lifelines draws the Kaplan-Meier curves (with log-log bands and numbers at risk). Every
Kaplan-Meier number in the tables (medians with R's survfit rule and interval, landmark rates), the
log-rank tests, Cox models, the proportional-hazards tests (R's cox.zph score test) and the
Aalen-Johansen estimator (exact with tied times, which lifelines jitters) are riskmodel's own and are
tested against lifelines and R.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort import Cohort, local_failure_competing
from riskmodel.cohort.endpoints import ENDPOINT_LABELS, ENDPOINTS, RESPONSE_LANDMARK_MONTHS, Endpoint, survival_data
from riskmodel.cohort.reconstruction.calibrate import compare_to_published
from riskmodel.cohort.reconstruction.study import FACTOR_COLUMNS, LANDMARKS, groupings, published_targets
from riskmodel.config import competing_endpoints
from riskmodel.core.csvout import write_safe_csv
from riskmodel.core.files import staged_folder
from riskmodel.errors import UserInputError, require_writable
from riskmodel.privacy import PhiGuard, years_only
from riskmodel.reporting.competing_section import CompetingInputs, competing_section
from riskmodel.reporting.dose_section import dose_section
from riskmodel.reporting.page import format_p, json_safe, km_plot, page, table_html
from riskmodel.reporting.plots import figure_html, pyplot, schoenfeld_plot
from riskmodel.reporting.survival_tables import (
    AS_PUBLISHED,
    LANDMARKED,
    characteristics,
    cif_groupings,
    competing_design,
    competing_risks,
    km_overall,
    multivariable_cox,
    ph_checks,
    ph_residuals,
    univariate_table,
)
from riskmodel.stats import aalen_johansen, kaplan_meier
from riskmodel.stats.samplesize import SampleSize

__all__ = ["build_report"]


def _competing_figure(data: pd.DataFrame) -> Any:
    """Aalen-Johansen cumulative incidence of local failure against 1 − Kaplan-Meier."""
    plt = pyplot()
    cr = local_failure_competing(data)
    aj_t, aj_cif = aalen_johansen(cr["time"].to_numpy(), cr["event_type"].to_numpy(), cause=1)
    km_t, km_s = kaplan_meier(data["lc_months"].to_numpy(float), data["lc_event"].to_numpy(bool))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.step(np.r_[0.0, aj_t], np.r_[0.0, aj_cif], where="post", label="local failure, Aalen-Johansen (death competing)")
    ax.step(
        np.r_[0.0, km_t], 1 - np.r_[1.0, km_s], where="post", linestyle="--", label="1 − Kaplan-Meier (deaths censored)"
    )
    ax.set_xlabel("months from implant")
    ax.set_ylabel("probability of local failure")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    return fig


def build_report(
    cohort: Cohort,
    out_dir: str | Path,
    *,
    endpoints: Sequence[str] = ENDPOINTS,
    compare_published: bool | None = None,
    cutoffs: dict[str, float] | None = None,
    dose_resamples: int = 200,
    sample_sizes: Mapping[str, SampleSize | None] | None = None,
) -> Path:
    """Write ``report.html`` (self-contained), ``tables/*.csv`` and ``summary.json`` into ``out_dir``.

    Returns the path of the HTML file.

    ``cutoffs`` replaces the study's cut-off of two-group numeric factors, e.g. ``{"d90_gy": 120}``
    (also the cut-off the dose-response section tests). ``dose_resamples``: bootstrap resamples of
    the threshold analysis. ``sample_sizes``: Riley et al.'s assessment of each endpoint's
    multivariable model on this cohort (:func:`riskmodel.workflow.report.sample_sizes`); an endpoint
    below it, or not assessed, is labelled exploratory, so the label follows the data, not the study.
    """
    unknown = [e for e in endpoints if e not in ENDPOINTS]
    chosen: list[Endpoint] = [e for e in ENDPOINTS if e in endpoints]
    if unknown or not endpoints:
        raise UserInputError(f"endpoints must be among {', '.join(ENDPOINTS)}; got {', '.join(endpoints) or 'none'}")
    require_writable(out_dir, folder=True, option="--out")
    guard = PhiGuard.for_cohort(cohort)
    # written beside out_dir, checked by the PHI guard, then moved in file by file (each whole)
    with staged_folder(out_dir, merge=True) as stage:
        _write_report(cohort, stage, chosen, compare_published, cutoffs, dose_resamples, sample_sizes or {})
        guard.check_tree(stage, "report")
    return Path(out_dir) / "report.html"


def _write_report(
    cohort: Cohort,
    root: Path,
    chosen: list[Endpoint],
    compare_published: bool | None,
    cutoffs: dict[str, float] | None,
    dose_resamples: int = 200,
    sizes: Mapping[str, SampleSize | None] | None = None,
) -> None:
    sizes = sizes or {}
    out = root / "tables"
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"source": cohort.source, "patients": len(cohort.data), "endpoints": {}}
    data = cohort.data
    if compare_published is None:
        compare_published = cohort.source.startswith("reconstructed_cohort")
    exploratory = {ep: _exploratory(sizes.get(ep)) for ep in chosen}
    summary["exploratory"] = exploratory
    parts = [
        f"<h1>Survival report: {html.escape(cohort.source)}</h1>",
        f"<p class='note'>{len(data)} patients. {html.escape(size_note(chosen, sizes))} Rows and models that "
        "involve the 3-month response start at the 3-month landmark (guarantee-time bias), as marked.</p>",
    ]
    chars = characteristics(data)
    write_safe_csv(chars, out / "characteristics.csv", index=False)
    parts.append(table_html(chars, "Cohort characteristics"))
    for ep in chosen:
        ep_summary = summary["endpoints"].setdefault(ep, {})
        parts += _endpoint_section(data, ep, cutoffs, out, ep_summary)
        if "d90_gy" in data.columns:
            parts += dose_section(
                data[f"{ep}_months"],
                data[f"{ep}_event"].astype(float),
                data["d90_gy"],
                out,
                ep,
                ep_summary.setdefault("dose_response", {}),
                label=f"{ENDPOINT_LABELS[ep]} (from implant)",
                cutoff=(cutoffs or {}).get("d90_gy", 110.0),
                n_resamples=dose_resamples,
            )
    if "lc" in chosen:
        table, fig = competing_risks(data), _competing_figure(data)
        write_safe_csv(table, out / "lc_competing_risks.csv", index=False)
        summary["lc_competing_risks"] = table.to_dict(orient="records")
        parts.append("<h2>Local failure with death as a competing risk</h2>")
        parts.append(figure_html(fig, "cumulative incidence of local failure"))
        parts.append(table_html(table, "Aalen-Johansen cumulative incidence vs 1 − KM"))
    for ep in chosen:
        if ep in competing_endpoints(cohort):
            found: dict[str, Any] = {}
            summary["endpoints"][ep]["competing_risks"] = found
            parts += competing_section(_competing_inputs(cohort, ep, cutoffs, exploratory[ep]), out, found)
    if compare_published:
        cmp = compare_to_published(data)
        write_safe_csv(cmp, out / "published_comparison.csv", index=False)
        parts.append(table_html(cmp, "Published figures beside this cohort (unlandmarked, as the study did)"))
        about = html.escape(years_only(published_targets()["_about"]))  # reports show years only
        parts.append(f"<p class='note'>Source of the published figures: {about}</p>")
    (root / "report.html").write_text(page(parts), encoding="utf-8")
    (root / "summary.json").write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")


CAUSE_NAMES = {"lc": ("local failure", "death without local failure")}


def _exploratory(size: SampleSize | None) -> bool:
    """Below Riley et al.'s minimum sample size, or not assessed."""
    return size is None or not size.adequate


def size_note(endpoints: Sequence[str], sizes: Mapping[str, SampleSize | None]) -> str:
    """The report's sentence on how far its estimates can be trusted, per endpoint, from the data.

    >>> size_note(["lc"], {}).split(";")[0]
    'Exploratory: LC not assessed against a minimum sample size'
    """
    parts, low = [], False
    for ep in endpoints:
        size = sizes.get(ep)
        if size is None:
            parts.append(f"{ep.upper()} not assessed against a minimum sample size")
            low = True
            continue
        verdict = "meets" if size.adequate else "is below"
        parts.append(
            f"{ep.upper()} ({size.n} patients, {size.events} events) {verdict} Riley et al.'s minimum sample size "
            f"for its multivariable model ({size.minimum_n})"
        )
        low = low or not size.adequate
    said = "; ".join(parts)
    if low:
        return f"Exploratory: {said}; read every estimate with its confidence interval."
    return f"{said[0].upper()}{said[1:]}; still read every estimate with its confidence interval."


def _competing_inputs(
    cohort: Cohort, ep: Endpoint, cutoffs: dict[str, float] | None, exploratory: bool = True
) -> CompetingInputs:
    """The competing-risks section of ``ep``: from the implant, the response from the 3-month
    landmark, as the univariate tables; the multivariable design of the Cox model."""
    data = cohort.data
    cr = survival_data(data, ep, competing=True)
    if "response_3mo" not in data.columns or data["response_3mo"].isna().all():
        design: tuple[pd.DataFrame, np.ndarray, np.ndarray] | str = "no 3-month response in this cohort"
    else:
        design = competing_design(data, ep)
    return CompetingInputs(
        endpoint=ep,
        label=ENDPOINT_LABELS[ep],
        time=cr.y["time"].astype(float),
        cause=cr.y["cause"].astype(int),
        groupings=cif_groupings(data, ep, cutoffs),
        names=CAUSE_NAMES.get(ep, (f"{ep.upper()} event", "competing event")),
        origin="from the implant; the response grouping and the multivariable models from the 3-month landmark, "
        "as the univariate tables and the Cox model",
        design=design,
        horizons=LANDMARKS,
        rules=[str(r) for r in cohort.competing_rules if r.endpoint == ep],
        caution=" (exploratory)" if exploratory else "",
    )


def _endpoint_section(
    data: pd.DataFrame, ep: Endpoint, cutoffs: dict[str, float] | None, out: Path, ep_summary: dict[str, Any]
) -> list[str]:
    """KM curve and table, univariate analysis, subgroup curves and the multivariable model of one endpoint."""
    name = ENDPOINT_LABELS[ep]
    t, e = data[f"{ep}_months"].to_numpy(float), data[f"{ep}_event"].to_numpy(bool)
    parts = [f"<h2>{name}</h2>"]
    parts.append(
        figure_html(km_plot({"all patients": (t, e)}, f"{name}: Kaplan-Meier, 95% CI"), f"{name} Kaplan-Meier curve")
    )
    overall = km_overall(t, e)
    write_safe_csv(overall, out / f"{ep}_km_overall.csv", index=False)
    ep_summary["events"] = int(e.sum())
    ep_summary["km"] = overall.set_index("figure").to_dict(orient="index")
    parts.append(table_html(overall, f"{name}: median and landmark rates (95% CI)"))
    uni = univariate_table(data, ep, cutoffs)
    write_safe_csv(uni, out / f"{ep}_univariate.csv", index=False)
    ep_summary["log_rank"] = {
        f: {"chi2": float(g["log-rank χ²"].iloc[0]), "p": float(g["p"].iloc[0])} for f, g in uni.groupby("factor")
    }
    parts.append(table_html(uni, f"{name}: univariate analysis (log-rank)"))
    for factor in uni.loc[(uni["p"] < 0.05) & ~uni["factor"].str.endswith(AS_PUBLISHED), "factor"].unique():
        base = factor.removesuffix(LANDMARKED)
        known = data[FACTOR_COLUMNS[base]].notna().to_numpy()
        labels = np.asarray(groupings(cutoffs)[base](data)).astype(str)
        groups = {lvl: (t[known & (labels == lvl)], e[known & (labels == lvl)]) for lvl in sorted(set(labels[known]))}
        parts.append(
            figure_html(km_plot(groups, f"{name} by {base} (from implant, as published)"), f"{name} by {base}")
        )
    return parts + _multivariable_section(data, ep, out, ep_summary)


def _multivariable_section(data: pd.DataFrame, ep: Endpoint, out: Path, ep_summary: dict[str, Any]) -> list[str]:
    """The study's multivariable Cox model and its proportional-hazards tests, from the 3-month landmark."""
    name = ENDPOINT_LABELS[ep]
    if "response_3mo" not in data.columns or data["response_3mo"].isna().all():
        return [
            "<p class='note'>No 3-month response in this cohort: the multivariable model "
            "(D90 ≥ 110 Gy and CR+PR) and its proportional-hazards checks are left out.</p>"
        ]
    cox, tests = multivariable_cox(data, ep)
    write_safe_csv(cox, out / f"{ep}_multivariable_cox.csv", index=False)
    ep_summary["multivariable_cox"] = {
        "landmark_months": RESPONSE_LANDMARK_MONTHS,
        **tests,
        "coefficients": cox.set_index("feature").to_dict(orient="index"),
    }
    left_out = (
        f" {tests['missing_response']} patients without a recorded response are left out."
        if tests["missing_response"]
        else ""
    )
    parts = [
        table_html(cox, f"{name}: multivariable Cox (3-month landmark; Efron ties)"),
        f"<p>Wald χ² {tests['wald_chi2']:.3f} (p {format_p(tests['wald_p'], '.4f')}); likelihood-ratio χ² "
        f"{tests['lr_chi2']:.3f} (p {format_p(tests['lr_p'], '.4f')}); {tests['events']} events in "
        f"{tests['patients']} patients: {tests['events_per_variable']:.1f} events per variable.{left_out}</p>",
    ]
    ph = ph_checks(data, ep)
    write_safe_csv(ph, out / f"{ep}_ph_checks.csv", index=False)
    glob = ph.set_index("covariate").loc["GLOBAL"]
    ep_summary["ph_global_p"] = float(glob["p (km)"])
    ep_summary["ph_global_p_rank"] = float(glob["p (rank)"])
    parts.append(
        table_html(
            ph,
            f"{name}: proportional hazards (score test as R's cox.zph, survival ≥ 3.0; "
            "km time, R's default, which the verdict reads; rank time beside it)",
        )
    )
    residuals = ph_residuals(data, ep)
    covariates = [c for c in ph["covariate"] if c != "GLOBAL"]
    parts.append(
        figure_html(
            schoenfeld_plot(residuals, covariates, f"{name}: scaled Schoenfeld residuals, β(t) (3-month landmark)"),
            f"{name} scaled Schoenfeld residuals",
        )
    )
    return parts
