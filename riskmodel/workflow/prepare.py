"""Preparing an experiment's data, shared by ``train``, ``tune`` and every other workflow.

One path from an experiment to model-ready data: load the cohort, apply the landmark, keep the
horizons the follow-up reaches, refuse data no model can learn from, and hold the cohort against
Riley et al.'s minimum sample size. ``tune`` and ``train`` both call :func:`prepare_endpoints`,
so a check made here can never be skipped by one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from riskmodel.cohort import Cohort, bundled_cohort_path, from_frame, load, load_mapping, survival_data
from riskmodel.cohort.contract import column
from riskmodel.cohort.declaration import CohortDeclaration
from riskmodel.cohort.declared import from_frame_declared, load_declared
from riskmodel.cohort.endpoints import ENDPOINTS, SurvivalData
from riskmodel.config import ExperimentConfig
from riskmodel.errors import UserInputError, own_warnings_silenced
from riskmodel.features import (
    FEATURE_BLOCKS,
    ClinicalFeatures,
    DeclaredEncoding,
    DeclaredFeatures,
    DeclaredInputs,
    resolve_blocks,
)
from riskmodel.metrics import EvaluationWindow
from riskmodel.models import CoxPH, SurvivalEstimator
from riskmodel.models.imputation import MultipleImputationSurvival
from riskmodel.models.registry import SPECS, family_names
from riskmodel.stats import survival_array
from riskmodel.stats.samplesize import SampleSize, anticipated_r2, riley_survival

__all__ = [
    "MIN_PATIENTS",
    "PreparedEndpoint",
    "check_trainable",
    "drop_uninformative",
    "feature_columns",
    "flat_params",
    "load_cohort",
    "make_pipeline",
    "override",
    "prepare_endpoints",
    "sample_size",
    "shareable_config",
]

MIN_PATIENTS = 10


@dataclass(frozen=True)
class PreparedEndpoint:
    """One endpoint ready for modelling: its data after the landmark and its evaluation window."""

    endpoint: str
    data: SurvivalData
    window: EvaluationWindow  # τ, the IBS grid and the horizons with enough patients followed

    @property
    def horizons(self) -> list[float]:
        """The experiment's horizons that enough patients reach (the model's horizons)."""
        return list(self.window.horizons)

    @property
    def left_out(self) -> list[float]:
        """The experiment's other horizons."""
        return list(self.window.left_out)

    @property
    def prediction_horizons(self) -> list[float]:
        """The experiment's horizons within the follow-up: a saved model predicts at these, and flags
        those beyond :attr:`EvaluationWindow.reliable_until`."""
        followed = [h for h, n in self.window.left_out.items() if n > 0]
        return sorted({*self.window.horizons, *followed})

    @property
    def competing(self) -> bool:
        """Modelled as competing risks: the target holds the cause (0/1/2) and the models give CIFs."""
        return bool(self.data.competing)

    def notes(self) -> list[str]:
        """What the user should know about this endpoint's data (counts only)."""
        out = []
        if self.competing:
            cause = np.asarray(self.data.y["cause"], dtype=int)
            out.append(
                f"{self.endpoint.upper()}: competing risks (cumulative incidence) from time zero: "
                f"{int((cause == 1).sum())} events of interest, {int((cause == 2).sum())} competing events, "
                f"{int((cause == 0).sum())} censored"
            )
        if self.left_out:
            left = ", ".join(f"{h:g} ({n} followed)" for h, n in self.window.left_out.items())
            out.append(
                f"{self.endpoint.upper()}: horizon(s) {left} months have fewer than {self.window.min_at_risk} "
                f"patients still followed after time zero (longest follow-up {self.data.y['time'].max():.1f} "
                "months): no metric, curve or unflagged prediction is given there"
            )
        if self.data.landmark_months:
            out.append(self.data.describe())
        out.append(f"{self.endpoint.upper()} evaluation window: {self.window.describe()}")
        return out


def load_cohort(config: ExperimentConfig, frame: pd.DataFrame | None = None) -> Cohort:
    """The experiment's cohort: its data file (or ``frame``, a table already in memory) read
    through its declaration, or the bundled cohort through the study's contract."""
    outcomes = [f"{ep}_{part}" for ep in config.endpoints for part in ("months", "event")]
    if config.cohort is not None:
        if frame is not None:
            return from_frame_declared(
                frame, config.cohort, source="<DataFrame>", covariates=config.covariates, endpoints=config.endpoints
            )
        if not config.data.path:
            raise UserInputError("data.path (or --data): a declared cohort needs its data file")
        return load_declared(config.data.path, config.cohort, covariates=config.covariates, endpoints=config.endpoints)
    required = sorted({"patient_id", *feature_columns(config), *outcomes})
    if frame is not None:
        mapping = load_mapping(config.data.mapping) if config.data.mapping else None
        return from_frame(
            frame, source="<DataFrame>", mapping=mapping, response_rule=config.data.response_rule, required=required
        )
    return load(
        config.data.path or bundled_cohort_path(),
        mapping=config.data.mapping,
        response_rule=config.data.response_rule,
        required=required,
    )


def feature_columns(config: ExperimentConfig) -> list[str]:
    """The cohort columns the experiment's features read."""
    if config.cohort is not None:
        return config.covariates
    return sorted({c for b in resolve_blocks(config.features.set) for c in FEATURE_BLOCKS[b]})


def drop_uninformative(config: ExperimentConfig, cohort: Cohort) -> tuple[ExperimentConfig, list[str]]:
    """A declared cohort without its constant or all-missing covariates, and a note naming each.

    No model can learn from such a column, and an unpenalised Cox fit would lose its whole
    hazard-ratio table to the singular column; it is left out with a warning instead.
    """
    if config.cohort is None:
        return config, []
    notes, kept = [], []
    for name in config.covariates:
        values = cohort.data[name].dropna()
        if values.empty:
            notes.append(f"covariate {name} is missing for every patient: left out of the models")
        elif values.nunique() == 1:
            notes.append(f"covariate {name} has the same value for every patient: left out of the models")
        else:
            kept.append(name)
    if not kept:
        raise UserInputError(f"{cohort.source}: no declared covariate varies; no model can be fitted")
    if not notes:
        return config, []
    features = config.features.model_copy(update={"covariates": kept})
    return config.model_copy(update={"features": features}), notes


def make_pipeline(config: ExperimentConfig, estimator: SurvivalEstimator) -> Pipeline:
    """The experiment's features followed by ``estimator``: the unit that is validated and saved.

    A declared cohort with covariates declared ``missing: impute`` gets multiple imputation inside
    the pipeline (:class:`riskmodel.models.imputation.MultipleImputationSurvival`): it is fitted on
    the training part of every fold and resample only.
    """
    if config.cohort is not None:
        return _declared_pipeline(config, config.cohort, estimator)
    f = config.features
    features = ClinicalFeatures(
        f.set,
        response_coding=f.response_coding,
        stage_coding=f.stage_coding,
        d90_threshold_gy=f.d90_threshold_gy,
        alpha_beta=f.alpha_beta,
        landmark_months=config.landmark_months or None,
    )
    return Pipeline([("features", features), ("model", estimator)])


def _declared_pipeline(config: ExperimentConfig, cohort: CohortDeclaration, estimator: SurvivalEstimator) -> Pipeline:
    declaration = cohort.model_dump(mode="json")
    used = config.covariates
    imputed = [c for c in cohort.covariates if c.name in used and c.missing == "impute"]
    native = bool(imputed) and config.imputation.native and estimator.handles_missing
    all_levels = estimator.all_levels  # the tree families: no reference level
    if not imputed or native:  # a family that handles missing values gets them as NaN
        features = DeclaredFeatures(declaration, used, allow_missing=native, all_levels=all_levels)
        return Pipeline([("features", features), ("model", estimator)])
    codes = {c.name: (2 if c.kind == "binary" else len(c.code_levels)) for c in imputed if c.kind != "numeric"}
    imputation = MultipleImputationSurvival(
        DeclaredEncoding(declaration, all_levels=all_levels),
        estimator,
        impute=[c.name for c in imputed],
        codes=codes,
        n_imputations=config.imputation.n_imputations,
        n_iter=config.imputation.n_iter,
        random_state=config.seed,
        categorical=[c.name for c in imputed if c.kind == "categorical"],
    )
    inputs = DeclaredInputs(declaration, used, all_levels).set_output(transform="pandas")
    return Pipeline([("features", inputs), ("model", imputation)])


def missing_data_handling(config: ExperimentConfig, estimator: SurvivalEstimator) -> str:
    """One sentence for the model report: how this family met the cohort's missing values."""
    if config.cohort is None:
        return (
            "no imputation: a missing model input is refused at loading or training, with its row and column "
            "(complete data by construction)"
        )
    chosen = [c for c in config.cohort.covariates if c.name in config.covariates]
    policies = {
        p: [c.name for c in chosen if c.missing == p] for p in ("refuse", "complete_case", "indicator", "impute")
    }
    parts = []
    if policies["refuse"]:
        parts.append(f"refused when missing: {', '.join(policies['refuse'])}")
    if policies["complete_case"]:
        parts.append(f"complete-case (patients missing them left out): {', '.join(policies['complete_case'])}")
    if policies["indicator"]:
        parts.append(
            f"missing-indicator flag (numeric values filled with the training median): "
            f"{', '.join(policies['indicator'])}"
        )
    if policies["impute"]:
        names = ", ".join(policies["impute"])
        imputed = isinstance(estimator, MultipleImputationSurvival)
        if not imputed and config.imputation.native and estimator.handles_missing:
            parts.append(f"kept missing and learnt by the trees (each split sends a missing value one way): {names}")
        else:
            m = config.imputation.n_imputations
            parts.append(
                f"multiply imputed ({m} imputations by chained equations with the event indicator and the "
                f"Nelson-Aalen cumulative hazard as predictors, refitted inside every fold and resample; "
                f"predictions averaged over the {m} models): {names}"
            )
    return "; ".join(parts)


def prepare_endpoints(
    config: ExperimentConfig, cohort: Cohort, endpoints: Sequence[str] | None = None
) -> dict[str, PreparedEndpoint]:
    """Every endpoint of the experiment (or ``endpoints``) from its landmark, checked trainable.

    An endpoint that declares competing events is prepared as competing risks (a target with the
    cause, :func:`riskmodel.stats.competing_array`) unless the experiment sets
    ``competing_risks: false`` (then its competing events are censored: the cause-specific view).
    """
    used = feature_columns(config)
    competing = set(config.competing_endpoints)
    prepared: dict[str, SurvivalData] = {}
    for ep in endpoints or config.endpoints:
        sd = survival_data(
            cohort, ep, landmark_months=config.landmark_months, feature_columns=used, competing=ep in competing
        )
        prepared[ep] = sd
    check_trainable(cohort, prepared, used)
    out: dict[str, PreparedEndpoint] = {}
    for ep, sd in prepared.items():
        try:
            window = EvaluationWindow.from_data(sd.y, config.horizons, min_at_risk=config.evaluation.min_at_risk)
        except UserInputError as exc:
            raise UserInputError(f"{cohort.source}, {ep.upper()}: {exc}") from None
        out[ep] = PreparedEndpoint(ep, sd, window)
    return out


def check_trainable(cohort: Cohort, prepared: dict[str, SurvivalData], used: Sequence[str]) -> None:
    """Refuse, before any run starts, data no model can learn from; name the column and the rule."""
    source = cohort.source
    for endpoint, sd in prepared.items():
        events = int(sd.y["event"].sum())
        if len(sd.y) < MIN_PATIENTS:
            raise UserInputError(
                f"{source}: {endpoint.upper()} has {len(sd.y)} patient{'s' if len(sd.y) != 1 else ''} at risk "
                f"after the landmark; fitting and cross-validating a model needs at least {MIN_PATIENTS}"
            )
        if events == 0:
            raise UserInputError(
                f"{source}, column {endpoint}_event: all {len(sd.y)} patients are censored for {endpoint.upper()}; "
                "no survival model can be fitted (train the other endpoint with --endpoints)"
            )
        if events == 1:
            raise UserInputError(
                f"{source}, column {endpoint}_event: a single {endpoint.upper()} event among {len(sd.y)} patients; "
                "a survival model needs at least 2 events to fit and cross-validate"
            )
    for name in used if cohort.declaration is None else ():  # declared: drop_uninformative leaves them out
        if column(name).kind not in ("float", "int") or name not in cohort.data.columns:
            continue
        values = cohort.data[name].dropna()
        if len(values) and values.nunique() == 1:
            raise UserInputError(
                f"{source}, column {name}, value {values.iloc[0]:g}: the same for every patient, so no model "
                "can learn from it; choose a feature set without it"
            )


def sample_size(config: ExperimentConfig, prepared: PreparedEndpoint) -> SampleSize:
    """Riley et al.'s assessment for one endpoint, with R²cs anticipated from the unpenalised Cox fit.

    With competing risks the events are those of the event of interest, and R²cs comes from its
    cause-specific Cox fit (competing events censored): the size needed for that hazard's model.
    """
    design, y = _complete_design(config, prepared.data)
    return design_sample_size(design, y, prepared.data.y, max(prepared.prediction_horizons))


def design_sample_size(design: Any, y_fit: Any, y: Any, horizon: float) -> SampleSize:
    """Riley et al.'s assessment of a cohort with target ``y`` (event, time: its event counts,
    rate and follow-up; a competing target's event of interest) for a model of ``design``'s columns,
    R²cs anticipated from the unpenalised Cox fit of ``design`` on ``y_fit`` (its complete rows)."""
    time, events = y["time"], int(y["event"].sum())
    rate = events / float(time.sum())
    follow_up = float(time.mean())
    parameters = design.shape[1]
    with own_warnings_silenced():
        cox = CoxPH(penalty=0.0).fit(design, y_fit)
    lr = max(2 * (cox.log_likelihood_ - cox.log_likelihood_null_), 0.0)
    r2, how = anticipated_r2(lr, len(time), parameters, rate, follow_up)
    size = riley_survival(
        parameters=parameters,
        r2_cs=r2,
        rate=rate,
        mean_follow_up=follow_up,
        horizon=horizon,
        n=len(time),
        events=events,
    )
    size.notes.append(how)
    return size


def _complete_design(config: ExperimentConfig, sd: SurvivalData) -> tuple[Any, Any]:
    """The model matrix (every encoded column: Riley's parameters) on the patients with no missing
    covariate, where R²cs is anticipated from (with imputation, the complete cases)."""
    y = survival_array(sd.y["event"], sd.y["time"])  # with competing risks: the event of interest's view
    features = make_pipeline(config, CoxPH())[0].fit(sd.X, y)
    design = features.transform(sd.X)
    if config.cohort is None or not np.isnan(np.asarray(design, dtype=float)).any():
        return design, y
    complete = ~np.isnan(np.asarray(design, dtype=float)).any(axis=1)
    encoded = DeclaredFeatures(config.cohort.model_dump(mode="json"), config.covariates).fit(sd.X[complete])
    return encoded.transform(sd.X[complete]), y[complete]


def override(
    config: ExperimentConfig, *, data: str | Path | None, endpoints: Sequence[str] | None, models: Sequence[str] | None
) -> ExperimentConfig:
    """The experiment with the command line's ``--data``, ``--endpoints`` and ``--models`` applied."""
    raw = config.model_dump()
    if data is not None:
        if not Path(data).exists():
            raise UserInputError(f"--data: file not found: {data}")
        raw["data"]["path"] = str(data)
    if endpoints:
        known = config.cohort.endpoint_names if config.cohort is not None else list(ENDPOINTS)
        unknown = sorted(set(endpoints) - set(known))
        if unknown:
            raise UserInputError(f"--endpoints: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
        raw["endpoints"] = list(dict.fromkeys(endpoints))
    if models:
        unknown = sorted(set(models) - set(SPECS))
        if unknown:
            raise UserInputError(f"--models: unknown {', '.join(unknown)}; choose from {family_names()}")
        for m in models:  # a family off by default (Fine-Gray) is switched on by asking for it
            if raw["models"][m] is None and SPECS[m].competing_only and m not in config.models.model_fields_set:
                raw["models"][m] = SPECS[m].config().model_dump()
        missing = [m for m in models if raw["models"][m] is None]
        if missing:
            raise UserInputError(f"--models: {', '.join(missing)} is switched off in this experiment")
        raw["models"] = {k: (v if k in models else None) for k, v in raw["models"].items()}
    try:
        updated = ExperimentConfig.model_validate(raw, strict=False)
    except Exception as exc:
        raise UserInputError(str(exc)) from None
    # the evaluation settings as given, so the plan still tells an explicit key from a default
    return updated.model_copy(update={"evaluation": config.evaluation})


def shareable_config(config: ExperimentConfig) -> dict[str, Any]:
    """The resolved config with data paths cut to file names (paths can name people or places)."""
    raw = config.model_dump(mode="json")
    for key in ("path", "mapping"):
        if raw["data"].get(key):
            raw["data"][key] = Path(raw["data"][key]).name
    return raw


def flat_params(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    """A nested config as dotted keys (``models.cox.penalty``), for MLflow params."""
    if isinstance(value, dict):
        for k, v in value.items():
            flat_params(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out
