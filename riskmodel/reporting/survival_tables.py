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

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from riskmodel.cohort import local_failure_competing, survival_data
from riskmodel.cohort.endpoints import RESPONSE_LANDMARK_MONTHS, Endpoint
from riskmodel.cohort.reconstruction.study import FACTOR_COLUMNS, LANDMARKS, groupings
from riskmodel.errors import UserInputError
from riskmodel.features import ClinicalFeatures
from riskmodel.features.safe_harbor import shown_value
from riskmodel.models import CoxPH
from riskmodel.reporting.competing_section import CifGrouping
from riskmodel.stats import (
    PHTest,
    Transform,
    aalen_johansen,
    km_at,
    km_median,
    km_summary,
    logrank_chi2,
    ph_test,
    step_values,
    survival_array,
)

__all__ = [
    "AS_PUBLISHED",
    "LANDMARKED",
    "PH_TRANSFORMS",
    "characteristics",
    "cif_groupings",
    "competing_design",
    "competing_risks",
    "km_overall",
    "multivariable_cox",
    "ph_checks",
    "ph_residuals",
    "schoenfeld_tests",
    "univariate_table",
]

RESPONSE_FACTOR = "short_term_response"


def characteristics(data: pd.DataFrame) -> pd.DataFrame:
    """n (%) for categories, median (range) for numbers (an age of 90 or more shown as 90+)."""
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
            age = col == "age_years"  # over 89 shown as 90+ (HIPAA Safe Harbor)
            low, mid, high = (shown_value(x, age=age) for x in (v.min(), v.median(), v.max()))
            rows.append(
                {
                    "characteristic": col,
                    "value": f"{mid} ({low}-{high})",
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


def _study_design(
    data: pd.DataFrame, endpoint: Endpoint, competing: bool = False
) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The study's multivariable design (D90 >= 110 Gy, CR+PR) from the 3-month landmark.

    Returns the covariates (the ``published`` feature set), the target (``competing``: the
    competing-risks target, fields event, time, cause), and how many patients were left out for
    lack of a recorded response.
    """
    if "response_3mo" not in data.columns or data["response_3mo"].isna().all():
        raise UserInputError("the multivariable model needs response_3mo, which this cohort does not have")
    known = data[data["response_3mo"].notna()]
    sd = survival_data(
        known, endpoint, landmark_months=RESPONSE_LANDMARK_MONTHS, feature_columns=["response_3mo"], competing=competing
    )
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


def competing_design(data: pd.DataFrame, endpoint: Endpoint) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The multivariable model's design for the competing-risks models: the same covariates from
    the same 3-month landmark, with the competing-risks time and cause (0, 1, 2) of ``endpoint``."""
    X, y, _ = _study_design(data, endpoint, competing=True)
    return X, y["time"].astype(float), y["cause"].astype(int)


def cif_groupings(data: pd.DataFrame, endpoint: Endpoint, cutoffs: dict[str, float] | None = None) -> list[CifGrouping]:
    """The univariate table's groupings for CIF curves and Gray's test, with its time-origin rule:
    the response from the 3-month landmark (and, for reference, from the implant as published),
    every other factor from the implant. Curves are drawn for D90, the response and the stages."""
    out = []
    for factor, group_of in groupings(cutoffs).items():
        column = FACTOR_COLUMNS[factor]
        if column not in data.columns:
            continue
        known = data[data[column].notna()]
        plot = factor in CIF_FIGURE_FACTORS
        if factor == RESPONSE_FACTOR:
            sd = survival_data(
                known,
                endpoint,
                landmark_months=RESPONSE_LANDMARK_MONTHS,
                feature_columns=["response_3mo"],
                competing=True,
            )
            out.append(_grouping(factor + LANDMARKED, sd.y, np.asarray(group_of(sd.X)), plot))
            factor, plot = factor + AS_PUBLISHED, False
        sd = survival_data(known, endpoint, competing=True)
        out.append(_grouping(factor, sd.y, np.asarray(group_of(sd.X)), plot))
    return out


CIF_FIGURE_FACTORS = ("d90_gy", RESPONSE_FACTOR, "t_stage", "n_stage", "m_stage")


def _grouping(label: str, y: np.ndarray, groups: np.ndarray, plot: bool) -> CifGrouping:
    return CifGrouping(label, y["time"].astype(float), y["cause"].astype(int), groups.astype(str), plot)


PH_TRANSFORMS: tuple[Transform, ...] = ("km", "rank")
PH_VERDICT_TRANSFORM: Transform = "km"  # R's default; the rank columns are shown beside it


def _ph_fit(design: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Covariate names, X, time, event and riskmodel's unpenalised Cox (Efron) coefficients."""
    names = [c for c in design.columns if c not in ("T", "E")]
    time = design["T"].to_numpy(float)
    event = design["E"].to_numpy(bool)
    beta = CoxPH(penalty=0).fit(design[names], survival_array(event, time)).coef_
    return names, design[names].to_numpy(float), time, event, beta


def schoenfeld_tests(design: pd.DataFrame) -> pd.DataFrame:
    """Per-covariate and global tests of proportional hazards, as R's ``cox.zph`` (survival ≥ 3.0).

    ``design`` holds the covariates and columns ``T`` and ``E``. The score test for adding β·g(t)
    terms (:func:`riskmodel.stats.ph_test`) with g the KM transform (``χ² (km)``, R's default,
    which the verdict reads) and the rank transform (``χ² (rank)``) side by side: with few events
    they can disagree, and a reader should see both.
    """
    names, X, time, event, beta = _ph_fit(design)
    columns: dict[str, Any] = {"covariate": [*names, "GLOBAL"]}
    for transform in PH_TRANSFORMS:
        result = ph_test(X, time, event, beta, transform=transform)
        columns["df"] = [*([1] * len(names)), result.global_df]
        columns[f"χ² ({transform})"] = [*result.chisq, result.global_chisq]
        columns[f"p ({transform})"] = [*result.p, result.global_p]
    table = pd.DataFrame(columns)
    table["verdict"] = np.where(
        table[f"p ({PH_VERDICT_TRANSFORM})"] < 0.05,
        "evidence the effect changes over time: read the HR as an average",
        "no evidence against proportional hazards (the test has little power at this n)",
    )
    return table


def ph_checks(data: pd.DataFrame, endpoint: Endpoint) -> pd.DataFrame:
    """Schoenfeld tests (per covariate and global) for the multivariable model, from the 3-month landmark."""
    X, y, _ = _study_design(data, endpoint)
    return schoenfeld_tests(X.assign(T=y["time"], E=y["event"]))


def ph_residuals(data: pd.DataFrame, endpoint: Endpoint, transform: Transform = PH_VERDICT_TRANSFORM) -> PHTest:
    """The multivariable model's PH test with its scaled Schoenfeld residuals, for the β(t) plot.

    The covariates are in the order of :func:`ph_checks`' rows.
    """
    X, y, _ = _study_design(data, endpoint)
    _, matrix, time, event, beta = _ph_fit(X.assign(T=y["time"], E=y["event"]))
    return ph_test(matrix, time, event, beta, transform=transform)


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
