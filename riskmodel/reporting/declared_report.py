"""``riskmodel report EXPERIMENT``: the classical survival report of a declared cohort, as one HTML file.

Sections: what was left out and why; the missing data per covariate (n, %, by event status and
by centre); the characteristics of every declared covariate, overall and by centre; then per
declared endpoint its events, reverse-KM follow-up, Kaplan-Meier median and rates, the univariate
Kaplan-Meier / log-rank table of every covariate with its curves
(:mod:`riskmodel.reporting.declared_tables`), the dose-response of every covariate declared
``encoding: spline`` (its curve and tests; the threshold analysis at its ``--cutoff``:
:mod:`riskmodel.reporting.dose_section`), the multivariable Cox model of the declared
covariates with their declared encodings (pooled over imputations when the declaration imputes)
and its proportional-hazards tests (:mod:`riskmodel.reporting.declared_cox`); for an endpoint with
competing events (``competing_codes`` or ``competing_endpoint``), its competing-risks section
(:mod:`riskmodel.reporting.competing_section`: CIFs by covariate and centre with Gray's test,
Fine-Gray and cause-specific Cox tables on the complete cases).

Honesty about size is read from the data, never assumed: an endpoint below Riley et al.'s minimum
sample size for its multivariable model (assessed by the caller, ``riskmodel.workflow``) is marked
exploratory on every table caption and figure, and every curve carries its 95% band. The report
holds counts and estimates only; every file passes the PHI guard before it is written.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort import Cohort, survival_data
from riskmodel.cohort.declaration import CohortDeclaration, CovariateDeclaration
from riskmodel.cohort.declared import missing_data_table
from riskmodel.config import ExperimentConfig, competing_endpoints
from riskmodel.core.csvout import write_safe_csv
from riskmodel.core.files import staged_folder
from riskmodel.errors import RiskModelError, UserInputError, require_writable
from riskmodel.privacy import PhiGuard
from riskmodel.reporting.competing_section import competing_section
from riskmodel.reporting.declared_cox import DeclaredCox, declared_competing, multivariable_declared
from riskmodel.reporting.declared_tables import (
    Grouping,
    characteristics_declared,
    endpoint_summary,
    groupings,
    univariate_declared,
)
from riskmodel.reporting.dose_section import dose_section
from riskmodel.reporting.page import format_p, json_safe, km_plot, page, table_html
from riskmodel.reporting.plots import figure_html, schoenfeld_plot
from riskmodel.stats.samplesize import SampleSize

__all__ = ["build_declared_report"]


@dataclass(frozen=True)
class _Plan:
    """What one report is made of: the cohort, the experiment, the covariates kept, and the sizes."""

    cohort: Cohort
    config: ExperimentConfig
    declaration: CohortDeclaration
    covariates: list[CovariateDeclaration]
    grouping: list[Grouping]
    sizes: Mapping[str, SampleSize | None]

    @property
    def time_axis(self) -> str:
        landmark = self.config.landmark_months
        origin = self.declaration.time_origin
        return f"months after the {landmark:g}-month landmark" if landmark else f"months after {origin}"

    def exploratory(self, endpoint: str) -> bool:
        size = self.sizes.get(endpoint)
        return size is None or not size.adequate

    def caution(self, endpoint: str) -> str:
        return " (EXPLORATORY: below Riley et al.'s minimum n)" if self.exploratory(endpoint) else ""


def build_declared_report(
    cohort: Cohort,
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    sample_sizes: Mapping[str, SampleSize | None] | None = None,
    notes: Sequence[str] = (),
    cutoffs: Mapping[str, float] | None = None,
) -> Path:
    """Write ``report.html`` (self-contained), ``tables/*.csv`` and ``summary.json`` into ``out_dir``.

    ``config`` is the experiment (its ``cohort:`` declaration, endpoints, covariates, landmark,
    horizons, imputation and seed); ``sample_sizes`` is Riley et al.'s assessment per endpoint
    (None or a missing endpoint: not assessed, so exploratory); ``notes`` are shown first (the
    covariates left out, and why); ``cutoffs`` split numeric covariates at given values.
    Returns the path of the HTML file.
    """
    declaration = cohort.declaration
    if declaration is None or config.cohort is None:
        raise UserInputError("a declared-cohort report needs an experiment with a cohort: declaration")
    covariates = [declaration.covariate(name) for name in config.covariates]
    plan = _Plan(
        cohort,
        config,
        declaration,
        covariates,
        groupings(cohort.data, covariates, cutoffs),
        sample_sizes or {},
    )
    require_writable(out_dir, folder=True, option="--out")
    # the experiment's own settings are not identifiers (data paths left out: they may name people)
    guard = PhiGuard.for_cohort(cohort, own=config.model_dump(mode="json", exclude={"data"}))
    with staged_folder(out_dir, merge=True) as stage:
        _write(plan, stage, list(notes))
        guard.check_tree(stage, "report")
    return Path(out_dir) / "report.html"


def _write(plan: _Plan, root: Path, notes: list[str]) -> None:
    out = root / "tables"
    out.mkdir(parents=True, exist_ok=True)
    cohort, data = plan.cohort, plan.cohort.data
    summary: dict[str, Any] = {
        "source": cohort.source,
        "patients": len(data),
        "patients_read": cohort.n_read if cohort.n_read is not None else len(data),
        "centres": int(data["centre"].nunique()) if "centre" in data.columns else None,
        "time_origin": plan.declaration.time_origin,
        "landmark_months": plan.config.landmark_months,
        "covariates": [c.name for c in plan.covariates],
        "left_out": notes,
        "endpoints": {},
    }
    parts = [f"<h1>Survival report: {html.escape(cohort.source)}</h1>", _intro(plan)]
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        parts.append(f"<div class='note'><b>Left out</b> (never reported as data):<ul>{items}</ul></div>")
    parts += _missing_section(plan, out, summary)
    chars = characteristics_declared(data, plan.covariates)
    write_safe_csv(chars, out / "characteristics.csv", index=False)
    parts.append(table_html(chars, "Cohort characteristics: overall and by centre"))
    for endpoint in plan.config.endpoints:
        parts += _endpoint_section(plan, endpoint, out, summary["endpoints"].setdefault(endpoint, {}))
    (root / "report.html").write_text(page(parts), encoding="utf-8")
    (root / "summary.json").write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")


def _intro(plan: _Plan) -> str:
    cohort, data = plan.cohort, plan.cohort.data
    read = cohort.n_read if cohort.n_read is not None else len(data)
    dropped = f" ({read - len(data)} of {read} read left out: complete-case)" if read != len(data) else ""
    centres = f" from {data['centre'].nunique()} centres" if "centre" in data.columns else ""
    landmark = plan.config.landmark_months
    start = (
        f"Time zero is {plan.declaration.time_origin}"
        if not landmark
        else f"Every analysis starts at the {landmark:g}-month landmark (a covariate is measured then): "
        "patients with an event or censoring before it are left out and times are counted from it"
    )
    return (
        f"<p class='note'>{len(data)} patients{dropped}{centres}; {len(plan.covariates)} declared covariates. "
        f"{html.escape(start)}. Counts and estimates only: no patient identifier, row or date. Read every "
        "estimate with its 95% confidence interval.</p>"
    )


def _missing_section(plan: _Plan, out: Path, summary: dict[str, Any]) -> list[str]:
    table = missing_data_table(plan.cohort)
    if len(table):
        table = table[table["covariate"].isin([c.name for c in plan.covariates])].reset_index(drop=True)
    write_safe_csv(table, out / "missing_data.csv", index=False)
    summary["missing_data"] = table[["covariate", "missing", "percent", "policy"]].to_dict(orient="records")
    caption = "Missing data per covariate in the file (n, %, % among patients with and without each event, % by centre)"
    if not len(table) or table["missing"].sum() == 0:
        return ["<h2>Missing data</h2><p>No declared covariate is missing for any patient.</p>"]
    return ["<h2>Missing data</h2>", table_html(table, caption)]


def _endpoint_section(plan: _Plan, endpoint: str, out: Path, ep_summary: dict[str, Any]) -> list[str]:
    """Events, follow-up and KM; the univariate table and curves; the multivariable model."""
    decl = plan.declaration.endpoint(endpoint)
    name = decl.label or endpoint.upper()
    kept = [c.name for c in plan.covariates]
    sd = survival_data(plan.cohort, endpoint, landmark_months=plan.config.landmark_months, feature_columns=kept)
    time, event = sd.y["time"].astype(float), sd.y["event"].astype(bool)
    caution = plan.caution(endpoint)
    parts = [f"<h2>{html.escape(name)}</h2>", _size_note(plan, endpoint, ep_summary)]
    if decl.competing_codes:
        parts.append(
            f"<p class='note'>Competing events (codes {', '.join(map(str, decl.competing_codes))}) are censored "
            "here: 1 − Kaplan-Meier then overstates the cumulative incidence, and the hazard ratios are "
            "cause-specific.</p>"
        )
    competing = None
    if decl.competing_codes:
        competing = int((plan.cohort.data.loc[sd.X.index, f"{endpoint}_event_type"] == 2).sum())
    horizons = [h for h in plan.config.horizons if h <= time.max()]
    overall = endpoint_summary(time, event, horizons, competing)
    write_safe_csv(overall, out / f"{endpoint}_summary.csv", index=False)
    ep_summary.update(events=int(event.sum()), patients=len(time), km=overall.set_index("figure").to_dict("index"))
    parts.append(table_html(overall, f"{name}: events, follow-up and Kaplan-Meier (95% CI){caution}"))
    fig = km_plot({"all patients": (time, event)}, f"{name}: Kaplan-Meier, 95% CI{caution}", plan.time_axis)
    parts.append(figure_html(fig, f"{name} Kaplan-Meier curve"))
    parts += _univariate_section(plan, sd.X, time, event, horizons, (endpoint, name), out, ep_summary)
    parts += _dose_sections(plan, sd.X, time, event, (endpoint, name), out, ep_summary)
    parts += _multivariable_section(plan, sd.X, sd.y, (endpoint, name), out, ep_summary)
    if endpoint in competing_endpoints(plan.declaration):
        inputs = declared_competing(plan.cohort, plan.config, plan.grouping, endpoint, plan.caution(endpoint))
        parts += competing_section(inputs, out, ep_summary.setdefault("competing_risks", {}))
    return parts


def _dose_sections(
    plan: _Plan,
    X: pd.DataFrame,
    time: np.ndarray,
    event: np.ndarray,
    names: tuple[str, str],
    out: Path,
    ep_summary: dict[str, Any],
) -> list[str]:
    """The dose-response (spline curve and tests) of every numeric covariate declared ``encoding: spline``,
    with the threshold analysis at its ``--cutoff`` when one is given (a median split is not pre-specified)."""
    endpoint, name = names
    parts: list[str] = []
    for g in plan.grouping:
        c = g.covariate
        if c.kind != "numeric" or c.encoding != "spline" or c.name not in X.columns:
            continue
        parts += dose_section(
            time,
            event.astype(float),
            pd.to_numeric(X[c.name], errors="coerce"),
            out,
            f"{endpoint}_{c.name}",
            ep_summary.setdefault("dose_response", {}).setdefault(c.name, {}),
            label=name,
            name=c.name,
            unit=c.unit,
            cutoff=g.cut if g.how.startswith("--cutoff") else None,
            knots=c.knots,
            seed=plan.config.seed,
        )
    return parts


def _size_note(plan: _Plan, endpoint: str, ep_summary: dict[str, Any]) -> str:
    size = plan.sizes.get(endpoint)
    ep_summary["exploratory"] = plan.exploratory(endpoint)
    if size is None:
        ep_summary["sample_size"] = None
        return (
            "<p class='note'><b>Exploratory</b>: the sample size for a multivariable model could not be "
            "assessed for this endpoint (see the notes above).</p>"
        )
    ep_summary["sample_size"] = {
        "minimum_n": size.minimum_n,
        "adequate": size.adequate,
        "events_per_parameter": size.epv,
        "expected_shrinkage": size.expected_shrinkage,
    }
    verdict = "<b>Exploratory</b>: every figure below is uncertain; read its interval. " if not size.adequate else ""
    return f"<p class='note'>{verdict}Sample size (Riley et al. 2019): {html.escape(size.summary())}.</p>"


def _univariate_section(
    plan: _Plan,
    X: pd.DataFrame,
    time: np.ndarray,
    event: np.ndarray,
    horizons: list[float],
    names: tuple[str, str],
    out: Path,
    ep_summary: dict[str, Any],
) -> list[str]:
    endpoint, name = names
    caution = plan.caution(endpoint)
    table = univariate_declared(X, time, event, plan.grouping, horizons)
    write_safe_csv(table, out / f"{endpoint}_univariate.csv", index=False)
    ep_summary["log_rank"] = {
        cov: {"groups_by": g["groups by"].iloc[0], "chi2": g["log-rank χ²"].iloc[0], "df": g["df"].iloc[0]}
        | {"p": g["p"].iloc[0]}
        for cov, g in table.groupby("covariate", sort=False)
    }
    parts = [
        table_html(table, f"{name}: univariate Kaplan-Meier and log-rank, by covariate{caution}"),
        f"<p>Groups: declared levels; a numeric covariate in two at a --cutoff, its declared threshold or "
        f"its median (column 'groups by'). A group with fewer than 5 events is marked sparse. Times are "
        f"{html.escape(plan.time_axis)}.</p>",
    ]
    for g in plan.grouping:
        labels = g.labels(X[g.covariate.name]).to_numpy()
        groups = {lvl: (time[labels == lvl], event[labels == lvl]) for lvl in g.groups if (labels == lvl).any()}
        if not groups:
            continue
        title = f"{name} by {g.covariate.name} ({g.how}), 95% CI{caution}"
        parts.append(figure_html(km_plot(groups, title, plan.time_axis), f"{name} by {g.covariate.name}"))
    return parts


def _multivariable_section(
    plan: _Plan, X: pd.DataFrame, y: np.ndarray, names: tuple[str, str], out: Path, ep_summary: dict[str, Any]
) -> list[str]:
    endpoint, name = names
    caution = plan.caution(endpoint)
    heading = f"<h3>{html.escape(name)}: multivariable Cox model of the declared covariates{html.escape(caution)}</h3>"
    try:
        fit = multivariable_declared(
            X,
            y,
            plan.declaration,
            [c.name for c in plan.covariates],
            n_imputations=plan.config.imputation.n_imputations,
            n_iter=plan.config.imputation.n_iter,
            seed=plan.config.seed,
        )
    except RiskModelError as exc:
        ep_summary["multivariable_cox"] = {"not_fitted": str(exc)}
        return [heading, f"<p class='note'>Not fitted: {html.escape(str(exc))}</p>"]
    write_safe_csv(fit.table, out / f"{endpoint}_multivariable_cox.csv", index=False)
    ep_summary["multivariable_cox"] = {
        "method": fit.method,
        **fit.tests,
        "notes": fit.notes,
        "coefficients": fit.table.set_index("feature").to_dict(orient="index"),
    }
    parts = [heading, f"<p>{html.escape(fit.method)}. {html.escape(_tests_line(fit))}</p>"]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in fit.notes]
    parts.append(table_html(fit.table, f"{name}: hazard ratios (95% CI) per unit of each encoded column"))
    return parts + _ph_section(plan, fit, names, out, ep_summary)


def _tests_line(fit: DeclaredCox) -> str:
    t = fit.tests
    size = f"{t['events']:.0f} events in {t['patients']:.0f} patients, {t['parameters']:.0f} parameters: "
    size += f"{t['events_per_parameter']:.1f} events per parameter."
    if "wald_chi2" not in t:
        return size + " No global test is pooled over the imputations."
    return (
        f"Wald χ² {t['wald_chi2']:.3f} (p {format_p(t['wald_p'], '.4g')}); likelihood-ratio χ² {t['lr_chi2']:.3f} "
        f"(p {format_p(t['lr_p'], '.4g')}); " + size
    )


def _ph_section(
    plan: _Plan, fit: DeclaredCox, names: tuple[str, str], out: Path, ep_summary: dict[str, Any]
) -> list[str]:
    endpoint, name = names
    if fit.ph is None:
        return []
    write_safe_csv(fit.ph, out / f"{endpoint}_ph_checks.csv", index=False)
    glob = fit.ph.set_index("covariate").loc["GLOBAL"]
    ep_summary["ph_global_p"] = float(glob["p (km)"])
    ep_summary["ph_global_p_rank"] = float(glob["p (rank)"])
    ep_summary["ph_p"] = dict(zip(fit.ph["covariate"], fit.ph["p (km)"], strict=True))
    ep_summary["ph_patients"] = fit.ph_patients
    where = (
        f"on the {fit.ph_patients} complete cases (the model refitted without imputation)"
        if "imputations" in fit.tests
        else f"on the model's {fit.ph_patients} patients"
    )
    parts = [
        table_html(
            fit.ph,
            f"{name}: proportional hazards, one test per covariate over all its columns (R's cox.zph, survival "
            f"≥ 3.0, terms = TRUE; km time, which the verdict reads, and rank time), {where}",
        )
    ]
    if fit.residuals is not None:
        title = f"{name}: scaled Schoenfeld residuals, β(t), {where}{plan.caution(endpoint)}"
        parts.append(figure_html(schoenfeld_plot(fit.residuals, fit.ph_columns, title), f"{name} Schoenfeld"))
    return parts
