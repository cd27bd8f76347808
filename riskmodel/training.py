"""Training (``riskmodel train``): every enabled family for every endpoint, cross-validated and tracked.

For each endpoint the landmark is applied, the horizons beyond that endpoint's follow-up are left
out (and said so), and for each family the whole pipeline (features + model) is cross-validated,
then refitted on all patients, saved as a pickle-free model and logged as one MLflow child run.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.pipeline import Pipeline

from riskmodel import __version__
from riskmodel.cohort import Cohort, bundled_cohort_path, load, survival_data
from riskmodel.cohort.contract import column
from riskmodel.cohort.endpoints import Endpoint, SurvivalData
from riskmodel.config import ExperimentConfig, load_experiment
from riskmodel.errors import UserInputError
from riskmodel.evaluate import CrossValidation, Validation, cross_validate, validate
from riskmodel.features import FEATURE_BLOCKS, ClinicalFeatures, resolve_blocks
from riskmodel.model_report import ModelFacts
from riskmodel.model_report import render as render_model_report
from riskmodel.models import CoxPH, GradientBoostingSurvival, SurvivalEstimator, SurvivalForest
from riskmodel.privacy import PhiGuard
from riskmodel.samplesize import SampleSize, anticipated_r2, riley_survival
from riskmodel.scoring import RiskModel

__all__ = ["RunResult", "TrainResult", "build_estimator", "train"]

Progress = Callable[[int, int, str], None]


@dataclass
class RunResult:
    """One trained (endpoint, family)."""

    endpoint: str
    family: str
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    n_patients: int
    n_events: int
    n_parameters: int
    horizons: list[float]
    hazard_ratios: pd.DataFrame | None = None  # Cox only: the unpenalised HR table


@dataclass
class TrainResult:
    """What ``train`` did: the parent run and one entry per child run, plus notes for the user."""

    experiment: str
    parent_run_id: str
    tracking_uri: str
    runs: list[RunResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The ``--summary-json`` payload."""
        return {
            "parent_run_id": self.parent_run_id,
            "experiment": self.experiment,
            "tracking_uri": self.tracking_uri,
            "runs": [
                {
                    "endpoint": r.endpoint,
                    "family": r.family,
                    "run_id": r.run_id,
                    "model_uri": r.model_uri,
                    # an undefined metric (AUC at a horizon no test fold reached) is null, not NaN
                    "metrics": {k: (v if math.isfinite(v) else None) for k, v in r.metrics.items()},
                }
                for r in self.runs
            ],
        }

    def table(self) -> pd.DataFrame:
        """Mean ± SD of the headline metrics, one row per run ("n/a" where undefined)."""
        horizons = sorted({h for r in self.runs for h in r.horizons})
        rows = []
        for r in self.runs:
            m = r.metrics

            def cell(name: str, m: dict[str, float] = m) -> str:
                mean, sd = m.get(f"{name}_mean"), m.get(f"{name}_sd")
                if mean is None or mean != mean:
                    return "n/a"
                return f"{mean:.3f} ± {sd:.3f}" if sd == sd and sd is not None else f"{mean:.3f}"

            row = {
                "endpoint": r.endpoint.upper(),
                "family": r.family,
                "patients": r.n_patients,
                "events": r.n_events,
                "EPV": f"{r.n_events / max(r.n_parameters, 1):.1f}",
                "Harrell C": cell("harrell_c"),
                "Uno C": cell("uno_c"),
            }
            row.update({f"AUC({h:g})": cell(f"td_auc_{h:g}") for h in horizons})
            row.update({"IBS": cell("ibs"), "IBS (KM)": cell("ibs_km")})
            if "harrell_c_corrected" in m:
                row["C corrected (95% CI)"] = _with_ci(m, "harrell_c")
                row["slope corrected (95% CI)"] = _with_ci(m, "calibration_slope")
            rows.append(row)
        return pd.DataFrame(rows)


MIN_PATIENTS = 10


def _check_trainable(cohort: Cohort, prepared: dict[Endpoint, SurvivalData], used: Sequence[str]) -> None:
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
    for name in used:
        if column(name).kind not in ("float", "int") or name not in cohort.data.columns:
            continue
        values = cohort.data[name].dropna()
        if len(values) and values.nunique() == 1:
            raise UserInputError(
                f"{source}, column {name}, value {values.iloc[0]:g}: the same for every patient, so no model "
                "can learn from it; choose a feature set without it"
            )


def _with_ci(m: dict[str, float], name: str) -> str:
    value = m.get(f"{name}_corrected", math.nan)
    if not math.isfinite(value):
        return "n/a"
    low, high = m.get(f"{name}_corrected_ci_low", math.nan), m.get(f"{name}_corrected_ci_high", math.nan)
    return f"{value:.2f} ({low:.2f} to {high:.2f})"


def build_estimator(family: str, params: dict[str, Any], seed: int) -> SurvivalEstimator:
    """The estimator of a family from its config section."""
    if family == "cox":
        return CoxPH(**params)
    if family == "rsf":
        return SurvivalForest(**params, random_state=seed)
    if family == "gbm":
        return GradientBoostingSurvival(**params, random_state=seed)
    raise UserInputError(f"unknown model family {family!r}; choose from cox, rsf, gbm")


def _pipeline(config: ExperimentConfig, estimator: SurvivalEstimator) -> Pipeline:
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


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def _digest(cohort: Cohort) -> str:
    return hashlib.sha256(cohort.data.to_csv(index=False).encode()).hexdigest()[:16]


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


def _shareable_config(config: ExperimentConfig) -> dict[str, Any]:
    """The resolved config with data paths cut to file names (paths can name people or places)."""
    raw = config.model_dump(mode="json")
    for key in ("path", "mapping"):
        if raw["data"].get(key):
            raw["data"][key] = Path(raw["data"][key]).name
    return raw


def train(
    config: ExperimentConfig | str | Path,
    *,
    data: str | Path | None = None,
    endpoints: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    tracking_uri: str | None = None,
    progress: Progress | None = None,
    strict: bool = False,
) -> TrainResult:
    """Train every enabled family for every endpoint; track each in MLflow; return the run IDs.

    Before fitting, each endpoint's cohort is held against Riley et al.'s minimum sample size
    (:mod:`riskmodel.samplesize`): below it, the result carries a loud note and the runs are tagged
    ``riley_adequate=false``; with ``strict`` it is a refusal instead. Each model is then
    cross-validated and, unless ``evaluation.bootstrap`` is 0, validated by the bootstrap
    (:func:`riskmodel.evaluate.validate`): optimism-corrected metrics with intervals.
    """
    from riskmodel.tracking import Tracker

    if not isinstance(config, ExperimentConfig):
        config = load_experiment(config)
    config = _override(config, data=data, endpoints=endpoints, models=models)
    cohort = load(
        config.data.path or bundled_cohort_path(), mapping=config.data.mapping, response_rule=config.data.response_rule
    )
    blocks = resolve_blocks(config.features.set)
    used_columns = sorted({c for b in blocks for c in FEATURE_BLOCKS[b]})
    families = config.models.enabled()
    prepared = {
        ep: survival_data(
            cohort,
            ep,
            landmark_months=config.landmark_months,
            feature_columns=used_columns,
        )
        for ep in config.endpoints
    }
    _check_trainable(cohort, prepared, used_columns)
    sizes = {ep: _sample_size(config, sd) for ep, sd in prepared.items()}
    short = {ep: s for ep, s in sizes.items() if not s.adequate}
    if strict and short:
        raise UserInputError(
            "--strict: the cohort is below Riley et al.'s minimum sample size for "
            + "; ".join(f"{ep.upper()} ({s.summary()})" for ep, s in short.items())
        )
    splits = config.evaluation.n_splits * config.evaluation.n_repeats + config.evaluation.bootstrap
    total, done = len(prepared) * len(families) * (splits + 1), 0

    tracker = Tracker(config.name, tracking_uri, guard=PhiGuard.for_cohort(cohort))
    shared_config = _shareable_config(config)
    base_tags = {
        "experiment": config.name,
        "riskmodel_version": __version__,
        "git_commit": _git_commit(),
        "data_digest": _digest(cohort),
        "cohort_size": str(len(cohort)),
        "landmark_months": f"{config.landmark_months:g}",
        "exploratory": "true",
    }
    result = TrainResult(config.name, "", tracker.uri)
    if tracker.stale_runs:
        n = len(tracker.stale_runs)
        result.notes.append(f"closed {n} run{'s' if n > 1 else ''} left RUNNING by an ended process (now KILLED)")
    with tracker.parent(f"train-{config.name}", base_tags) as parent_id:
        result.parent_run_id = parent_id
        flat_config = _flat("", shared_config, {})
        tracker.log(params=flat_config)
        tracker.log_text(yaml.safe_dump(shared_config, sort_keys=False), "config.yaml")
        for endpoint, sd in prepared.items():
            horizons = [h for h in config.horizons if h <= sd.y["time"].max()]
            if len(horizons) < len(config.horizons):
                left = ", ".join(f"{h:g}" for h in config.horizons if h not in horizons)
                result.notes.append(
                    f"{endpoint.upper()}: horizon(s) {left} months lie beyond the follow-up after "
                    f"time zero ({sd.y['time'].max():.1f} months) and were left out"
                )
            if not horizons:
                raise UserInputError(f"{endpoint.upper()}: every horizon lies beyond the follow-up")
            if config.landmark_months:
                result.notes.append(sd.describe())
            size = sizes[endpoint]
            result.notes.append(f"{endpoint.upper()} sample size: {size.summary()}")
            if not size.adequate:
                result.notes.append(
                    f"WARNING {endpoint.upper()}: EXPLORATORY ONLY. EPV {size.epv:.1f} and an expected shrinkage of "
                    f"{size.expected_shrinkage:.2f} mean severe overfitting risk; prefer a prespecified, penalised "
                    "model with fewer parameters (e.g. the 'published' feature set with Cox), and read the "
                    "optimism-corrected metrics, not the apparent ones"
                )
            for family, fam_cfg in families.items():
                label = f"{endpoint.upper()} {family}"

                def tick(label: str = label) -> None:
                    nonlocal done
                    done += 1
                    if progress:
                        progress(done, total, label)

                estimator = build_estimator(family, fam_cfg.model_dump(), config.seed)
                pipe = _pipeline(config, estimator)
                cv = cross_validate(
                    pipe,
                    sd.X,
                    sd.y,
                    horizons,
                    n_splits=config.evaluation.n_splits,
                    n_repeats=config.evaluation.n_repeats,
                    seed=config.seed,
                    progress=tick,
                )
                if cv.n_splits < config.evaluation.n_splits:
                    result.notes.append(
                        f"{endpoint.upper()} {family}: {cv.n_splits}-fold instead of {config.evaluation.n_splits}-fold "
                        "cross-validation, because there are fewer events or censored patients than folds"
                    )
                fitted = pipe.fit(sd.X, sd.y)
                tick()
                validation = None
                if config.evaluation.bootstrap:
                    validation = validate(
                        pipe,
                        sd.X,
                        sd.y,
                        horizons,
                        n_resamples=config.evaluation.bootstrap,
                        seed=config.seed,
                        n_jobs=-1 if config.evaluation.bootstrap >= 20 else 1,
                        progress=tick,
                        fitted=fitted,
                    )
                if validation is not None and family in ("rsf", "gbm"):
                    result.notes.append(
                        f"{label}: the bootstrap optimism correction under-corrects tree ensembles (each resample's "
                        "patients are ~63 % of the original data, which the trees memorise); trust the "
                        "cross-validated C more for this family"
                    )
                features: ClinicalFeatures = fitted.named_steps["features"]
                model = RiskModel.from_training(
                    endpoint=endpoint,
                    family=family,
                    experiment=config.name,
                    landmark_months=config.landmark_months,
                    horizons=horizons,
                    features=features,
                    estimator=fitted.named_steps["model"],
                    X=sd.X,
                    risk_cutoffs=config.risk_group_cutoffs,
                )
                if family == "cox":
                    model.hazard_ratios = _unpenalised_table(features, sd.X, sd.y)
                summary = cv.summary()
                metrics = {
                    f"{m}_{stat}": float(v) for stat in ("mean", "sd") for m, v in summary[stat].astype(float).items()
                }
                metrics.update({f"{m}_folds": float(v) for m, v in summary["folds_with_value"].astype(float).items()})
                metrics["cv_failed_fits"] = float(cv.failed_fits)
                metrics.update(_validation_metrics(validation))
                calibration = _apparent_calibration(fitted, sd, horizons, config.seed)
                metrics.update(calibration.metrics)
                explained = _global_explanations(fitted, sd, f"{endpoint.upper()} {family}", config.seed)
                metrics.update(explained.metrics)
                metrics.update(
                    {
                        "riley_expected_shrinkage": size.expected_shrinkage,
                        "riley_minimum_n": float(size.minimum_n),
                        "events_per_parameter": size.epv,
                    }
                )
                n_events, n_params = int(sd.y["event"].sum()), len(features.get_feature_names_out())
                with tracker.child(f"{endpoint}-{family}") as run_id:
                    tracker.log(
                        params={
                            **flat_config,
                            "feature_names": ",".join(features.get_feature_names_out()),
                            **{f"model.{k}": v for k, v in estimator.get_params().items()},
                        },
                        metrics=metrics,
                        tags={
                            **base_tags,
                            "endpoint": endpoint,
                            "family": family,
                            "n_patients": str(len(sd.y)),
                            "n_events": str(n_events),
                            "events_per_parameter": f"{n_events / n_params:.1f}",
                            "time_origin": model.time_origin,
                            "riley_adequate": str(size.adequate).lower(),
                            "horizons": ",".join(f"{h:g}" for h in horizons),
                        },
                    )
                    tracker.log_text(yaml.safe_dump(shared_config, sort_keys=False), "config.yaml")
                    tracker.log_text(cv.folds.to_csv(index=False), "cv_folds.csv")
                    if cv.failures or cv.fold_warnings:
                        tracker.log_text("\n".join(cv.failures + cv.fold_warnings) + "\n", "cv_notes.txt")
                    if model.hazard_ratios is not None:
                        tracker.log_text(model.hazard_ratios.to_csv(), "cox_hazard_ratios_unpenalised.csv")
                    for name, table in calibration.artifacts().items():
                        tracker.log_text(table.to_csv(index=False), name)
                    facts = _model_facts(
                        config, cohort, sd, endpoint, family, horizons, size, cv, validation, calibration, fitted
                    )
                    facts.cox_unpenalised = model.hazard_ratios
                    for name, png in {**_figures(facts), **explained.figures}.items():
                        tracker.log_bytes(png, name)
                    tracker.log_text(explained.importance.to_csv(index=False), "permutation_importance.csv")
                    if model.hazard_ratios is not None:
                        tracker.log_bytes(_hr_figure(model.hazard_ratios, label), "plots/cox_hazard_ratios.png")
                    tracker.log_text(render_model_report(facts), "model_report.html")
                    if validation is not None:
                        tracker.log_text(validation.table.to_csv(), "validation_bootstrap.csv")
                        if validation.failures:
                            tracker.log_text("\n".join(validation.failures) + "\n", "validation_failures.txt")
                    with tempfile.TemporaryDirectory() as tmp:
                        uri = tracker.log_model(model, model.save(Path(tmp) / "riskmodel"))
                result.runs.append(
                    RunResult(
                        endpoint,
                        family,
                        run_id,
                        uri,
                        metrics,
                        len(sd.y),
                        n_events,
                        n_params,
                        horizons,
                        model.hazard_ratios,
                    )
                )
        tracker.log(tags={"children": str(len(result.runs))})
    return result


def _validation_metrics(validation: Validation | None) -> dict[str, float]:
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


@dataclass
class _Calibration:
    """In-sample calibration and utility of one fitted model: metrics and aggregated tables."""

    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[float, Any] = field(default_factory=dict)  # horizon -> CalibrationCurve
    decision: dict[float, pd.DataFrame] = field(default_factory=dict)
    d_calibration_p: float = math.nan

    def artifacts(self) -> dict[str, pd.DataFrame]:
        out: dict[str, pd.DataFrame] = {}
        for h, curve in self.curves.items():
            out[f"calibration_{h:g}.csv"] = curve.groups
            out[f"calibration_smooth_{h:g}.csv"] = curve.smooth
        out.update({f"decision_curve_{h:g}.csv": t for h, t in self.decision.items()})
        return out


def _model_facts(
    config: ExperimentConfig,
    cohort: Cohort,
    sd: SurvivalData,
    endpoint: Endpoint,
    family: str,
    horizons: list[float],
    size: SampleSize,
    cv: CrossValidation,
    validation: Validation | None,
    calibration: _Calibration,
    fitted: Pipeline,
) -> ModelFacts:
    """The aggregated facts of one run, for its TRIPOD+AI report."""
    features: ClinicalFeatures = fitted.named_steps["features"]
    estimator = fitted.named_steps["model"]
    names = [str(n) for n in features.get_feature_names_out()]
    time = sd.y["time"]
    coefficients = baseline = None
    if isinstance(estimator, CoxPH):
        coefficients = pd.DataFrame({"coef": estimator.coef_, "hr": np.exp(estimator.coef_)}, index=names)
        coefficients.index.name = "feature"
        at_mean = estimator.predict_survival(estimator.mean_[None, :], horizons).to_numpy()[0]
        baseline = dict(zip(horizons, map(float, at_mean), strict=True))
    cv_table = cv.summary()[["mean", "sd", "folds_with_value"]]
    years = f"{cohort.implant_years[0]} to {cohort.implant_years[1]}" if cohort.implant_years else None
    reconstructed = cohort.source.startswith("reconstructed_cohort")
    if reconstructed and years is None:
        years = "2013 to 2019 (the source study's implants)"
    return ModelFacts(
        experiment=config.name,
        endpoint=endpoint,
        family=family,
        version=__version__,
        commit=_git_commit(),
        source=Path(cohort.source).name,
        years=years,
        n_patients=len(sd.y),
        n_events=int(sd.y["event"].sum()),
        landmark_months=config.landmark_months,
        landmark_note=sd.describe() if config.landmark_months else None,
        time_origin=f"{config.landmark_months:g}-month landmark" if config.landmark_months else "implant",
        horizons=list(horizons),
        left_out_horizons=[h for h in config.horizons if h not in horizons],
        feature_set=str(config.features.set),
        inputs=sorted({c for b in resolve_blocks(config.features.set) for c in FEATURE_BLOCKS[b]}),
        features=names,
        params=dict(estimator.get_params()),
        size=size,
        cv=cv_table,
        cv_description=(
            f"Stratified (on the event) {cv.n_splits}-fold cross-validation repeated "
            f"{config.evaluation.n_repeats} times; mean ± SD over folds; every fold refits the whole pipeline."
        ),
        validation=validation,
        calibration=dict(calibration.curves),
        decision_curves=dict(calibration.decision),
        d_calibration_p=calibration.d_calibration_p,
        at_risk={h: int((time >= h).sum()) for h in horizons},
        cox_coefficients=coefficients,
        baseline_survival=baseline or {},
        reconstructed=reconstructed,
    )


@dataclass
class _Explained:
    """Global explanations of one fitted model: aggregates only (no per-patient SHAP array)."""

    metrics: dict[str, float]
    importance: pd.DataFrame
    figures: dict[str, bytes]


DEPENDENCE_FEATURES = ("d90", "recurrence_interval", "volume")


EXPLAIN_SAMPLE = 1000  # patients behind the global explanations of a larger cohort


def _global_explanations(fitted: Pipeline, sd: SurvivalData, label: str, seed: int) -> _Explained:
    """SHAP of the risk score on the training patients, as plots and mean |SHAP| metrics, and
    permutation importance on Harrell's C with intervals over 20 shuffles.

    Above :data:`EXPLAIN_SAMPLE` patients both use a seeded random sample of that many (TreeSHAP
    of a deep forest costs ~20 ms a patient; a mean |SHAP| is precise long before 100,000).
    """
    from riskmodel.explain import explain, mean_abs, permutation_importance
    from riskmodel.plots import figure_png, importance_plot, shap_bar, shap_beeswarm, shap_dependence

    rows = np.arange(len(sd.y))
    if len(rows) > EXPLAIN_SAMPLE:
        rows = np.sort(np.random.default_rng(seed).choice(rows, EXPLAIN_SAMPLE, replace=False))
        label = f"{label} ({EXPLAIN_SAMPLE} sampled patients)"
    explanation = explain(fitted, sd.X.iloc[rows])
    names = list(explanation.feature_names)
    metrics = {f"shap_mean_abs_{name}": float(v) for name, v in mean_abs(explanation).items()}
    importance = permutation_importance(fitted[-1], explanation.data, sd.y[rows], names, seed=seed)
    figures = {
        "plots/shap_beeswarm.png": figure_png(shap_beeswarm(explanation, f"{label}: SHAP of the risk score")),
        "plots/shap_bar.png": figure_png(shap_bar(explanation, f"{label}: mean |SHAP| of the risk score")),
        "plots/permutation_importance.png": figure_png(
            importance_plot(importance, f"{label}: permutation importance (in-sample)")
        ),
    }
    for name in names:
        if any(key in name for key in DEPENDENCE_FEATURES) and np.unique(explanation[:, name].data).size > 2:
            fig = shap_dependence(explanation, name, f"{label}: SHAP dependence on {name}")
            figures[f"plots/shap_dependence_{name}.png"] = figure_png(fig)
    return _Explained(metrics, importance, figures)


def _hr_figure(table: pd.DataFrame, label: str) -> bytes:
    from riskmodel.plots import figure_png, forest_plot

    return figure_png(forest_plot(table, f"{label}: unpenalised hazard ratios"))


def _figures(facts: ModelFacts) -> dict[str, bytes]:
    """Calibration and decision-curve PNGs for the run's artifacts."""
    from riskmodel.plots import calibration_plot, decision_curve_plot, figure_png

    ep = facts.endpoint.upper()
    out = {}
    for h, curve in facts.calibration.items():
        fig = calibration_plot(curve.groups, curve.smooth, f"{ep} by {h:g} months (apparent): ICI {curve.ici:.3f}")
        out[f"plots/calibration_{h:g}.png"] = figure_png(fig)
    for h, table in facts.decision_curves.items():
        out[f"plots/decision_curve_{h:g}.png"] = figure_png(
            decision_curve_plot(table, f"{ep} by {h:g} months (apparent)")
        )
    return out


def _apparent_calibration(
    fitted: Pipeline, sd: SurvivalData, horizons: Sequence[float], seed: int, n_boot: int = 100
) -> _Calibration:
    """In-sample calibration curves (grouped KM and smoothed, with bands), ICI/E50/E90, D-calibration
    and decision curves.

    Only aggregates leave this function: metrics, group and grid tables, and net-benefit curves.
    Per-patient predictions stay in memory.
    """
    from riskmodel.calibration import calibration_curve, d_calibration, net_benefit, survival_at_own_time

    estimator = fitted[-1]
    Z = fitted[:-1].transform(sd.X)
    out = _Calibration()
    for h in horizons:
        try:
            s = estimator.predict_survival(Z, [h]).to_numpy()[:, 0]
            curve = calibration_curve(sd.y, s, h, n_boot=n_boot, seed=seed)
        except (ValueError, np.linalg.LinAlgError, ArithmeticError):
            continue
        out.metrics.update(
            {
                f"calibration_ici_{h:g}_apparent": curve.ici,
                f"calibration_e50_{h:g}_apparent": curve.e50,
                f"calibration_e90_{h:g}_apparent": curve.e90,
            }
        )
        out.curves[h] = curve
        out.decision[h] = net_benefit(sd.y, 1 - s, h, np.round(np.arange(0.05, 0.96, 0.05), 2))
    try:
        out.d_calibration_p, _ = d_calibration(sd.y, survival_at_own_time(estimator, Z, sd.y["time"]))
        out.metrics["d_calibration_p_apparent"] = out.d_calibration_p
    except (ValueError, np.linalg.LinAlgError, ArithmeticError):
        pass
    return out


def _sample_size(config: ExperimentConfig, sd: SurvivalData) -> SampleSize:
    """Riley et al.'s assessment for one endpoint, with R²cs anticipated from the unpenalised Cox fit."""
    import warnings

    from riskmodel.errors import RiskModelWarning

    features = _pipeline(config, CoxPH())[0].fit(sd.X, sd.y)
    design = features.transform(sd.X)
    time, events = sd.y["time"], int(sd.y["event"].sum())
    parameters = design.shape[1]
    rate = events / float(time.sum())
    follow_up = float(time.mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RiskModelWarning)
        cox = CoxPH(penalty=0.0).fit(design, sd.y)
    lr = max(2 * (cox.log_likelihood_ - cox.log_likelihood_null_), 0.0)
    r2, how = anticipated_r2(lr, len(time), parameters, rate, follow_up)
    horizon = max([h for h in config.horizons if h <= time.max()] or [float(time.max())])
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


def _unpenalised_table(features: ClinicalFeatures, X: pd.DataFrame, y: Any) -> pd.DataFrame:
    """HR, 95% CI and p of the unpenalised Cox model on the same design (the classical table)."""
    import warnings

    from riskmodel.errors import RiskModelWarning

    design = pd.DataFrame(features.transform(X), columns=features.get_feature_names_out(), index=X.index)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RiskModelWarning)
        table = CoxPH(penalty=0).fit(design, y).hazard_ratios_
    table.attrs["note"] = "the unpenalised fit did not converge (separation?)" if caught else ""
    return table


def format_hazard_ratios(table: pd.DataFrame) -> str:
    """HR (95% CI) and p per feature, as printed by ``riskmodel train``."""
    lines = []
    for name, row in table.iterrows():
        ci = (
            f"({row['hr_lower_95']:.3g}-{row['hr_upper_95']:.3g})"
            if np.isfinite(row["hr_lower_95"]) and np.isfinite(row["hr_upper_95"])
            else "(not estimable)"
        )
        p = "n/a" if not np.isfinite(row["p"]) else ("<0.001" if row["p"] < 0.001 else f"{row['p']:.3f}")
        lines.append(f"  {name:<28} HR {row['hr']:>8.3g} {ci:<22} p {p}")
    return "\n".join(lines)


def _override(
    config: ExperimentConfig, *, data: str | Path | None, endpoints: Sequence[str] | None, models: Sequence[str] | None
) -> ExperimentConfig:
    raw = config.model_dump()
    if data is not None:
        if not Path(data).exists():
            raise UserInputError(f"--data: file not found: {data}")
        raw["data"]["path"] = str(data)
    if endpoints:
        unknown = sorted(set(endpoints) - {"lc", "os"})
        if unknown:
            raise UserInputError(f"--endpoints: unknown {', '.join(unknown)}; choose from lc, os")
        raw["endpoints"] = list(dict.fromkeys(endpoints))
    if models:
        unknown = sorted(set(models) - {"cox", "rsf", "gbm"})
        if unknown:
            raise UserInputError(f"--models: unknown {', '.join(unknown)}; choose from cox, rsf, gbm")
        missing = [m for m in models if raw["models"][m] is None]
        if missing:
            raise UserInputError(f"--models: {', '.join(missing)} is switched off in this experiment")
        raw["models"] = {k: (v if k in models else None) for k, v in raw["models"].items()}
    try:
        return ExperimentConfig.model_validate(raw, strict=False)
    except Exception as exc:
        raise UserInputError(str(exc)) from None
