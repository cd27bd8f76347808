"""``riskmodel train``: every enabled family for every endpoint, cross-validated and tracked.

For each endpoint the landmark is applied and the horizons beyond its follow-up are left out
(:mod:`riskmodel.workflow.prepare`); for each family the whole pipeline is developed
(:mod:`riskmodel.workflow.develop`) and recorded as one MLflow child run
(:mod:`riskmodel.workflow.record`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from riskmodel.cohort.declared import missing_data_table
from riskmodel.config import ExperimentConfig, load_experiment
from riskmodel.core.csvout import safe_csv_text
from riskmodel.core.workers import WarmWorkers
from riskmodel.errors import NUMERICAL_FAILURES, UserInputError, is_own_error
from riskmodel.models.registry import SPECS
from riskmodel.privacy import PhiGuard
from riskmodel.reporting.plots import figure_worker
from riskmodel.stats.samplesize import SampleSize
from riskmodel.tracking import Tracker
from riskmodel.workflow.develop import Developed
from riskmodel.workflow.families import Developments, Unit, family_jobs
from riskmodel.workflow.plan import EvaluationPlan
from riskmodel.workflow.prepare import (
    PreparedEndpoint,
    drop_uninformative,
    load_cohort,
    override,
    prepare_endpoints,
    sample_size,
    shareable_config,
)
from riskmodel.workflow.record import RunContext, log_record

__all__ = ["Progress", "RunResult", "TrainResult", "train"]

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
    competing: bool = False  # a CIF model: C is Wolbers', AUC and IBS are of the CIF

    @classmethod
    def of(cls, prepared: PreparedEndpoint, dev: Developed, run_id: str, model_uri: str) -> RunResult:
        """The result of one developed and recorded (endpoint, family)."""
        y = prepared.data.y
        return cls(
            prepared.endpoint,
            dev.family,
            run_id,
            model_uri,
            dev.metrics,
            len(y),
            int(y["event"].sum()),
            dev.n_parameters,
            prepared.horizons,
            dev.model.hazard_ratios,
            prepared.competing,
        )


@dataclass
class TrainResult:
    """What ``train`` did: the parent run and one entry per child run, plus notes for the user."""

    experiment: str
    parent_run_id: str
    tracking_uri: str  # without its password (riskmodel.core.redact)
    runs: list[RunResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # the endpoints whose cohort is below Riley et al.'s minimum sample size: exploratory only
    exploratory: list[str] = field(default_factory=list)
    # declared cohorts: per covariate, patients missing it and what was done (counts only)
    missing_data: pd.DataFrame | None = None

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
        competing = any(r.competing for r in self.runs)  # then C, AUC and IBS of a CIF row are of the CIF
        rows = []
        for r in self.runs:
            row: dict[str, Any] = {
                "endpoint": r.endpoint.upper(),
                "family": r.family,
                "patients": r.n_patients,
                "events": r.n_events,
                "EPV": f"{r.n_events / max(r.n_parameters, 1):.1f}",
                **({"analysis": "CIF: Wolbers C" if r.competing else "survival"} if competing else {}),
                "Harrell C": _mean_sd(r.metrics, "harrell_c"),
                "Uno C": _mean_sd(r.metrics, "uno_c"),
            }
            row.update({f"AUC({h:g})": _mean_sd(r.metrics, f"td_auc_{h:g}") for h in horizons})
            row.update({"IBS": _mean_sd(r.metrics, "ibs"), "IBS (KM)": _mean_sd(r.metrics, "ibs_km")})
            if "harrell_c_corrected" in r.metrics:
                row["C corrected (≈95% interval)"] = _with_ci(r.metrics, "harrell_c")
                row["slope corrected (≈95% interval)"] = _with_ci(r.metrics, "calibration_slope")
            rows.append(row)
        return pd.DataFrame(rows)


def _mean_sd(m: dict[str, float], name: str) -> str:
    mean, sd = m.get(f"{name}_mean"), m.get(f"{name}_sd")
    if mean is None or mean != mean:
        return "n/a"
    return f"{mean:.3f} ± {sd:.3f}" if sd == sd and sd is not None else f"{mean:.3f}"


def _with_ci(m: dict[str, float], name: str) -> str:
    value = m.get(f"{name}_corrected", math.nan)
    if not math.isfinite(value):
        return "n/a"
    low, high = m.get(f"{name}_corrected_ci_low", math.nan), m.get(f"{name}_corrected_ci_high", math.nan)
    return f"{value:.2f} ({low:.2f} to {high:.2f})"


def train(
    config: ExperimentConfig | str | Path,
    *,
    data: str | Path | pd.DataFrame | None = None,
    endpoints: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    tracking_uri: str | None = None,
    progress: Progress | None = None,
    strict: bool = False,
    announce: Callable[[str], None] | None = None,
    workers: WarmWorkers | None = None,
) -> TrainResult:
    """Train every enabled family for every endpoint; track each in MLflow; return the run IDs.

    Before fitting, each endpoint's cohort is held against Riley et al.'s minimum sample size
    (:mod:`riskmodel.stats.samplesize`): below it, the result carries a loud note and the runs are
    tagged ``riley_adequate=false``; with ``strict`` it is a refusal instead. Each model is then
    cross-validated and, unless ``evaluation.bootstrap`` is 0, validated by the bootstrap
    (:func:`riskmodel.validation.validate`): optimism-corrected metrics with intervals.

    Before any fit is counted the evaluation plan (:mod:`riskmodel.workflow.plan`: each model's CV
    scheme and bootstrap, sized to the endpoint's events, the number of fits and an estimate of
    their duration from one timed fit per family, timed while the worker processes start) goes to
    ``announce`` and to the parent run's params.

    ``data`` replaces the experiment's data: a file, or a pandas DataFrame already in memory
    (read through the experiment's declaration, or the study's contract, exactly as a file is).
    ``workers``: worker processes started before (``riskmodel train`` starts them as it begins), used
    if the models are developed on as many; ended otherwise.
    """
    try:
        return _train(config, data, endpoints, models, tracking_uri, progress, strict, announce, workers)
    finally:
        if workers is not None:
            workers.close()  # (nothing to do once the models' development took them)


def _train(
    config: ExperimentConfig | str | Path,
    data: str | Path | pd.DataFrame | None,
    endpoints: Sequence[str] | None,
    models: Sequence[str] | None,
    tracking_uri: str | None,
    progress: Progress | None,
    strict: bool,
    announce: Callable[[str], None] | None,
    workers: WarmWorkers | None,
) -> TrainResult:
    if not isinstance(config, ExperimentConfig):
        config = load_experiment(config)
    frame = data if isinstance(data, pd.DataFrame) else None
    path = None if isinstance(data, pd.DataFrame) else data
    config = override(config, data=path, endpoints=endpoints, models=models)
    cohort = load_cohort(config, frame)
    config, dropped = drop_uninformative(config, cohort)
    prepared = prepare_endpoints(config, cohort)
    sizes = _sample_sizes(config, prepared, strict)
    families = config.models.enabled()
    plan = EvaluationPlan.from_data(config, prepared, families)
    counter = _Progress(progress, plan.total_fits)
    units = [
        Unit(endpoint, family, params.model_dump(), plan.scheme(endpoint, family))
        for endpoint, prep in prepared.items()
        for family, params in families.items()
        if not (SPECS[family].competing_only and not prep.competing)
    ]
    # the models are developed on worker processes from here on, while the tracking store opens
    # and each finished model is recorded (riskmodel.workflow.families)
    jobs = family_jobs(prepared, len(units))
    short = [ep for ep, s in sizes.items() if not s.adequate]
    ctx = RunContext.create(config, cohort, exploratory=bool(short))
    pool = workers.take(jobs) if workers is not None and jobs > 1 else None
    if workers is not None and pool is None:
        workers.close()  # developed here, or on a cluster: not needed
    with Developments(ctx, prepared, sizes, units, jobs, pool) as developments:
        if announce:
            # the workers start (their imports take seconds) while one fit of each family is timed here,
            # by this thread's CPU time when they share the cores; no fit is counted before the plan shows
            plan.time_one_fit(config, prepared, clock=time.thread_time if jobs > 1 else time.perf_counter)
            announce(plan.describe())
        # the experiment's own settings (a seed of 2013) are never mistaken for a patient's ID
        guard = PhiGuard.for_cohort(cohort, own=shareable_config(config))
        tracker = Tracker(config.name, tracking_uri, guard=guard)
        result = TrainResult(config.name, "", tracker.shown_uri, notes=list(dropped), exploratory=short)
        missing = missing_data_table(cohort)
        if len(missing) and missing["missing"].sum() > 0:
            result.missing_data = missing[missing["covariate"].isin(config.covariates)].reset_index(drop=True)
        if tracker.stale_runs:
            n = len(tracker.stale_runs)
            result.notes.append(f"closed {n} run{'s' if n > 1 else ''} left RUNNING by an ended process (now KILLED)")
        # serially, the figures of each run are drawn half here, half on a worker process (riskmodel.reporting.plots);
        # with the models developed on workers, the few left here do not pay for a process's imports
        drawing = figure_worker() if jobs == 1 else contextlib.nullcontext()
        with drawing, tracker.parent(f"train-{config.name}", ctx.base_tags) as parent_id:
            result.parent_run_id = parent_id
            tracker.log(params={**ctx.flat_config, **plan.params()})
            tracker.log_text(ctx.config_yaml(), "config.yaml")
            tracker.log_text(plan.describe() + "\n", "evaluation_plan.txt")
            if result.missing_data is not None:
                tracker.log_text(safe_csv_text(result.missing_data, index=False), "missing_data.csv")
            _develop_and_record(tracker, prepared, sizes, families, developments, counter, result)
            tracker.log(tags={"children": str(len(result.runs))})
    return result


def _develop_and_record(
    tracker: Tracker,
    prepared: dict[str, PreparedEndpoint],
    sizes: dict[str, SampleSize],
    families: dict[str, Any],
    developments: Developments,
    counter: _Progress,
    result: TrainResult,
) -> None:
    """Each endpoint's notes, then each of its models, developed (or taken from the workers, its run
    ready to log: figures, report and model folder made there) and recorded."""
    index = {(u.endpoint, u.family): i for i, u in enumerate(developments.units)}
    for endpoint, prep in prepared.items():
        size = sizes[endpoint]
        counted = " (events of interest only; competing events are not counted)" if prep.competing else ""
        result.notes += [*prep.notes(), f"{endpoint.upper()} sample size{counted}: {size.summary()}"]
        if not size.adequate:
            result.notes.append(_exploratory_warning(endpoint, size.epv, size.expected_shrinkage))
        for family in families:
            if SPECS[family].competing_only and not prep.competing:
                result.notes.append(
                    f"{endpoint.upper()} {family}: skipped, {SPECS[family].label} models competing risks and "
                    f"{endpoint.upper()} has no competing events here"
                )
                continue
            step = counter.step(f"{endpoint.upper()} {family}")
            try:
                dev, record = developments.get(index[endpoint, family], step)
            except NUMERICAL_FAILURES as exc:
                if is_own_error(exc) or not SPECS[family].competing_only:
                    raise
                # an unpenalised Fine-Gray fit of every patient that cannot be estimated
                result.notes.append(f"{endpoint.upper()} {family}: not trained, its fit failed ({exc})")
                continue
            result.notes += dev.notes
            counter.stage(f"{endpoint.upper()} {family}: recording the run")
            run_id, uri = log_record(tracker, record, dev.model)
            result.runs.append(RunResult.of(prep, dev, run_id, uri))


class _Progress:
    """Counts the fits of a whole ``train`` for the progress bar."""

    def __init__(self, report: Progress | None, total: int) -> None:
        self.report, self.total, self.done = report, total, 0

    def step(self, label: str) -> Callable[[], None]:
        def advance() -> None:
            self.done += 1
            if self.report:
                self.report(self.done, self.total, label)

        return advance

    def stage(self, label: str) -> None:
        """Name the step under way (no fit counted)."""
        if self.report:
            self.report(self.done, self.total, label)


def _sample_sizes(
    config: ExperimentConfig, prepared: dict[str, PreparedEndpoint], strict: bool
) -> dict[str, SampleSize]:
    """Riley et al.'s assessment per endpoint; with ``strict``, a refusal below the minimum."""
    sizes = {ep: sample_size(config, p) for ep, p in prepared.items()}
    short = {ep: s for ep, s in sizes.items() if not s.adequate}
    if strict and short:
        raise UserInputError(
            "--strict: the cohort is below Riley et al.'s minimum sample size for "
            + "; ".join(f"{ep.upper()} ({s.summary()})" for ep, s in short.items())
        )
    return sizes


def _exploratory_warning(endpoint: str, epv: float, shrinkage: float) -> str:
    return (
        f"WARNING {endpoint.upper()}: EXPLORATORY ONLY. EPV {epv:.1f} and an expected shrinkage of "
        f"{shrinkage:.2f} mean severe overfitting risk; prefer a prespecified, penalised model with fewer "
        "parameters (e.g. the 'published' feature set with Cox), and read the optimism-corrected metrics, "
        "not the apparent ones"
    )
