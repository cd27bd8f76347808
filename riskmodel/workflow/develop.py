"""Developing one model family on one endpoint: cross-validate, fit, validate, explain.

:func:`develop_family` is the per-family step of ``riskmodel train``: it returns everything a run
records (:class:`Developed`), and nothing of it is per-patient except the fitted model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from riskmodel.config import ExperimentConfig
from riskmodel.errors import NUMERICAL_FAILURES, RiskModelWarning, is_own_error
from riskmodel.explain import explain, mean_abs, permutation_importance
from riskmodel.features import ClinicalFeatures
from riskmodel.models import CoxPH, MultipleImputationSurvival, pooled_hazard_ratios
from riskmodel.models.competing import CauseSpecificCox
from riskmodel.models.forest import LARGE_COHORT
from riskmodel.models.registry import SPECS, build_family
from riskmodel.reporting.shap_global import global_figures
from riskmodel.scoring import RiskModel
from riskmodel.stats import survival_array
from riskmodel.stats.competing import fine_gray
from riskmodel.stats.samplesize import SampleSize
from riskmodel.validation import (
    CrossValidation,
    InSample,
    Validation,
    cross_validate,
    in_sample_calibration,
    validate,
)
from riskmodel.validation.crossval import holdout_validate
from riskmodel.workflow.plan import Scheme, scheme_for
from riskmodel.workflow.prepare import PreparedEndpoint, make_pipeline

__all__ = [
    "EXPLAIN_SAMPLE",
    "Developed",
    "GlobalExplanation",
    "competing_tables",
    "develop_family",
    "unpenalised_table",
]

EXPLAIN_SAMPLE = 1000  # patients behind the global explanations of a larger cohort
PARALLEL_FROM_UNITS = 4  # fewer fits than this do not pay for sending the cohort to another process
# above SHAP_LARGE_COHORT patients, SHAP explains SHAP_SAMPLE_LARGE of them: TreeSHAP's cost grows with
# the leaves of each tree (√n patients a tree), and a competing model's exact values with 2^p predictions
SHAP_LARGE_COHORT, SHAP_SAMPLE_LARGE = 20_000, 200


@dataclass
class GlobalExplanation:
    """Global explanations of one fitted model: aggregates only (no per-patient SHAP array)."""

    metrics: dict[str, float]
    importance: pd.DataFrame
    figures: dict[str, bytes]
    report_html: str = ""  # the model report's Explanations section (reporting/shap_global.py)


@dataclass
class Developed:
    """One developed (endpoint, family): the fitted model and everything its run records."""

    family: str
    fitted: Pipeline
    model: RiskModel
    cv: CrossValidation
    validation: Validation | None
    in_sample: InSample
    explained: GlobalExplanation
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)
    scheme: Scheme | None = None  # how it was validated (the evaluation plan's)
    # competing endpoints, Cox family: unpenalised cause-specific HR tables (both causes) and the
    # Fine-Gray subdistribution HR table of the event of interest, by artifact file name
    competing_tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def features(self) -> ClinicalFeatures:
        """The fitted feature step."""
        features: ClinicalFeatures = self.fitted.named_steps["features"]
        return features

    @property
    def n_parameters(self) -> int:
        """Model parameters: one per model feature (after the encoding, also under imputation)."""
        encodings = getattr(self.model.estimator, "encodings_", None)
        if encodings:
            return len(encodings[0].get_feature_names_out())
        return len(self.features.get_feature_names_out())


def develop_family(
    config: ExperimentConfig,
    prepared: PreparedEndpoint,
    family: str,
    params: dict[str, Any],
    size: SampleSize,
    tick: Callable[[], None],
    scheme: Scheme | None = None,
    n_jobs: int | None = None,
) -> Developed:
    """Cross-validate (or hold out), fit on all patients, bootstrap-validate, calibrate and explain one family.

    ``scheme``: the family's validation from the evaluation plan (:mod:`riskmodel.workflow.plan`);
    None takes the plan's rule for this endpoint's events. ``n_jobs``: processes for the folds and
    resamples (None: every core for a small cohort's, :func:`local_jobs`; 1 on a worker process of
    :mod:`riskmodel.workflow.families`); the results are the same whatever it is."""
    sd, window, label = prepared.data, prepared.window, f"{prepared.endpoint.upper()} {family}"
    if scheme is None:
        scheme = scheme_for(config, prepared.endpoint, family, int(sd.y["event"].sum()))
    pipe = make_pipeline(config, build_family(family, params, config.seed, competing=prepared.competing))
    cv, fitted, validation, notes = internal_validation(config, prepared, pipe, family, scheme, tick, n_jobs)
    features: ClinicalFeatures = fitted.named_steps["features"]
    model = RiskModel.from_training(
        endpoint=prepared.endpoint,
        family=family,
        experiment=config.name,
        landmark_months=config.landmark_months,
        horizons=prepared.prediction_horizons,
        features=features,
        estimator=fitted.named_steps["model"],
        X=sd.X,
        risk_cutoffs=config.risk_group_cutoffs,
        reliable_until=window.reliable_until,
        min_at_risk=window.min_at_risk,
        declaration=config.cohort,
        size=size,
    )
    if isinstance(model.estimator, CoxPH):
        model.hazard_ratios = unpenalised_table(features, sd.X, sd.y)
    elif isinstance(model.estimator, CauseSpecificCox):
        # the classical table of a competing endpoint: the event of interest's cause-specific HRs
        # (competing events censored); both causes' and the Fine-Gray table are competing_tables
        model.hazard_ratios = unpenalised_table(features, sd.X, survival_array(sd.y["event"], sd.y["time"]))
        note = model.hazard_ratios.attrs.get("note", "")
        model.hazard_ratios.attrs["method"] = "cause-specific hazard ratios of the event of interest (competing "
        model.hazard_ratios.attrs["method"] += "events censored)"
        model.hazard_ratios.attrs["note"] = note
    elif isinstance(model.estimator, MultipleImputationSurvival) and isinstance(
        model.estimator.estimator, CoxPH | CauseSpecificCox
    ):
        inputs = features.transform(sd.X)  # DeclaredInputs is set to give a DataFrame (make_pipeline)
        # with competing risks: the event of interest's cause-specific table (competing events censored)
        model.hazard_ratios = pooled_table(
            model.estimator, pd.DataFrame(inputs), survival_array(sd.y["event"], sd.y["time"])
        )
        if prepared.competing:
            model.hazard_ratios.attrs["method"] = (
                "cause-specific hazard ratios of the event of interest (competing events censored), "
                + model.hazard_ratios.attrs.get("method", "")
            )
    tables = {}
    if prepared.competing and isinstance(model.estimator, CauseSpecificCox):
        tables = competing_tables(features, sd.X, sd.y)
    in_sample = in_sample_calibration(fitted, sd.X, sd.y, window.horizons, config.seed)
    explained = global_explanation(fitted, sd.X, sd.y, label, config.seed)
    metrics = {
        **cv_metrics(cv),
        **bootstrap_metrics(validation),
        **in_sample.metrics,
        **explained.metrics,
        "riley_expected_shrinkage": size.expected_shrinkage,
        "riley_minimum_n": float(size.minimum_n),
        "events_per_parameter": size.epv,
    }
    return Developed(family, fitted, model, cv, validation, in_sample, explained, metrics, notes, scheme, tables)


def internal_validation(
    config: ExperimentConfig,
    prepared: PreparedEndpoint,
    pipe: Pipeline,
    family: str,
    scheme: Scheme,
    tick: Callable[[], None],
    n_jobs: int | None = None,
) -> tuple[CrossValidation, Pipeline, Validation | None, list[str]]:
    """The scheme's cross-validation (or held-out split), the final fit and the bootstrap, if any
    (``n_jobs``: their processes; None: :func:`local_jobs` for the folds, every core for 20 or more resamples)."""
    sd, window, label = prepared.data, prepared.window, f"{prepared.endpoint.upper()} {family}"
    notes: list[str] = []
    if scheme.n_splits:
        cv = cross_validate(
            pipe,
            sd.X,
            sd.y,
            window,
            n_splits=scheme.n_splits,
            n_repeats=scheme.n_repeats,
            seed=config.seed,
            n_jobs=local_jobs(len(sd.y), scheme.n_splits * scheme.n_repeats) if n_jobs is None else n_jobs,
            progress=tick,
        )
    else:
        cv = holdout_validate(pipe, sd.X, sd.y, window, test_fraction=scheme.holdout, seed=config.seed, progress=tick)
    if scheme.n_splits and cv.n_splits < scheme.n_splits:
        notes.append(
            f"{label}: {cv.n_splits}-fold instead of {scheme.n_splits}-fold cross-validation, because there are "
            "fewer events or censored patients than folds"
        )
    fitted = pipe.fit(sd.X, sd.y)
    tick()
    validation = None
    if scheme.bootstrap:
        validation = validate(
            pipe,
            sd.X,
            sd.y,
            window,
            n_resamples=scheme.bootstrap,
            seed=config.seed,
            n_jobs=(-1 if scheme.bootstrap >= 20 else 1) if n_jobs is None else n_jobs,
            progress=tick,
            fitted=fitted,
        )
        if SPECS[family].memorises_resamples:
            notes.append(
                f"{label}: the bootstrap optimism correction under-corrects tree ensembles (each resample's "
                "patients are ~63 % of the original data, which the trees memorise); trust the "
                "cross-validated C more for this family"
            )
    elif SPECS[family].memorises_resamples and config.evaluation.plan == "auto":
        notes.append(f"{label}: {scheme.describe_bootstrap()}")
    return cv, fitted, validation, notes


def local_jobs(n_patients: int, n_units: int) -> int:
    """Processes for a small cohort's cross-validation folds: every core (-1) from
    :data:`PARALLEL_FROM_UNITS` folds below :data:`~riskmodel.models.forest.LARGE_COHORT` patients,
    where each fit runs on one core; otherwise one, and the families' own fits use the cores
    (``n_jobs`` of the forest and of xgboost) without a copy of the cohort in every process."""
    return -1 if n_units >= PARALLEL_FROM_UNITS and n_patients < LARGE_COHORT else 1


def cv_metrics(cv: CrossValidation) -> dict[str, float]:
    """``<metric>_mean``, ``_sd`` and ``_folds`` (folds with a value), and the failed fits."""
    summary = cv.summary()
    metrics = {f"{m}_{stat}": float(v) for stat in ("mean", "sd") for m, v in summary[stat].astype(float).items()}
    metrics.update({f"{m}_folds": float(v) for m, v in summary["folds_with_value"].astype(float).items()})
    metrics["cv_failed_fits"] = float(cv.failed_fits)
    return metrics


def bootstrap_metrics(validation: Validation | None) -> dict[str, float]:
    """``<metric>_apparent``, ``_optimism``, ``_corrected``, ``_corrected_ci_low/high``, and the counts."""
    if validation is None:
        return {}
    out: dict[str, float] = {}
    for metric, row in validation.table.iterrows():
        out[f"{metric}_apparent"] = float(row["apparent"])
        out[f"{metric}_optimism"] = float(row["optimism"])
        out[f"{metric}_corrected"] = float(row["corrected"])
        out[f"{metric}_corrected_ci_low"] = float(row["ci_low"])
        out[f"{metric}_corrected_ci_high"] = float(row["ci_high"])
    out["validation_resamples"] = float(validation.n_resamples)
    out["validation_failed_resamples"] = float(validation.failed)
    return out


def unpenalised_table(features: ClinicalFeatures, X: pd.DataFrame, y: Any) -> pd.DataFrame:
    """HR, 95% CI and p of the unpenalised Cox model on the same design (the classical table).

    A feature that is constant in these patients has no estimable coefficient: it is fitted
    without, and its row says so, so one such column never wipes out the whole table.
    """
    design = pd.DataFrame(features.transform(X), columns=features.get_feature_names_out(), index=X.index)
    constant = [c for c in design.columns if design[c].nunique(dropna=False) <= 1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RiskModelWarning)
        table = CoxPH(penalty=0).fit(design.drop(columns=constant), y).hazard_ratios_
    notes = ["the unpenalised fit did not converge (separation?)"] if caught else []
    if constant:
        notes.append(f"constant in these patients, not estimable: {', '.join(map(str, constant))}")
        table = table.reindex(list(design.columns))
    table.attrs["note"] = "; ".join(notes)
    return table


def competing_tables(features: ClinicalFeatures, X: pd.DataFrame, y: Any) -> dict[str, pd.DataFrame]:
    """The classical tables of a competing endpoint on the model's design, unpenalised: the
    cause-specific Cox HRs of both causes (``CauseSpecificCox(penalty=0)``, as R's ``coxph`` per
    cause) and the Fine-Gray subdistribution HRs of the event of interest
    (:func:`riskmodel.stats.competing.fine_gray`, as ``cmprsk::crr``). A column constant in these
    patients is fitted without (its row is empty, as :func:`unpenalised_table`'s); a table whose fit
    fails numerically (separation, collinearity) is left out."""
    names = [str(n) for n in features.get_feature_names_out()]
    design = np.asarray(features.transform(X), dtype=float)
    keep = np.ptp(design, axis=0) > 0
    kept = [n for n, k in zip(names, keep, strict=True) if k]
    Z = design[:, keep]

    def full(table: pd.DataFrame) -> pd.DataFrame:
        return table.set_index("term").reindex(names).rename_axis("term").reset_index()

    out: dict[str, pd.DataFrame] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RiskModelWarning)
        try:
            csc = CauseSpecificCox(penalty=0.0).fit(Z, y).hazard_ratio_tables(kept)
            out.update({f"cause_specific_hr_cause_{k}.csv": full(t) for k, t in csc.items()})
        except NUMERICAL_FAILURES as exc:
            if is_own_error(exc):
                raise
        try:
            fit = fine_gray(Z, np.asarray(y["time"], float), np.asarray(y["cause"], int), event=1)
            out["fine_gray_subdistribution_hr.csv"] = full(fit.table(kept))
        except NUMERICAL_FAILURES as exc:
            if is_own_error(exc) and "collinear" not in str(exc):
                raise
    return out


def pooled_table(mi: MultipleImputationSurvival, X: pd.DataFrame, y: Any) -> pd.DataFrame:
    """The unpenalised Cox table over the m completed training sets, pooled by Rubin's rules
    (t-based intervals on Barnard-Rubin df; ``fmi`` says how much each estimate rests on imputation)."""
    fits = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RiskModelWarning)
        for encoding, completed in zip(mi.encodings_, mi.completed_training(X, y), strict=True):
            design = pd.DataFrame(encoding.transform(completed), columns=encoding.get_feature_names_out())
            fits.append(CoxPH(penalty=0).fit(design, y))
    converged = all(fit.converged_ for fit in fits)
    table = pooled_hazard_ratios(fits) if converged else mean_hazard_ratios(fits)
    notes = ["an unpenalised fit did not converge (separation?)"] if caught else []
    imputed = [n for n in mi.impute if n in X.columns]
    incomplete = 100 * float(X[imputed].isna().any(axis=1).mean()) if imputed else 0.0
    if converged and len(fits) < incomplete:
        notes.append(
            f"{incomplete:.0f}% of patients have an imputed value but there are {len(fits)} imputations; raise "
            f"imputation.n_imputations to at least {math.ceil(incomplete)} for reproducible standard errors "
            "(White, Royston & Wood, Stat Med 2011;30:377-99)"
        )
    table.attrs["note"] = "; ".join(notes)
    table.attrs["method"] = (
        f"pooled over {len(fits)} imputations by Rubin's rules (t intervals on Barnard-Rubin df; "
        "fmi = fraction of missing information)"
        if converged
        else f"mean coefficient over {len(fits)} imputations, without intervals: a fit that did not converge "
        "has no valid variance for Rubin's rules"
    )
    return table


def mean_hazard_ratios(fits: list[CoxPH]) -> pd.DataFrame:
    """The pooled table's columns when some unpenalised fit did not converge: the HR of the mean
    coefficient, every interval, test and pooling statistic NaN (as a single non-converged fit's
    table gives its HR without an interval)."""
    coef = np.mean([fit.coef_ for fit in fits], axis=0)
    undefined = ("se", "hr_lower_95", "hr_upper_95", "t", "p", "df", "fmi", "riv")
    blank = dict.fromkeys(undefined, np.full(len(coef), np.nan))
    table = pd.DataFrame({"coef": coef, "hr": np.exp(coef), **blank}, index=fits[0].hazard_ratios_.index)
    table.attrs.update({"penalty": 0.0, "m": len(fits)})
    return table


def global_explanation(fitted: Pipeline, X: pd.DataFrame, y: np.ndarray, label: str, seed: int) -> GlobalExplanation:
    """SHAP of the risk score on the training patients, as plots and mean |SHAP| metrics, and
    permutation importance on Harrell's C with intervals over 20 shuffles.

    Above :data:`EXPLAIN_SAMPLE` patients both use a seeded random sample of that many (TreeSHAP
    of a deep forest costs ~20 ms a patient; a mean |SHAP| is precise long before 100,000). Above
    :data:`SHAP_LARGE_COHORT` patients SHAP uses a seeded :data:`SHAP_SAMPLE_LARGE` of those (a
    100,000-patient forest's trees have ~3× the leaves of a 10,000-patient one's), and the labels
    say how many patients each explanation read.
    """
    rows = np.arange(len(y))
    perm_label = label
    if len(rows) > EXPLAIN_SAMPLE:
        rows = np.sort(np.random.default_rng(seed).choice(rows, EXPLAIN_SAMPLE, replace=False))
        label = perm_label = f"{label} ({EXPLAIN_SAMPLE} sampled patients)"
    shap_rows = rows
    if len(y) > SHAP_LARGE_COHORT:
        shap_rows = np.sort(np.random.default_rng(seed).choice(rows, SHAP_SAMPLE_LARGE, replace=False))
        label = label.replace(f"({EXPLAIN_SAMPLE} sampled", f"({SHAP_SAMPLE_LARGE} sampled")
    explanation = explain(fitted, X.iloc[shap_rows])
    names = list(explanation.feature_names)
    metrics = {f"shap_mean_abs_{name}": float(v) for name, v in mean_abs(explanation).items()}
    data = explanation.data if shap_rows is rows else np.asarray(fitted[:-1].transform(X.iloc[rows]), dtype=float)
    importance = permutation_importance(fitted[-1], data, y[rows], names, seed=seed)
    figures, section = global_figures(
        explanation, X.iloc[shap_rows], fitted[0], importance, label, importance_label=perm_label
    )
    return GlobalExplanation(metrics, importance, figures, section)
