"""Recording a developed model: its MLflow child run, artifacts, figures, report and model folder.

Everything here is aggregated (metrics, tables of groups, figures); the PHI guard in
:class:`riskmodel.tracking.Tracker` checks every byte before MLflow sees it.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from riskmodel.cohort import Cohort
from riskmodel.cohort.declared import missing_data_table
from riskmodel.config import ExperimentConfig
from riskmodel.core.csvout import safe_csv_text
from riskmodel.core.version import __version__
from riskmodel.features.labels import column_labels
from riskmodel.models import CoxPH, MultipleImputationSurvival
from riskmodel.reporting import ModelFacts, render_model_report
from riskmodel.reporting.model_dose import model_dose_html
from riskmodel.reporting.nomogram_form import linear_form
from riskmodel.reporting.nomogram_plot import nomogram_html
from riskmodel.reporting.plots import calibration_plot, decision_curve_plot, figure_png, figure_pngs, forest_plot
from riskmodel.scoring import RiskModel
from riskmodel.stats.samplesize import SampleSize
from riskmodel.tracking import Tracker
from riskmodel.validation.performance import COMPETING_MEANINGS
from riskmodel.workflow.develop import Developed
from riskmodel.workflow.prepare import (
    PreparedEndpoint,
    feature_columns,
    flat_params,
    missing_data_handling,
    shareable_config,
)

__all__ = ["RunContext", "RunRecord", "build_record", "git_commit", "log_record", "record_run"]


def git_commit() -> str:
    """The checkout's commit (``-dirty`` with uncommitted changes), or ``unknown`` when installed."""
    root = Path(__file__).resolve().parents[2]
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
    return hashlib.sha256(cohort.data.to_csv(index=False).encode()).hexdigest()[:16]  # a fingerprint, not a file


@dataclass
class RunContext:
    """What every run of one ``train`` shares: the config as logged, tags and the commit."""

    config: ExperimentConfig
    cohort: Cohort
    shared_config: dict[str, Any]
    flat_config: dict[str, Any]
    base_tags: dict[str, str]
    commit: str

    @classmethod
    def create(cls, config: ExperimentConfig, cohort: Cohort, *, exploratory: bool = True) -> RunContext:
        """The shared parts of the runs of ``config`` on ``cohort``; ``exploratory`` when the
        cohort is below Riley et al.'s minimum sample size for an endpoint."""
        commit = git_commit()
        shared = shareable_config(config)
        tags = {
            "experiment": config.name,
            "riskmodel_version": __version__,
            "git_commit": commit,
            "data_digest": _digest(cohort),
            "cohort_size": str(len(cohort)),
            "landmark_months": f"{config.landmark_months:g}",
            "exploratory": str(exploratory).lower(),
        }
        return cls(config, cohort, shared, flat_params("", shared, {}), tags, commit)

    def config_yaml(self) -> str:
        """The resolved config, as logged with every run."""
        return yaml.safe_dump(self.shared_config, sort_keys=False)


@dataclass
class RunRecord:
    """Everything one child run logs, made ready before the run opens (on the worker process that
    developed the model, or here): its params, metrics and tags, its artifacts in logging order (text
    or PNG bytes) and the files of the model folder. Aggregates only, and the PHI guard still checks
    every byte here before MLflow sees it (:func:`log_record`)."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: list[tuple[str, str | bytes]]  # (artifact file, text or PNG bytes)
    model_files: dict[str, bytes]  # the model folder's files, by path inside it


def build_record(ctx: RunContext, prepared: PreparedEndpoint, size: SampleSize, dev: Developed) -> RunRecord:
    """The run of one developed (endpoint, family), ready to log: its figures drawn, its report
    rendered and its model folder written (the CPU-heavy part of recording; no tracking store)."""
    sd, family, model = prepared.data, dev.family, dev.model
    label = f"{prepared.endpoint.upper()} {family}"
    n_events = int(sd.y["event"].sum())
    params = {
        **ctx.flat_config,
        **prepared.window.params(),
        "feature_names": ",".join(dev.features.get_feature_names_out()),
        **{f"model.{k}": v for k, v in model.estimator.get_params().items()},
    }
    tags = {
        **ctx.base_tags,
        "endpoint": prepared.endpoint,
        "family": family,
        "n_patients": str(len(sd.y)),
        "n_events": str(n_events),
        "events_per_parameter": f"{n_events / dev.n_parameters:.1f}",
        "time_origin": model.time_origin,
        "riley_adequate": str(size.adequate).lower(),
        "exploratory": str(not size.adequate).lower(),
        "horizons": ",".join(f"{h:g}" for h in prepared.horizons),
        **analysis_tags(ctx.config, prepared),
        **(dev.scheme.estimators() if dev.scheme else {}),
    }
    out: list[tuple[str, str | bytes]] = [
        ("config.yaml", ctx.config_yaml()),
        ("cv_folds.csv", safe_csv_text(dev.cv.folds, index=False)),
    ]
    if dev.cv.failures or dev.cv.fold_warnings:
        out.append(("cv_notes.txt", "\n".join(dev.cv.failures + dev.cv.fold_warnings) + "\n"))
    if model.hazard_ratios is not None:
        out.append(("cox_hazard_ratios_unpenalised.csv", safe_csv_text(model.hazard_ratios)))
    out += [(name, safe_csv_text(table, index=False)) for name, table in dev.competing_tables.items()]
    out += [(name, safe_csv_text(table, index=False)) for name, table in dev.in_sample.artifacts().items()]
    facts = model_facts(ctx, prepared, size, dev)
    out += list({**figures(facts), **dev.explained.figures}.items())
    out.append(("permutation_importance.csv", safe_csv_text(dev.explained.importance, index=False)))
    if model.hazard_ratios is not None:
        kind = "cause-specific hazard ratios (competing events censored)" if prepared.competing else "hazard ratios"
        hr_plot = forest_plot(model.hazard_ratios, f"{label}: unpenalised {kind}")
        out.append(("plots/cox_hazard_ratios.png", figure_png(hr_plot)))
    out.append(("model_report.html", render_model_report(facts)))
    if dev.validation is not None:
        out.append(("validation_bootstrap.csv", safe_csv_text(dev.validation.table)))
        if dev.validation.failures:
            out.append(("validation_failures.txt", "\n".join(dev.validation.failures) + "\n"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = model.save(Path(tmp) / "riskmodel")
        files = {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}
    return RunRecord(f"{prepared.endpoint}-{family}", params, dev.metrics, tags, out, files)


def log_record(tracker: Tracker, record: RunRecord, model: RiskModel) -> tuple[str, str]:
    """Log a ready run as a child run of the tracker's parent; returns (run ID, model URI).
    ``model`` is the model whose folder ``record.model_files`` holds (its signature's columns)."""
    with tracker.child(record.name) as run_id:
        tracker.log(params=record.params, metrics=record.metrics, tags=record.tags)
        tracker.log_files(record.artifacts)  # one upload (each file checked by the PHI guard)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "riskmodel"
            for name, data in record.model_files.items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(data)
            uri = tracker.log_model(model, folder)
    return run_id, uri


def record_run(
    tracker: Tracker, ctx: RunContext, prepared: PreparedEndpoint, size: SampleSize, dev: Developed
) -> tuple[str, str]:
    """Log one developed (endpoint, family) as a child run; returns (run ID, model URI)."""
    return log_record(tracker, build_record(ctx, prepared, size, dev), dev.model)


def competing_event_name(config: ExperimentConfig, endpoint: str) -> str:
    """What competes with ``endpoint``'s event, in words ("death" for the bundled LC)."""
    if config.cohort is None:
        return "death"
    e = next(e for e in config.cohort.endpoints if e.name == endpoint)
    if e.competing_endpoint:
        return f"{e.competing_endpoint} (competing endpoint)"
    return f"{e.event} = {', '.join(map(str, e.competing_codes))}"


def analysis_tags(config: ExperimentConfig, prepared: PreparedEndpoint) -> dict[str, str]:
    """``riskmodel.analysis`` and, for a competing endpoint, what each metric key means there."""
    if not prepared.competing:
        return {"analysis": "survival"}
    tags = {
        "analysis": f"competing risks (cumulative incidence; {competing_event_name(config, prepared.endpoint)} "
        "competing)",
        "event_of_interest": prepared.endpoint,
    }
    tags.update({f"metric.{key}": meaning for key, meaning in COMPETING_MEANINGS.items()})
    return tags


def model_facts(ctx: RunContext, prepared: PreparedEndpoint, size: SampleSize, dev: Developed) -> ModelFacts:
    """The aggregated facts of one run, for its TRIPOD+AI report."""
    config, cohort, sd, horizons = ctx.config, ctx.cohort, prepared.data, prepared.prediction_horizons
    estimator = dev.model.estimator
    encoded = estimator.encodings_[0] if isinstance(estimator, MultipleImputationSurvival) else dev.features
    names = [str(n) for n in encoded.get_feature_names_out()]
    time = sd.y["time"]
    coefficients = baseline = None
    if isinstance(estimator, CoxPH):
        coefficients = pd.DataFrame({"coef": estimator.coef_, "hr": np.exp(estimator.coef_)}, index=names)
        coefficients.index.name = "feature"
        at_mean = estimator.predict_survival(estimator.mean_[None, :], horizons).to_numpy()[0]
        baseline = dict(zip(horizons, map(float, at_mean), strict=True))
    years = f"{cohort.implant_years[0]} to {cohort.implant_years[1]}" if cohort.implant_years else None
    reconstructed = cohort.source.startswith("reconstructed_cohort")
    if reconstructed and years is None:
        years = "2013 to 2019 (the source study's implants)"
    facts = ModelFacts(
        experiment=config.name,
        endpoint=prepared.endpoint,
        family=dev.family,
        version=__version__,
        commit=ctx.commit,
        source=Path(cohort.source).name,
        years=years,
        n_patients=len(sd.y),
        n_events=int(sd.y["event"].sum()),
        landmark_months=config.landmark_months,
        landmark_note=sd.describe() if config.landmark_months else None,
        time_origin=dev.model.time_origin,
        horizons=list(horizons),
        left_out_horizons=[h for h, n in prepared.window.left_out.items() if n == 0],
        min_at_risk=prepared.window.min_at_risk,
        feature_set="declared covariates" if config.cohort is not None else str(config.features.set),
        inputs=feature_columns(config),
        features=names,
        params=model_params(estimator),
        size=size,
        cv=dev.cv.summary()[["mean", "sd", "folds_with_value"]],
        cv_description=cv_description(prepared, dev),
        validation=dev.validation,
        calibration=dict(dev.in_sample.curves),
        decision_curves=dict(dev.in_sample.decision),
        d_calibration_p=dev.in_sample.d_calibration_p,
        at_risk={h: int((time >= h).sum()) for h in horizons},
        cox_coefficients=coefficients,
        baseline_survival=baseline or {},
        reconstructed=reconstructed,
    )
    facts.cox_unpenalised = dev.model.hazard_ratios
    facts.nomogram = nomogram_html(dev.model) if linear_form(dev.model) is not None else ""  # Cox, Fine-Gray
    facts.dose_response = model_dose_html(dev.model, sd.X, sd.y)
    facts.explanations = dev.explained.report_html
    facts.labels, facts.input_labels = column_labels(names, feature_columns(config), config.cohort)
    if prepared.competing:
        facts.competing = competing_event_name(config, prepared.endpoint)
        facts.competing_tables = dict(dev.competing_tables)
    facts.missing_data = missing_data_handling(config, dev.model.estimator)
    facts.endpoint_definition = endpoint_definition(config, prepared.endpoint, competing=prepared.competing)
    if config.cohort is not None:
        facts.measured_later = {
            c.name: c.measured_at_months
            for c in config.cohort.covariates
            if c.name in config.covariates and c.measured_at_months > 0
        }
    table = missing_data_table(cohort)
    facts.missingness = table[table["covariate"].isin(config.covariates)] if len(table) else None
    return facts


def cv_description(prepared: PreparedEndpoint, dev: Developed) -> str:
    """The internal validation of one run in words, and which estimator its figures come from."""
    strata = "cause: censored, event, competing" if prepared.competing else "event"
    scheme = dev.scheme
    if scheme is not None and not scheme.n_splits:
        how = (
            f"Stratified (on the {strata}) {scheme.describe_cv()}: fitted on the rest, scored once on the held-out part"
        )
    else:
        repeats = scheme.n_repeats if scheme is not None else 1
        how = (
            f"Stratified (on the {strata}) {dev.cv.n_splits}-fold cross-validation repeated {repeats} times; "
            "mean and SD over all folds"
        )
    text = f"{how}; every fit refits the whole pipeline. Evaluation window, the same in every fold and resample: "
    text += f"{prepared.window.describe()}."
    if scheme is not None:
        text += f" Bootstrap: {scheme.describe_bootstrap()}."
    return text


def model_params(estimator: Any) -> dict[str, Any]:
    """The family's settings; under multiple imputation, the wrapped family's and the imputation's
    (not the encoding and declaration objects, which the report shows in its own sections)."""
    if isinstance(estimator, MultipleImputationSurvival):
        inner = {k: v for k, v in estimator.estimator.get_params().items()}
        return {
            **inner,
            "imputation: covariates": list(estimator.impute),
            "imputation: m": estimator.n_imputations,
            "imputation: cycles": estimator.n_iter,
        }
    return dict(estimator.get_params())


def endpoint_definition(config: ExperimentConfig, endpoint: str, *, competing: bool = False) -> str | None:
    """A declared endpoint in words: its event codes, competing codes and censoring (None: the study's)."""
    if config.cohort is None:
        return None
    e = next(e for e in config.cohort.endpoints if e.name == endpoint)
    codes = ", ".join(map(str, e.event_codes))
    text = f"{e.label or e.name}: an event is {e.event!r} = {codes}; censored = {', '.join(map(str, e.censored_codes))}"
    if e.competing_codes and competing:
        text += f"; a competing event ({', '.join(map(str, e.competing_codes))}) is a competing risk (cause 2)"
    elif e.competing_codes:
        text += (
            f"; a competing event ({', '.join(map(str, e.competing_codes))}) is censored here (a cause-specific "
            "model: its risks are not absolute risks in the presence of the competing event)"
        )
    return text + "."


def figures(facts: ModelFacts) -> dict[str, bytes]:
    """Calibration and decision-curve PNGs for the run's artifacts."""
    ep = facts.endpoint.upper()
    drawn = {}
    for h, curve in facts.calibration.items():
        fig = calibration_plot(curve.groups, curve.smooth, f"{ep} by {h:g} months (apparent): ICI {curve.ici:.3f}")
        drawn[f"plots/calibration_{h:g}.png"] = fig
    for h, table in facts.decision_curves.items():
        drawn[f"plots/decision_curve_{h:g}.png"] = decision_curve_plot(table, f"{ep} by {h:g} months (apparent)")
    return figure_pngs(drawn)  # half of them on the figure worker, inside train's figure_worker()
