"""The multivariable Cox model of a declared cohort's covariates, and its proportional-hazards tests.

Each covariate enters as the experiment declares it (:class:`riskmodel.features.DeclaredFeatures`:
linear, log, restricted cubic spline, threshold; categorical levels against the reference; a
missing-indicator flag under ``missing: indicator``); the fit is unpenalised, with Efron ties, as
R's ``coxph``.

When a covariate declared ``missing: impute`` is missing for some patients, the table is pooled
over multiple imputations by Rubin's rules (:func:`riskmodel.models.pooled_hazard_ratios`, as
``mice::pool``): the imputations are the chained equations of
:class:`riskmodel.models.imputation.MultipleImputationSurvival`, with the event indicator and the
Nelson-Aalen cumulative hazard among the predictors, seeded by the experiment. There is no pooled
likelihood-ratio test, so none is shown. The proportional-hazards tests (R's ``cox.zph``, survival
≥ 3.0, one test per covariate over all its columns as ``terms = TRUE``) are then computed on the
complete cases, and the report says so with the number of patients used.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from riskmodel.cohort import Cohort, survival_data
from riskmodel.cohort.declaration import CohortDeclaration, CovariateDeclaration
from riskmodel.config import ExperimentConfig
from riskmodel.errors import RiskModelError, RiskModelWarning, UserInputError
from riskmodel.features import DeclaredEncoding, DeclaredFeatures, DeclaredInputs
from riskmodel.models import CoxPH, MultipleImputationSurvival, pooled_hazard_ratios
from riskmodel.reporting.competing_section import CifGrouping, CompetingInputs
from riskmodel.reporting.declared_tables import Grouping
from riskmodel.stats import PHTest, ph_term_tests, ph_test

__all__ = ["DeclaredCox", "cox_design", "declared_competing", "fit_imputed", "multivariable_declared", "ph_table"]

PH_TRANSFORMS = ("km", "rank")


@dataclass
class DeclaredCox:
    """The multivariable model of one endpoint: its table, how it was fitted, and its PH tests."""

    table: pd.DataFrame  # feature, covariate, hr, hr_lower_95, hr_upper_95, p (+ df, fmi when pooled)
    method: str
    tests: dict[str, float]
    ph: pd.DataFrame | None = None
    residuals: PHTest | None = None
    ph_columns: list[str] = field(default_factory=list)
    ph_patients: int = 0
    notes: list[str] = field(default_factory=list)


def cox_design(
    X: pd.DataFrame, declaration: CohortDeclaration, covariates: Sequence[str]
) -> tuple[pd.DataFrame, list[list[int]]]:
    """The encoded design of complete rows and its terms: each covariate's columns (indices), in order.

    The columns of a covariate are contiguous (each is encoded in turn); their number comes from
    encoding that covariate alone on the same rows, so no column name is parsed.
    """
    decl = declaration.model_dump(mode="json")
    features = DeclaredFeatures(decl, list(covariates)).fit(X)
    design = pd.DataFrame(features.transform(X), columns=features.get_feature_names_out(), index=X.index)
    terms, start = [], 0
    for name in covariates:
        width = len(DeclaredFeatures(decl, [name]).fit(X).get_feature_names_out())
        terms.append(list(range(start, start + width)))
        start += width
    if start != design.shape[1]:
        raise AssertionError(f"terms cover {start} of {design.shape[1]} design columns")
    return design, terms


def _caught(fit: Any) -> tuple[Any, bool]:
    """``fit()``'s result, and whether a non-convergence warning was raised on the way."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RiskModelWarning)
        result = fit()
    return result, any(issubclass(w.category, RiskModelWarning) for w in caught)


def _owners(columns: Sequence[str], terms: Sequence[Sequence[int]], covariates: Sequence[str]) -> list[str]:
    owner = {j: name for name, term in zip(covariates, terms, strict=True) for j in term}
    return [owner[j] for j in range(len(columns))]


def fit_imputed(
    X: pd.DataFrame,
    y: np.ndarray,
    declaration: CohortDeclaration,
    covariates: Sequence[str],
    impute: Sequence[CovariateDeclaration],
    *,
    n_imputations: int,
    n_iter: int,
    seed: int,
) -> tuple[MultipleImputationSurvival, pd.DataFrame]:
    """Unpenalised Cox fits on ``n_imputations`` completed copies of the covariates, and the inputs
    they were imputed from (``completed_training(inputs, y)`` replays the completed copies)."""
    decl = declaration.model_dump(mode="json")
    inputs = DeclaredInputs(decl, list(covariates)).set_output(transform="pandas").fit_transform(X)
    codes = {c.name: (2 if c.kind == "binary" else len(c.code_levels)) for c in impute if c.kind != "numeric"}
    mi = MultipleImputationSurvival(
        DeclaredEncoding(decl),
        CoxPH(penalty=0),
        impute=[c.name for c in impute],
        codes=codes,
        n_imputations=n_imputations,
        n_iter=n_iter,
        random_state=seed,
    )
    return mi.fit(inputs, y), inputs


def multivariable_declared(
    X: pd.DataFrame,
    y: np.ndarray,
    declaration: CohortDeclaration,
    covariates: Sequence[str],
    *,
    n_imputations: int = 10,
    n_iter: int = 10,
    seed: int = 0,
) -> DeclaredCox:
    """The multivariable Cox model of ``covariates`` on (``X``, ``y``); see the module."""
    chosen = [declaration.covariate(name) for name in covariates]
    impute = [c for c in chosen if c.missing == "impute" and X[c.name].isna().any()]
    complete = X[[c.name for c in impute]].notna().all(axis=1).to_numpy() if impute else np.ones(len(X), bool)
    events = int(y[complete]["event"].sum())
    if events < 2:
        shown = f"{events} event{'s' if events != 1 else ''}"
        raise UserInputError(f"{shown} among the complete cases; a Cox model needs at least 2")
    design, terms = cox_design(X[complete], declaration, covariates)
    result = _pooled(X, y, declaration, covariates, impute, n_imputations, n_iter, seed) if impute else None
    model, diverged = _caught(lambda: CoxPH(penalty=0).fit(design, y[complete]))
    if result is None:
        result = _complete_data(model, design, y[complete], terms, covariates)
    if diverged:
        result.notes.append("the complete-case fit did not converge (a covariate separates the events?)")
    if not model.constant_.any():
        result.ph = ph_table(design, y[complete], model.coef_, terms, covariates)
        result.residuals = ph_test(
            design.to_numpy(float), y[complete]["time"], y[complete]["event"], model.coef_, transform="km"
        )
        result.ph_columns = [str(c) for c in design.columns]
    else:
        constant = ", ".join(str(c) for c, k in zip(design.columns, model.constant_, strict=True) if k)
        result.notes.append(f"{constant} is the same for every patient analysed: no PH test")
    result.ph_patients = int(complete.sum())
    return result


def _complete_data(
    model: CoxPH, design: pd.DataFrame, y: np.ndarray, terms: list[list[int]], covariates: Sequence[str]
) -> DeclaredCox:
    beta = model.coef_
    wald = float(beta @ model.information_ @ beta)
    lr = 2 * (model.log_likelihood_ - model.log_likelihood_null_)
    events = int(y["event"].sum())
    table = model.hazard_ratios_.reset_index()
    table.insert(1, "covariate", _owners(list(design.columns), terms, covariates))
    tests = {
        "patients": len(design),
        "events": events,
        "parameters": len(beta),
        "events_per_parameter": events / len(beta),
        "wald_chi2": wald,
        "wald_p": float(stats.chi2.sf(wald, len(beta))),
        "lr_chi2": lr,
        "lr_p": float(stats.chi2.sf(lr, len(beta))),
    }
    method = f"complete data: every one of the {len(design)} patients has every covariate (Efron ties)"
    return DeclaredCox(table[["feature", "covariate", "hr", "hr_lower_95", "hr_upper_95", "p"]], method, tests)


def _pooled(
    X: pd.DataFrame,
    y: np.ndarray,
    declaration: CohortDeclaration,
    covariates: Sequence[str],
    impute: Sequence[CovariateDeclaration],
    n_imputations: int,
    n_iter: int,
    seed: int,
) -> DeclaredCox:
    (mi, inputs), diverged = _caught(
        lambda: fit_imputed(
            X, y, declaration, covariates, impute, n_imputations=n_imputations, n_iter=n_iter, seed=seed
        )
    )
    names = [str(n) for n in mi.encodings_[0].get_feature_names_out()]
    pooled = pooled_hazard_ratios(mi.models_)
    pooled.index = pd.Index(names, name="feature")
    table = pooled.reset_index()
    table.insert(1, "covariate", _owners(names, _imputed_terms(mi, inputs, y, X, declaration, covariates), covariates))
    incomplete = int(X[[c.name for c in impute]].isna().any(axis=1).sum())
    events = int(y["event"].sum())
    tests = {
        "patients": len(X),
        "events": events,
        "parameters": len(names),
        "events_per_parameter": events / len(names),
        "imputations": n_imputations,
        "patients_with_an_imputed_value": incomplete,
    }
    method = (
        f"pooled over {n_imputations} imputations by Rubin's rules (t intervals on Barnard-Rubin df; fmi = "
        f"fraction of missing information): all {len(X)} patients, {incomplete} of them with an imputed "
        f"{', '.join(c.name for c in impute)}"
    )
    notes = ["an imputed fit did not converge (a covariate separates the events?)"] if diverged else []
    if n_imputations < 100 * incomplete / len(X):
        notes.append(
            f"{100 * incomplete / len(X):.0f}% of patients have an imputed value but there are {n_imputations} "
            "imputations; more (imputation.n_imputations) give more reproducible standard errors"
        )
    columns = ["feature", "covariate", "hr", "hr_lower_95", "hr_upper_95", "p", "df", "fmi"]
    return DeclaredCox(table[columns], method, tests, notes=notes)


def _imputed_terms(
    mi: MultipleImputationSurvival,
    inputs: pd.DataFrame,
    y: np.ndarray,
    X: pd.DataFrame,
    declaration: CohortDeclaration,
    covariates: Sequence[str],
) -> list[list[int]]:
    """Each covariate's columns in the pooled design: its inputs encoded alone on a completed copy."""
    decl = declaration.model_dump(mode="json")
    completed = mi.completed_training(inputs, y)[0]
    terms, start = [], 0
    for name in covariates:
        own = [str(n) for n in DeclaredInputs(decl, [name]).fit(X).get_feature_names_out()]
        width = len(DeclaredEncoding(decl, own).fit(completed[own]).get_feature_names_out())
        terms.append(list(range(start, start + width)))
        start += width
    return terms


def ph_table(
    design: pd.DataFrame, y: np.ndarray, beta: np.ndarray, terms: Sequence[Sequence[int]], covariates: Sequence[str]
) -> pd.DataFrame:
    """One proportional-hazards test per covariate (all its columns) and the global one, with km
    time (R's default, which the verdict reads) and rank time beside it."""
    X, time, event = design.to_numpy(float), y["time"], y["event"]
    table: dict[str, Any] = {"covariate": [*covariates, "GLOBAL"]}
    for transform in PH_TRANSFORMS:
        result = ph_term_tests(X, time, event, beta, terms, transform=transform)  # type: ignore[arg-type]
        table["df"] = [*result.df, result.global_df]
        table[f"χ² ({transform})"] = [*result.chisq, result.global_chisq]
        table[f"p ({transform})"] = [*result.p, result.global_p]
    frame = pd.DataFrame(table)
    few = int(event.sum()) < 10 * X.shape[1]  # under 10 events per parameter the test can miss a lot
    frame["verdict"] = np.where(
        frame["p (km)"] < 0.05,
        "evidence the effect changes over time: read the HR as an average",
        "no evidence against proportional hazards" + (" (little power with this few events)" if few else ""),
    )
    return frame


def declared_competing(
    cohort: Cohort, config: ExperimentConfig, grouping: Sequence[Grouping], endpoint: str, caution: str
) -> CompetingInputs:
    """The competing-risks section of a declared endpoint: its competing-risks view from the same
    time origin (or landmark) as its Kaplan-Meier sections, the univariate groupings and the centre,
    and the multivariable design with the declared encodings on the complete cases."""
    declaration = config.cohort if cohort.declaration is None else cohort.declaration
    assert declaration is not None  # a declared report always has one
    decl = declaration.endpoint(endpoint)
    covariates = [g.covariate.name for g in grouping]
    sd = survival_data(
        cohort, endpoint, landmark_months=config.landmark_months, feature_columns=covariates, competing=True
    )
    time, cause = sd.y["time"].astype(float), sd.y["cause"].astype(int)
    groups = []
    for g in grouping:
        labels = g.labels(sd.X[g.covariate.name])
        known = labels.notna().to_numpy()
        groups.append(CifGrouping(g.covariate.name, time[known], cause[known], labels[known].to_numpy(str)))
    if "centre" in sd.X.columns and sd.X["centre"].nunique() > 1:
        known = sd.X["centre"].notna().to_numpy()
        groups.append(CifGrouping("centre", time[known], cause[known], sd.X["centre"][known].to_numpy(str)))
    complete = sd.X[config.covariates].notna().all(axis=1).to_numpy()
    notes = []
    if not complete.all():
        notes.append(f"The Fine-Gray and cause-specific Cox models use the {int(complete.sum())} complete cases")
    try:
        design: tuple[pd.DataFrame, np.ndarray, np.ndarray] | str = (
            cox_design(sd.X[complete], declaration, config.covariates)[0],
            time[complete],
            cause[complete],
        )
    except RiskModelError as exc:
        design = str(exc)
    landmark = config.landmark_months
    other = decl.competing_endpoint or "codes " + ", ".join(map(str, decl.competing_codes))
    return CompetingInputs(
        endpoint=endpoint,
        label=decl.label or endpoint.upper(),
        time=time,
        cause=cause,
        groupings=groups,
        names=(decl.label or endpoint.upper(), f"competing event ({other})"),
        origin=f"the {landmark:g}-month landmark, as every analysis of this report"
        if landmark
        else f"{declaration.time_origin}, as the Kaplan-Meier sections",
        design=design,
        horizons=config.horizons,
        rules=[str(r) for r in cohort.competing_rules if r.endpoint == endpoint],
        caution=caution,
        notes=notes,
    )
