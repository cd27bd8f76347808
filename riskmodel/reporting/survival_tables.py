"""The classical survival statistics of a study like this one, as tables: characteristics,
Kaplan-Meier medians and landmark rates, univariate log-rank tables in the layout of the study's
Tables 1 and 2, the multivariable Cox model, proportional-hazards tests, and local failure with
death as a competing risk.

Every Kaplan-Meier figure is riskmodel's own (:mod:`riskmodel.stats.kaplan_meier`): medians by R's
survfit rule (an exact 0.5 plateau gives its midpoint) with survfit's default log-type interval,
landmark rates with log-log Greenwood intervals.

Guarantee-time rule: wherever the 3-month response is involved (its univariate rows, the
multivariable model) the analysis starts at the 3-month landmark. The study itself did not, so
its response rows are shown beside the landmarked ones for reference.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from riskmodel.cohort import local_failure_competing, survival_data
from riskmodel.cohort.endpoints import RESPONSE_LANDMARK_MONTHS, Endpoint
from riskmodel.cohort.reconstruction.study import FACTOR_COLUMNS, LANDMARKS, groupings
from riskmodel.errors import UserInputError
from riskmodel.features import ClinicalFeatures
from riskmodel.models import CoxPH
from riskmodel.stats import aalen_johansen, km_at, km_median, km_summary, logrank_chi2, step_values

__all__ = [
    "AS_PUBLISHED",
    "LANDMARKED",
    "characteristics",
    "competing_risks",
    "km_overall",
    "multivariable_cox",
    "ph_checks",
    "schoenfeld_tests",
    "univariate_table",
]

RESPONSE_FACTOR = "short_term_response"


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


def km_overall(time: np.ndarray, event: np.ndarray) -> pd.DataFrame:
    """Median with its 95% CI, as R's survfit gives it, and landmark rates with 95% log-log Greenwood CIs."""
    median, low, high = km_median(time, event)
    rows = [{"figure": "median (months)", "estimate": median, "lower 95%": low, "upper 95%": high}]
    for m in LANDMARKS:
        s, lo, hi = km_at(time, event, m)
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
        rates, median = km_summary(time[mask], event[mask], LANDMARKS)
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


def competing_risks(data: pd.DataFrame) -> pd.DataFrame:
    """Aalen-Johansen cumulative incidence of local failure beside 1 − KM at the landmarks."""
    cr = local_failure_competing(data)
    aj_t, aj_cif = aalen_johansen(cr["time"].to_numpy(), cr["event_type"].to_numpy(), cause=1)
    km, _ = km_summary(data["lc_months"].to_numpy(float), data["lc_event"].to_numpy(bool), LANDMARKS)
    rows = []
    for m, surv in zip(LANDMARKS, km, strict=True):
        c = float(step_values(aj_t, aj_cif, np.array([m]))[0])
        one_minus_km = 1 - float(surv)
        rows.append(
            {
                "month": m,
                "cumulative incidence (AJ) %": 100 * c,
                "1 − KM %": 100 * one_minus_km,
                "KM overstates by (points)": 100 * (one_minus_km - c),
            }
        )
    return pd.DataFrame(rows)
