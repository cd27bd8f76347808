"""``riskmodel report``: the classical statistics report of a study like this one, as one HTML file.

Sections: cohort characteristics; Kaplan-Meier curves of LC and OS (95% CI bands, censoring
ticks, numbers at risk, median and landmark rates with CIs); univariate tables in the layout of
the study's Tables 1 and 2 (n, median, landmark rates, log-rank χ² and p); subgroup KM plots of the
significant factors; the multivariable Cox model (D90 ≥ 110 Gy and CR+PR; Efron ties; Wald and
likelihood-ratio tests; events per variable); proportional-hazards checks on Schoenfeld residuals;
local control with death as a competing risk (Aalen-Johansen beside 1 − KM); and, for the bundled
cohort, the published figures beside these results.

Guarantee-time rule: wherever the 3-month response is involved (its univariate rows, the
multivariable model) the analysis starts at the 3-month landmark, and the report says so. The
study itself did not, so its response rows are shown beside the landmarked ones for reference.
Kaplan-Meier confidence intervals, numbers at risk and the Schoenfeld tests come from lifelines;
log-rank tests, Cox models and the Aalen-Johansen estimator (exact with tied times, which lifelines
jitters) are riskmodel's own and are tested against lifelines and R.
"""

from __future__ import annotations

import html
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from riskmodel._atomic import staged_folder
from riskmodel.cohort import Cohort, local_failure_competing, survival_data
from riskmodel.cohort.endpoints import RESPONSE_LANDMARK_MONTHS, Endpoint
from riskmodel.cohort.study import FACTOR_COLUMNS, LANDMARKS, groupings, published_targets
from riskmodel.errors import UserInputError, require_writable
from riskmodel.plots import figure_html
from riskmodel.privacy import PhiGuard, years_only
from riskmodel.stats import aalen_johansen, km_summary, logrank_chi2

__all__ = ["build_report", "multivariable_cox", "univariate_table"]

ENDPOINT_NAMES = {"lc": "Local control", "os": "Overall survival"}
RESPONSE_FACTOR = "short_term_response"


def _table_html(frame: pd.DataFrame, caption: str) -> str:
    body = frame.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.3g}", border=0, escape=True)
    return f"<h3>{html.escape(caption)}</h3>{body}"


def characteristics(data: pd.DataFrame) -> pd.DataFrame:
    """n (%) for categories, median (range) for numbers."""
    rows = []
    for col in (
        "age_years",
        "kps",
        "prior_ebrt_dose_gy",
        "recurrence_interval_months",
        "lesion_volume_cm3",
        "seed_activity_mci",
        "seed_count",
        "prescription_dose_gy",
        "d90_gy",
        "skin_d2cc_gy",
    ):
        if col in data:
            v = pd.to_numeric(data[col], errors="coerce").dropna()
            rows.append(
                {
                    "characteristic": col,
                    "value": f"{v.median():g} ({v.min():g}-{v.max():g})",
                    "summary": "median (range)",
                }
            )
    for col in ("sex", "pathological_grade", "t_stage", "n_stage", "m_stage", "response_3mo", "post_implant_chemo"):
        if col in data:
            values = data[col].map({True: "yes", False: "no"}) if col == "post_implant_chemo" else data[col]
            counts = values.astype(object).where(values.notna(), "missing").astype(str).value_counts()
            for level, n in counts.items():
                rows.append(
                    {
                        "characteristic": f"{col} = {level}",
                        "value": f"{n} ({100 * n / len(data):.0f}%)",
                        "summary": "n (%)",
                    }
                )
    return pd.DataFrame(rows)


def _km_plot(groups: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    fig, ax = plt.subplots(figsize=(7, 4.6))
    fitters = []
    for label, (t, e) in groups.items():
        km = KaplanMeierFitter(label=f"{label} (n={len(t)})").fit(t, e)
        km.plot_survival_function(ax=ax, ci_show=True, show_censors=True, censor_styles={"marker": "|", "ms": 7})
        fitters.append(km)
    ax.set_xlabel("months")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"])
    fig.tight_layout()
    return fig


def km_overall(time: np.ndarray, event: np.ndarray) -> pd.DataFrame:
    """Median with its 95% CI and landmark rates with 95% CIs (lifelines' log-log Greenwood bands)."""
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

    km = KaplanMeierFitter().fit(time, event)
    ci = median_survival_times(km.confidence_interval_)
    rows = [
        {
            "figure": "median (months)",
            "estimate": km.median_survival_time_,
            "lower 95%": float(ci.iloc[0, 0]),
            "upper 95%": float(ci.iloc[0, 1]),
        }
    ]
    for m in LANDMARKS:
        s = float(km.survival_function_at_times(m).iloc[0])
        band = km.confidence_interval_survival_function_
        idx = band.index.searchsorted(m, side="right") - 1
        lo, hi = band.iloc[idx].to_numpy() if idx >= 0 else (1.0, 1.0)
        rows.append({"figure": f"S({m:g}) %", "estimate": 100 * s, "lower 95%": 100 * lo, "upper 95%": 100 * hi})
    return pd.DataFrame(rows)


LANDMARKED = " (3-month landmark)"
AS_PUBLISHED = " (from implant, as published: guarantee-time biased)"


def univariate_table(data: pd.DataFrame, endpoint: Endpoint, cutoffs: dict[str, float] | None = None) -> pd.DataFrame:
    """Tables 1/2 layout: for each factor and group, n, median, S6-S24 (%), log-rank χ² and p.

    The response factor is analysed from the 3-month landmark (times shifted by 3 months); its
    unlandmarked rows, as the study computed them, follow as a labelled reference. A factor whose
    column is absent is left out; patients missing a factor's value are left out of that factor
    only (``missing`` says how many), never put into a group by default.
    """
    rows: list[dict[str, Any]] = []
    for factor, group_of in groupings(cutoffs).items():
        column = FACTOR_COLUMNS[factor]
        if column not in data.columns:
            continue
        known = data[data[column].notna()]
        if factor != RESPONSE_FACTOR:
            rows += _factor_rows(factor, known, group_of, endpoint, len(data) - len(known))
            continue
        landmarked = survival_data(
            known, endpoint, landmark_months=RESPONSE_LANDMARK_MONTHS, feature_columns=["response_3mo"]
        ).X.join(known[[f"{endpoint}_months", f"{endpoint}_event"]] - [RESPONSE_LANDMARK_MONTHS, 0], how="inner")
        rows += _factor_rows(factor + LANDMARKED, landmarked, group_of, endpoint, len(data) - len(known))
        rows += _factor_rows(factor + AS_PUBLISHED, known, group_of, endpoint, len(data) - len(known))
    return pd.DataFrame(rows)


def _factor_rows(label: str, frame: pd.DataFrame, group_of: Any, endpoint: str, missing: int) -> list[dict[str, Any]]:
    labels = np.asarray(group_of(frame)).astype(str)
    time = frame[f"{endpoint}_months"].to_numpy(float)
    event = frame[f"{endpoint}_event"].to_numpy(bool)
    levels = sorted(set(labels))
    codes = np.array([levels.index(v) for v in labels])
    chi2 = logrank_chi2(time, event, codes, len(levels)) if len(levels) > 1 else float("nan")
    p = float(stats.chi2.sf(chi2, len(levels) - 1)) if len(levels) > 1 else float("nan")
    rows = []
    for level in levels:
        mask = labels == level
        rates, median = km_summary(time[mask], event[mask])
        rows.append(
            {
                "factor": label,
                "group": level,
                "n": int(mask.sum()),
                "median": median,
                **{f"S{m:g} %": 100 * r for m, r in zip(LANDMARKS, rates, strict=True)},
                "log-rank χ²": chi2,
                "p": p,
                "missing": missing,
            }
        )
    return rows


def _study_design(data: pd.DataFrame, endpoint: Endpoint) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The study's multivariable design (D90 >= 110 Gy, CR+PR) from the 3-month landmark.

    Returns the covariates (the ``published`` feature set), the target, and how many patients
    were left out for lack of a recorded response.
    """
    from riskmodel.features import ClinicalFeatures

    if "response_3mo" not in data.columns or data["response_3mo"].isna().all():
        raise UserInputError("the multivariable model needs response_3mo, which this cohort does not have")
    known = data[data["response_3mo"].notna()]
    sd = survival_data(known, endpoint, landmark_months=RESPONSE_LANDMARK_MONTHS, feature_columns=["response_3mo"])
    features = ClinicalFeatures("published", landmark_months=RESPONSE_LANDMARK_MONTHS).set_output(transform="pandas")
    X = features.fit_transform(sd.X).reset_index(drop=True)
    return X, sd.y, len(data) - len(known)


def multivariable_cox(data: pd.DataFrame, endpoint: Endpoint) -> tuple[pd.DataFrame, dict[str, float]]:
    """The study's model, D90 ≥ 110 Gy and CR+PR, from the 3-month landmark; Efron ties.

    Patients without a recorded response are left out (``tests["missing_response"]``).
    """
    from riskmodel.models.cox import CoxPH

    X, y, missing = _study_design(data, endpoint)
    model = CoxPH(penalty=0).fit(X, y)
    beta = model.coef_
    wald = float(beta @ model.information_ @ beta)
    lr = 2 * (model.log_likelihood_ - model.log_likelihood_null_)
    events = int(y["event"].sum())
    tests = {
        "wald_chi2": wald,
        "wald_p": float(stats.chi2.sf(wald, len(beta))),
        "lr_chi2": lr,
        "lr_p": float(stats.chi2.sf(lr, len(beta))),
        "events": events,
        "patients": len(y),
        "events_per_variable": events / len(beta),
        "missing_response": missing,
    }
    table = model.hazard_ratios_.reset_index()[["feature", "hr", "hr_lower_95", "hr_upper_95", "p"]]
    return table, tests


def schoenfeld_tests(design: pd.DataFrame) -> pd.DataFrame:
    """Per-covariate and global tests of proportional hazards on scaled Schoenfeld residuals.

    ``design`` holds the covariates and columns ``T`` and ``E``. Time is rank-transformed. The
    per-covariate statistics are lifelines' ``proportional_hazard_test``; the global one is the
    multivariate form of the same approximation (Grambsch & Therneau 1994):
    T = (Σ g·r)ᵀ V⁻¹ (Σ g·r) / (d · Σ g²) on p degrees of freedom, with g the centred transformed
    event times, r the scaled residuals, V the coefficients' covariance and d the events. With one
    covariate it equals the per-covariate test. (R's survival ≥ 3.0 uses an exact score test.)
    """
    from lifelines import CoxPHFitter
    from lifelines.statistics import TimeTransformers, proportional_hazard_test

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cph = CoxPHFitter().fit(design, "T", "E", fit_options={"precision": 1e-12, "max_steps": 500})
        per = proportional_hazard_test(cph, design, time_transform="rank").summary
        resid = cph.compute_residuals(design, kind="scaled_schoenfeld").to_numpy()
    events = cph.event_observed.to_numpy(bool)
    times = TimeTransformers().get("rank")(cph.durations, cph.event_observed, cph.weights)[events].to_numpy()
    g = times - times.mean()
    score = (g[:, None] * resid).sum(0)
    global_chi2 = float(score @ np.linalg.solve(cph.variance_matrix_.to_numpy(), score) / (events.sum() * (g @ g)))
    out = per[["test_statistic", "p"]].reset_index().rename(columns={"index": "covariate", "test_statistic": "χ²"})
    out["df"] = 1
    k = resid.shape[1]
    glob = pd.DataFrame(
        [{"covariate": "GLOBAL", "χ²": global_chi2, "p": float(stats.chi2.sf(global_chi2, k)), "df": k}]
    )
    table: pd.DataFrame = pd.concat([out, glob], ignore_index=True)
    table["verdict"] = np.where(
        table["p"] < 0.05,
        "evidence the effect changes over time: read the HR as an average",
        "no evidence against proportional hazards (the test has little power at this n)",
    )
    return table


def ph_checks(data: pd.DataFrame, endpoint: Endpoint) -> pd.DataFrame:
    """Schoenfeld tests (per covariate and global) for the multivariable model, from the 3-month landmark."""
    X, y, _ = _study_design(data, endpoint)
    return schoenfeld_tests(X.assign(T=y["time"], E=y["event"]))


def competing_risks(data: pd.DataFrame) -> tuple[pd.DataFrame, Any]:
    """Aalen-Johansen cumulative incidence of local failure beside 1 − KM at the landmarks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lifelines import KaplanMeierFitter

    from riskmodel.models.base import step_values

    cr = local_failure_competing(data)
    aj_t, aj_cif = aalen_johansen(cr["time"].to_numpy(), cr["event_type"].to_numpy(), cause=1)
    km = KaplanMeierFitter().fit(data["lc_months"], data["lc_event"])
    rows = []
    for m in LANDMARKS:
        c = float(step_values(aj_t, aj_cif, np.array([m]))[0])
        one_minus_km = 1 - float(km.survival_function_at_times(m).iloc[0])
        rows.append(
            {
                "month": m,
                "cumulative incidence (AJ) %": 100 * c,
                "1 − KM %": 100 * one_minus_km,
                "KM overstates by (points)": 100 * (one_minus_km - c),
            }
        )
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.step(np.r_[0.0, aj_t], np.r_[0.0, aj_cif], where="post", label="local failure, Aalen-Johansen (death competing)")
    sf = km.survival_function_.iloc[:, 0]
    ax.step(sf.index, 1 - sf.to_numpy(), where="post", linestyle="--", label="1 − Kaplan-Meier (deaths censored)")
    ax.set_xlabel("months from implant")
    ax.set_ylabel("probability of local failure")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    return pd.DataFrame(rows), fig


def build_report(
    cohort: Cohort,
    out_dir: str | Path,
    *,
    endpoints: Sequence[str] = ("lc", "os"),
    compare_published: bool | None = None,
    cutoffs: dict[str, float] | None = None,
) -> Path:
    """Write ``report.html`` (self-contained), ``tables/*.csv`` and ``summary.json`` into ``out_dir``.

    Returns the path of the HTML file.

    ``cutoffs`` replaces the study's cut-off of two-group numeric factors, e.g. ``{"d90_gy": 120}``.
    """
    unknown = [e for e in endpoints if e not in ENDPOINT_NAMES]
    chosen: list[Endpoint] = [e for e in ("lc", "os") if e in endpoints]
    if unknown or not endpoints:
        raise UserInputError(f"endpoints must be among lc, os; got {', '.join(endpoints) or 'none'}")
    require_writable(out_dir, folder=True, option="--out")
    guard = PhiGuard.for_cohort(cohort)
    # written beside out_dir, checked by the PHI guard, then moved in file by file (each whole)
    with staged_folder(out_dir, merge=True) as stage:
        _write_report(cohort, stage, chosen, compare_published, cutoffs)
        guard.check_tree(stage, "report")
    return Path(out_dir) / "report.html"


def _write_report(
    cohort: Cohort,
    root: Path,
    chosen: list[Endpoint],
    compare_published: bool | None,
    cutoffs: dict[str, float] | None,
) -> None:
    out = root / "tables"
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"source": cohort.source, "patients": len(cohort.data), "endpoints": {}}
    data = cohort.data
    if compare_published is None:
        compare_published = cohort.source.startswith("reconstructed_cohort")
    parts = [
        f"<h1>Survival report: {html.escape(cohort.source)}</h1>",
        f"<p class='note'>{len(data)} patients. <b>Exploratory</b>: with this few events every estimate is "
        "uncertain; read the confidence intervals. Rows and models that involve the 3-month response start at "
        "the 3-month landmark (guarantee-time bias), as marked.</p>",
    ]
    chars = characteristics(data)
    chars.to_csv(out / "characteristics.csv", index=False)
    parts.append(_table_html(chars, "Cohort characteristics"))
    for ep in chosen:
        name = ENDPOINT_NAMES[ep]
        t, e = data[f"{ep}_months"].to_numpy(float), data[f"{ep}_event"].to_numpy(bool)
        parts.append(f"<h2>{name}</h2>")
        parts.append(
            figure_html(
                _km_plot({"all patients": (t, e)}, f"{name}: Kaplan-Meier, 95% CI"), f"{name} Kaplan-Meier curve"
            )
        )
        overall = km_overall(t, e)
        overall.to_csv(out / f"{ep}_km_overall.csv", index=False)
        ep_summary: dict[str, Any] = summary["endpoints"].setdefault(ep, {})
        ep_summary["events"] = int(e.sum())
        ep_summary["km"] = overall.set_index("figure").to_dict(orient="index")
        parts.append(_table_html(overall, f"{name}: median and landmark rates (95% CI)"))
        uni = univariate_table(data, ep, cutoffs)
        uni.to_csv(out / f"{ep}_univariate.csv", index=False)
        ep_summary["log_rank"] = {
            f: {"chi2": float(g["log-rank χ²"].iloc[0]), "p": float(g["p"].iloc[0])} for f, g in uni.groupby("factor")
        }
        parts.append(_table_html(uni, f"{name}: univariate analysis (log-rank)"))
        for factor in uni.loc[(uni["p"] < 0.05) & ~uni["factor"].str.endswith(AS_PUBLISHED), "factor"].unique():
            base = factor.removesuffix(LANDMARKED)
            known = data[FACTOR_COLUMNS[base]].notna().to_numpy()
            labels = np.asarray(groupings(cutoffs)[base](data)).astype(str)
            groups = {
                lvl: (t[known & (labels == lvl)], e[known & (labels == lvl)]) for lvl in sorted(set(labels[known]))
            }
            parts.append(
                figure_html(_km_plot(groups, f"{name} by {base} (from implant, as published)"), f"{name} by {base}")
            )
        if "response_3mo" not in data.columns or data["response_3mo"].isna().all():
            parts.append(
                "<p class='note'>No 3-month response in this cohort: the multivariable model "
                "(D90 ≥ 110 Gy and CR+PR) and its proportional-hazards checks are left out.</p>"
            )
            continue
        cox, tests = multivariable_cox(data, ep)
        cox.to_csv(out / f"{ep}_multivariable_cox.csv", index=False)
        ep_summary["multivariable_cox"] = {
            "landmark_months": RESPONSE_LANDMARK_MONTHS,
            **tests,
            "coefficients": cox.set_index("feature").to_dict(orient="index"),
        }
        parts.append(_table_html(cox, f"{name}: multivariable Cox (3-month landmark; Efron ties)"))
        left_out = (
            f" {tests['missing_response']} patients without a recorded response are left out."
            if tests["missing_response"]
            else ""
        )
        parts.append(
            f"<p>Wald χ² {tests['wald_chi2']:.3f} (p {tests['wald_p']:.4f}); likelihood-ratio χ² "
            f"{tests['lr_chi2']:.3f} (p {tests['lr_p']:.4f}); {tests['events']} events in "
            f"{tests['patients']} patients: {tests['events_per_variable']:.1f} events per variable.{left_out}</p>"
        )
        ph = ph_checks(data, ep)
        ph.to_csv(out / f"{ep}_ph_checks.csv", index=False)
        ep_summary["ph_global_p"] = float(ph.loc[ph["covariate"] == "GLOBAL", "p"].iloc[0])
        parts.append(_table_html(ph, f"{name}: proportional hazards (Schoenfeld residuals, rank time)"))
    if "lc" in chosen:
        table, fig = competing_risks(data)
        table.to_csv(out / "lc_competing_risks.csv", index=False)
        summary["lc_competing_risks"] = table.to_dict(orient="records")
        parts.append("<h2>Local failure with death as a competing risk</h2>")
        parts.append(figure_html(fig, "cumulative incidence of local failure"))
        parts.append(_table_html(table, "Aalen-Johansen cumulative incidence vs 1 − KM"))
    if compare_published:
        from riskmodel.cohort.calibrate import compare_to_published

        cmp = compare_to_published(data)
        cmp.to_csv(out / "published_comparison.csv", index=False)
        parts.append(_table_html(cmp, "Published figures beside this cohort (unlandmarked, as the study did)"))
        about = html.escape(years_only(published_targets()["_about"]))  # reports show years only
        parts.append(f"<p class='note'>Source of the published figures: {about}</p>")
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>riskmodel report</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}td,th{padding:.2em .6em;"
        "border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%}.note{background:#fff8e1;padding:.6em;border-left:4px solid #f0b400}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    (root / "report.html").write_text(page, encoding="utf-8")
    (root / "summary.json").write_text(json.dumps(_finite(summary), indent=2, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN and infinities (e.g. an open CI) to null."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
